//! Two mDNS drivers in two network namespaces joined by a veth pair find each other over IPv4
//! and IPv6.
//!
//! How: the test (as root) creates the namespaces and the veth pair with `ip netns` / `ip link`,
//! then runs this same test binary twice under `ip netns exec`, each time selecting only the
//! ignored helper test `netns_node`, which runs one driver inside its namespace and prints what
//! it discovers. No socket is opened outside the namespaces, so no mDNS packet reaches the
//! host's own interfaces. A guard deletes the namespaces (and with them the veth pair) however
//! the test ends.
//!
//! Without root or without `ip` the test skips with a message, unless `CI` is set, where it
//! fails.

use std::time::{Duration, Instant};

/// The longest the whole exchange may take; discovery itself takes milliseconds.
const DEADLINE: Duration = Duration::from_secs(30);

mod netns_util;

use netns_util::Namespaces;

fn setup(tag: &str) -> Result<Namespaces, String> {
    netns_util::setup("mdns", "md", 77, tag)
}

type Node = netns_util::Child;

fn start_node(ns: &str, port: u16) -> Node {
    let exe = std::env::current_exe().unwrap();
    let port = port.to_string();
    netns_util::Child::spawn_in(
        ns,
        exe.as_os_str(),
        &[
            "--ignored",
            "--exact",
            "netns_node",
            "--nocapture",
            "--test-threads=1",
        ],
        &[("MDNS_NETNS_PORT", &port)],
    )
}

/// What one node reported: its own id, and (peer, address) pairs it discovered.
#[derive(Default)]
struct Report {
    me: Option<String>,
    found: Vec<(String, String)>,
    expired: Vec<(String, String)>,
    table: Option<String>,
}

fn read(node: &Node, report: &mut Report) {
    while let Ok(line) = node.lines.try_recv() {
        // The test harness may print `test netns_node ... ` in front of our first line.
        let Some(at) = line.find("MDNS-") else {
            continue;
        };
        let mut words = line[at..].split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("MDNS-ME"), Some(id), None) => report.me = Some(id.to_owned()),
            (Some("MDNS-FOUND"), Some(peer), Some(addr)) => {
                report.found.push((peer.to_owned(), addr.to_owned()))
            }
            (Some("MDNS-TABLE"), Some(table), None) => report.table = Some(table.to_owned()),
            (Some("MDNS-EXPIRED"), Some(peer), Some(addr)) => {
                report.expired.push((peer.to_owned(), addr.to_owned()))
            }
            _ => {}
        }
    }
}

fn knows(report: &Report, peer: &Option<String>, addr: &str) -> bool {
    peer.as_ref()
        .is_some_and(|p| report.found.iter().any(|(q, a)| q == p && a == addr))
}

fn lost(report: &Report, peer: &Option<String>, addr: &str) -> bool {
    peer.as_ref()
        .is_some_and(|p| report.expired.iter().any(|(q, a)| q == p && a == addr))
}

