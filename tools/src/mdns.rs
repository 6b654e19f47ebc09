//! The mDNS part of the `peer` program (`../shared/PEER-CLI-v2.md`): `--mdns` announces us,
//! browses, dials each peer found, and prints `MDNS <id>` and `MDNS CONNECTED <id>` once each.

use std::collections::HashSet;
use std::io::Write;

use futures::stream::BoxStream;
use futures::StreamExt;
use libp2p_host::{Event as HostEvent, Host};
use libp2p_mdns::{Config, Event, MdnsService, ServiceConfig};

/// The service (dialing every peer it finds) and its discoveries, subscribed before the host
/// starts so that none is missed.
pub fn service() -> (MdnsService, BoxStream<'static, Event>) {
    let (service, handle) = MdnsService::new(
        Config::default(),
        ServiceConfig::default().with_auto_dial(true),
    );
    let discoveries = handle.subscribe();
    (service, discoveries)
}

fn emit(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Prints `MDNS <id>` for each newly discovered peer and `MDNS CONNECTED <id>` once a
/// connection to it exists (whoever dialed), until the host closes.
pub fn spawn_reporter(host: &Host, mut discoveries: BoxStream<'static, Event>) {
    let host = host.clone();
    let mut events = host.events();
    tokio::spawn(async move {
        let mut found = HashSet::new();
        let mut connected = HashSet::new();
        loop {
            tokio::select! {
                event = discoveries.next() => match event {
                    Some(Event::Discovered { peer, .. }) => {
                        if found.insert(peer) {
                            emit(&format!("MDNS {peer}"));
                        }
                        if host.is_connected(&peer) && connected.insert(peer) {
                            emit(&format!("MDNS CONNECTED {peer}"));
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
                event = events.next() => match event {
                    Some(HostEvent::ConnectionEstablished { peer, .. }) => {
                        if found.contains(&peer) && connected.insert(peer) {
                            emit(&format!("MDNS CONNECTED {peer}"));
                        }
                    }
                    Some(_) => {}
                    None => break,
                },
            }
        }
    });
}
