//! Dialing names: the host resolves `/dns4` and `/dnsaddr` addresses through its resolver
//! (here one with a fixed table, standing in for a name server) before it picks a transport.

use std::collections::HashMap;
use std::net::IpAddr;

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p_host::dns::{Config, Dns, DnsError, Family, Resolve};
use libp2p_host::{Classify, DialError, Fault, Host, Keypair, Multiaddr, Protocol};

/// Names and TXT records from a table.
#[derive(Default, Clone)]
struct Table {
    ips: HashMap<String, Vec<IpAddr>>,
    txt: HashMap<String, Vec<String>>,
}

impl Resolve for Table {
    fn lookup_ip(
        &self,
        name: &str,
        _: Family,
    ) -> BoxFuture<'static, Result<Vec<IpAddr>, DnsError>> {
        let found = self.ips.get(name).cloned();
        let name = name.to_string();
        async move { found.ok_or(DnsError::NotFound { name }) }.boxed()
    }

    fn lookup_txt(&self, name: &str) -> BoxFuture<'static, Result<Vec<Vec<u8>>, DnsError>> {
        let found = self.txt.get(name).cloned();
        let name = name.to_string();
        async move {
            found
                .map(|list| list.into_iter().map(String::into_bytes).collect())
                .ok_or(DnsError::NotFound { name })
        }
        .boxed()
    }
}

async fn host(dns: Option<Dns>) -> Host {
    let mut builder = Host::builder(Keypair::generate_ed25519())
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap());
    if let Some(dns) = dns {
        builder = builder.dns(dns);
    }
    builder.build().await.expect("host")
}

fn port(host: &Host) -> u16 {
    host.listen_addrs()
        .iter()
        .find_map(|a| {
            a.iter().find_map(|p| match p {
                Protocol::Tcp(port) => Some(port),
                _ => None,
            })
        })
        .expect("a TCP listen address")
}

#[tokio::test]
async fn dials_a_dns4_name_and_a_dnsaddr_bootstrap_entry() {
    let target = host(None).await;
    let id = target.peer_id();
    let p = port(&target);
    let mut table = Table::default();
    table
        .ips
        .insert("node.test".into(), vec!["127.0.0.1".parse().unwrap()]);
    // A bootstrap name as the IPFS list has them: nested, one record per peer and address,
    // a stale one first.
    table.txt.insert(
        "_dnsaddr.boot.test".into(),
        vec![format!("dnsaddr=/dnsaddr/east.boot.test/p2p/{id}")],
    );
    table.txt.insert(
        "_dnsaddr.east.boot.test".into(),
        vec![
            format!("dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{id}"),
            format!("dnsaddr=/dns4/node.test/tcp/{p}/p2p/{id}"),
        ],
    );
    let dialer = host(Some(Dns::new(table, Config::default()))).await;

    let by_name: Multiaddr = format!("/dns4/node.test/tcp/{p}").parse().unwrap();
    assert_eq!(dialer.dial(by_name).await.expect("dial by name"), id);
    dialer.disconnect(id).await;

    let boot: Multiaddr = format!("/dnsaddr/boot.test/p2p/{id}").parse().unwrap();
    assert_eq!(dialer.dial(boot).await.expect("dial /dnsaddr"), id);
    // Without the peer id, the records name it.
    dialer.disconnect(id).await;
    let boot: Multiaddr = "/dnsaddr/boot.test".parse().unwrap();
    assert_eq!(dialer.dial(boot).await.expect("dial /dnsaddr"), id);
}

#[tokio::test]
async fn an_unknown_name_fails_the_dial_with_the_resolvers_error() {
    let dialer = host(Some(Dns::new(Table::default(), Config::default()))).await;
    let err = dialer
        .dial("/dns4/nowhere.test/tcp/1".parse().unwrap())
        .await
        .unwrap_err();
    let DialError::Failed { attempts, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(attempts.len(), 1);
    assert!(err.to_string().contains("nowhere.test"), "{err}");
    assert_eq!(err.fault(), Fault::Network);
    // The host keeps working.
    let other = host(None).await;
    assert_eq!(
        dialer.dial(other.p2p_addrs()[0].clone()).await.unwrap(),
        other.peer_id()
    );
}
