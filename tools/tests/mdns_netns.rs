//! `peer --mdns` in two network namespaces joined by a veth pair: each discovers the other,
//! dials it, and both report the connection.
//!
//! The test (as root) creates namespaces `ksvc-a-*` and `ksvc-b-*` and deletes them however it
//! ends; the two `peer` processes run inside them under `ip netns exec`, so no mDNS packet
//! reaches the host's own interfaces. Without root or `ip` the test skips with a message,
//! unless `CI` is set, where it fails.

use std::time::{Duration, Instant};

#[path = "../../libp2p-mdns/tests/netns_util/mod.rs"]
mod netns_util;

/// The longest the whole exchange may take; discovery and dialing take well under a second.
const DEADLINE: Duration = Duration::from_secs(30);

type Peer = netns_util::Child;

fn start_peer(ns: &str, ip: &str) -> Peer {
    let listen = format!("/ip4/{ip}/tcp/0");
    netns_util::Child::spawn_in(
        ns,
        env!("CARGO_BIN_EXE_peer").as_ref(),
        &[
            "--listen",
            &listen,
            "--mdns",
            "--security",
            "noise",
            "--muxer",
            "yamux",
            "--timeout",
            "40",
        ],
        &[],
    )
}

#[derive(Default, Debug)]
struct Seen {
    me: Option<String>,
    lines: Vec<String>,
}

fn read(peer: &Peer, seen: &mut Seen) {
    while let Ok(line) = peer.lines.try_recv() {
        if let Some(addr) = line.strip_prefix("LISTEN ") {
            seen.me = addr.rsplit('/').next().map(str::to_owned);
        }
        seen.lines.push(line);
    }
}

fn has(seen: &Seen, line: String) -> bool {
    seen.lines.contains(&line)
}

#[test]
fn peers_in_two_namespaces_discover_and_connect() {
    let ci = std::env::var_os("CI").is_some();
    let tag = format!("{}", std::process::id() % 100_000);
    let ns = match netns_util::setup("ksvc", "ks", 78, &tag) {
        Ok(ns) => ns,
        Err(e) if ci => panic!("cannot create the test namespaces (CI needs root and ip): {e}"),
        Err(e) => {
            eprintln!("skipping: cannot create network namespaces ({e}); run as root");
            return;
        }
    };
    let a = start_peer(&ns.names[0], "10.78.0.1");
    let b = start_peer(&ns.names[1], "10.78.0.2");
    let (mut sa, mut sb) = (Seen::default(), Seen::default());
    let start = Instant::now();
    loop {
        read(&a, &mut sa);
        read(&b, &mut sb);
        if let (Some(ida), Some(idb)) = (sa.me.clone(), sb.me.clone()) {
            let done = has(&sa, format!("MDNS {idb}"))
                && has(&sa, format!("MDNS CONNECTED {idb}"))
                && has(&sb, format!("MDNS {ida}"))
                && has(&sb, format!("MDNS CONNECTED {ida}"));
            if done {
                break;
            }
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no mutual discovery and connection within {DEADLINE:?}: a = {sa:?}, b = {sb:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("discovered and connected in {:?}", start.elapsed());
    // Each line once: `MDNS <id>` before `MDNS CONNECTED <id>`, nothing about itself.
    for (seen, other) in [(&sa, &sb.me), (&sb, &sa.me)] {
        let other = other.clone().unwrap();
        let found = format!("MDNS {other}");
        let connected = format!("MDNS CONNECTED {other}");
        let at = |l: &String| seen.lines.iter().position(|x| x == l).unwrap();
        assert!(at(&found) < at(&connected), "{:?}", seen.lines);
        assert_eq!(seen.lines.iter().filter(|l| **l == found).count(), 1);
        let me = seen.me.clone().unwrap();
        assert!(!seen
            .lines
            .iter()
            .any(|l| l.ends_with(&me) && l.starts_with("MDNS")));
    }
    drop((a, b));
    drop(ns);
}
