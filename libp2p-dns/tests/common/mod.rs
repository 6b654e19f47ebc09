//! A DNS responder of the tests' own on 127.0.0.1: answers from a table, counts the queries,
//! and can be told to stay silent. No test uses the system resolver.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{RData, Record, RecordType};
use libp2p_dns::{Config, Dns, HickoryResolver};
use tokio::net::UdpSocket;

/// The records served, by lower-case name without the trailing dot.
#[derive(Default)]
pub struct Zone {
    records: HashMap<String, Vec<RData>>,
}

impl Zone {
    pub fn a(mut self, name: &str, ip: Ipv4Addr) -> Self {
        self.add(name, RData::A(A(ip)));
        self
    }

    pub fn aaaa(mut self, name: &str, ip: Ipv6Addr) -> Self {
        self.add(name, RData::AAAA(AAAA(ip)));
        self
    }

    pub fn txt(mut self, name: &str, text: &str) -> Self {
        self.add(name, RData::TXT(TXT::new(vec![text.to_string()])));
        self
    }

    fn add(&mut self, name: &str, data: RData) {
        self.records
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(data);
    }
}

/// A running responder.
pub struct Responder {
    pub addr: SocketAddr,
    pub queries: Arc<AtomicUsize>,
    pub silent: Arc<AtomicBool>,
    zone: Arc<Mutex<Zone>>,
}

impl Responder {
    pub async fn start(zone: Zone) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(AtomicUsize::new(0));
        let silent = Arc::new(AtomicBool::new(false));
        let zone = Arc::new(Mutex::new(zone));
        let (q, s, z) = (queries.clone(), silent.clone(), zone.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                q.fetch_add(1, Ordering::SeqCst);
                if s.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(request) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let reply = answer(&z.lock().unwrap(), &request);
                let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
            }
        });
        Responder {
            addr,
            queries,
            silent,
            zone,
        }
    }

    /// A resolver that asks this responder only, with `config`'s limits.
    pub fn dns(&self, config: Config) -> Dns {
        Dns::new(
            HickoryResolver::with_servers(vec![self.addr], config.lookup_timeout),
            config,
        )
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

fn answer(zone: &Zone, request: &Message) -> Message {
    let mut reply = Message::new(
        request.metadata.id,
        MessageType::Response,
        request.metadata.op_code,
    );
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    let Some(query) = request.queries.first() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(query.clone());
    let name = query.name().to_ascii();
    let key = name.trim_end_matches('.').to_ascii_lowercase();
    match zone.records.get(&key) {
        None => reply.metadata.response_code = ResponseCode::NXDomain,
        Some(list) => {
            for data in list {
                let wanted = matches!(
                    (query.query_type(), data),
                    (RecordType::A, RData::A(_))
                        | (RecordType::AAAA, RData::AAAA(_))
                        | (RecordType::TXT, RData::TXT(_))
                );
                if wanted {
                    reply.add_answer(Record::from_rdata(query.name().clone(), 60, data.clone()));
                }
            }
        }
    }
    reply
}

/// Limits small enough for a test to hit them fast.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.lookup_timeout = Duration::from_millis(500);
    config
}