#[test]
fn two_namespaces_discover_each_other() {
    let ci = std::env::var_os("CI").is_some();
    let tag = format!("{}", std::process::id() % 100_000);
    let ns = match setup(&tag) {
        Ok(ns) => ns,
        Err(e) if ci => panic!("cannot create the test namespaces (CI needs root and ip): {e}"),
        Err(e) => {
            eprintln!("skipping: cannot create network namespaces ({e}); run as root");
            return;
        }
    };
    let a = start_node(&ns.names[0], 4001);
    let b = start_node(&ns.names[1], 4002);
    let (mut ra, mut rb) = (Report::default(), Report::default());
    let start = Instant::now();
    loop {
        read(&a, &mut ra);
        read(&b, &mut rb);
        let done = knows(&ra, &rb.me, "/ip4/10.77.0.2/tcp/4002")
            && knows(&ra, &rb.me, "/ip6/fd00:77::2/tcp/4002")
            && knows(&rb, &ra.me, "/ip4/10.77.0.1/tcp/4001")
            && knows(&rb, &ra.me, "/ip6/fd00:77::1/tcp/4001");
        if done {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no mutual discovery within {DEADLINE:?}: a = {:?} found {:?}; b = {:?} found {:?}",
            ra.me,
            ra.found,
            rb.me,
            rb.found
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Neither saw itself, nor a loopback address.
    for r in [&ra, &rb] {
        assert!(r.found.iter().all(|(p, _)| Some(p) != r.me.as_ref()));
        assert!(r
            .found
            .iter()
            .all(|(_, a)| !a.starts_with("/ip4/127.") && !a.starts_with("/ip6/::1/")));
    }
    eprintln!("discovered each other in {:?}", start.elapsed());
    // A stops cleanly (its stdin closes): its goodbye makes B drop its addresses at once,
    // long before their TTL of minutes.
    let mut a = a;
    drop(a.child.stdin.take());
    let stop = Instant::now();
    loop {
        read(&b, &mut rb);
        if lost(&rb, &ra.me, "/ip4/10.77.0.1/tcp/4001")
            && lost(&rb, &ra.me, "/ip6/fd00:77::1/tcp/4001")
        {
            break;
        }
        assert!(
            stop.elapsed() < DEADLINE,
            "b did not see a's goodbye: expired {:?}",
            rb.expired
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("goodbye seen after {:?}", stop.elapsed());
    let status = a.child.wait().unwrap();
    assert!(status.success(), "node a exited with {status}");
    std::thread::sleep(Duration::from_millis(100));
    read(&a, &mut ra);
    // Its table, as the handle reported it before stopping: b, with its two addresses.
    assert_eq!(ra.table, Some(format!("{}=2", rb.me.clone().unwrap())));
    drop((a, b));
    drop(ns);
}

/// The node run inside a namespace by `two_namespaces_discover_each_other`; ignored when run
/// on its own (it would multicast on the host's interfaces).
#[test]
#[ignore = "run inside a network namespace by two_namespaces_discover_each_other"]
fn netns_node() {
    use futures::StreamExt;
    let port: u16 = std::env::var("MDNS_NETNS_PORT")
        .expect("MDNS_NETNS_PORT is set by the parent test")
        .parse()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let key = libp2p_core::Keypair::generate_ed25519();
        let me = key.public().to_peer_id();
        let listen = vec![
            format!("/ip4/0.0.0.0/tcp/{port}").parse().unwrap(),
            format!("/ip6/::/tcp/{port}").parse().unwrap(),
        ];
        let (handle, mut events) =
            libp2p_mdns::spawn(libp2p_mdns::Config::default(), me, listen).unwrap();
        println!("MDNS-ME {me}");
        // Stop when the parent closes our stdin (or kills us); the bound is for a lost parent.
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
            let _ = stop_tx.send(());
        });
        let print = |ev: libp2p_mdns::Event| match ev {
            libp2p_mdns::Event::Discovered { peer, addrs } => {
                addrs.iter().for_each(|a| println!("MDNS-FOUND {peer} {a}"))
            }
            libp2p_mdns::Event::Expired { peer, addrs } => addrs
                .iter()
                .for_each(|a| println!("MDNS-EXPIRED {peer} {a}")),
        };
        let _ = tokio::time::timeout(DEADLINE, async {
            loop {
                tokio::select! {
                    ev = events.next() => match ev {
                        Some(ev) => print(ev),
                        None => return,
                    },
                    _ = &mut stop_rx => return,
                }
            }
        })
        .await;
        let table = handle.discovered().await.expect("driver still running");
        let table: Vec<String> = table
            .iter()
            .map(|(p, addrs)| format!("{p}={}", addrs.len()))
            .collect();
        println!("MDNS-TABLE {}", table.join(","));
        // Dropping the handle stops the driver, which sends its goodbye and then closes the
        // event stream.
        drop(handle);
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while events.next().await.is_some() {}
        })
        .await;
    });
}
