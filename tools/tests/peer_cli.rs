//! The `peer` program keeps its command-line contract (interop/PEER-CLI.md) against itself.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const PEER: &str = env!("CARGO_BIN_EXE_peer");

struct Listener {
    child: Child,
    addr: String,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `peer` command with `mode` (`--listen ADDR` or `--dial ADDR`), the stack, a 60 s timeout
/// and `extra` arguments.
fn peer(mode: [&str; 2], security: &str, muxer: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(PEER);
    command
        .args(mode)
        .args(["--security", security, "--muxer", muxer])
        .args(["--timeout", "60"])
        .args(extra);
    command
}

fn listen(security: &str, muxer: &str, extra: &[&str]) -> Listener {
    let mut child = peer(["--listen", "/ip4/127.0.0.1/tcp/0"], security, muxer, extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start listener");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("first line should be LISTEN, got {line:?}"))
        .trim()
        .to_string();
    assert!(
        addr.starts_with("/ip4/127.0.0.1/tcp/") && addr.contains("/p2p/"),
        "{addr}"
    );
    Listener { child, addr }
}

fn dial(listener: &Listener, security: &str, muxer: &str, extra: &[&str]) -> (bool, String) {
    let out = peer(["--dial", &listener.addr], security, muxer, extra)
        .output()
        .expect("run dialer");
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success(), stdout)
}

#[test]
fn every_stack_echoes_pings_and_runs_perf() {
    for security in ["plaintext", "secio", "noise"] {
        for muxer in ["mplex", "yamux"] {
            let listener = listen(security, muxer, &[]);
            let peer_id = listener.addr.rsplit('/').next().unwrap().to_string();

            let (ok, line) = dial(&listener, security, muxer, &["--bytes", "1048576"]);
            assert!(ok, "{security}/{muxer} echo: {line}");
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!(parts[0], "OK", "{line}");
            assert_eq!(parts[1], peer_id);
            assert_eq!(parts[2], "1048576");
            assert!(parts[3].parse::<f64>().is_ok(), "{line}");

            let (ok, line) = dial(
                &listener,
                security,
                muxer,
                &["--streams", "20", "--bytes", "65536"],
            );
            assert!(
                ok && line.starts_with("OK ") && line.contains(" 1310720 "),
                "{line}"
            );

            let (ok, line) = dial(&listener, security, muxer, &["--ping"]);
            assert!(ok && line.starts_with("PING OK "), "{line}");

            let (ok, line) = dial(
                &listener,
                security,
                muxer,
                &["--perf-upload", "1048576", "--perf-download", "2097152"],
            );
            assert!(ok && line.starts_with("PERF upload "), "{line}");
        }
    }
}

#[test]
fn seeded_keys_give_the_same_peer_id_for_every_key_type() {
    for key in ["ed25519", "secp256k1", "ecdsa", "rsa"] {
        let a = listen("plaintext", "yamux", &["--key", key, "--seed", "5"]);
        let b = listen("plaintext", "yamux", &["--key", key, "--seed", "5"]);
        let id = |l: &Listener| l.addr.rsplit('/').next().unwrap().to_string();
        assert_eq!(id(&a), id(&b), "{key}");
        // There is one RSA test key, so an RSA dialer would be the listener itself (which a
        // host refuses to dial): an RSA listener is dialed with an Ed25519 key.
        let dialer_key = if key == "rsa" { "ed25519" } else { key };
        let (ok, line) = dial(&a, "plaintext", "yamux", &["--key", dialer_key]);
        assert!(ok, "{key}: {line}");
    }
}

#[test]
fn failures_are_reported_as_fail_lines() {
    let listener = listen("plaintext", "mplex", &[]);
    // Wrong peer id in the address.
    let wrong = format!(
        "{}/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA",
        listener.addr.rsplitn(3, '/').nth(2).unwrap()
    );
    let out = Command::new(PEER)
        .args([
            "--dial",
            &wrong,
            "--security",
            "plaintext",
            "--muxer",
            "mplex",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.starts_with("FAIL "), "{stdout}");
    // Mismatched security: the listener speaks plaintext only.
    let (ok, line) = dial(&listener, "secio", "mplex", &[]);
    assert!(!ok && line.starts_with("FAIL "), "{line}");
    // Unknown protocol names.
    let out = Command::new(PEER)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--security", "quantum"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("FAIL unsupported"));
}

/// PEER-CLI v2's transport part: `--listen` repeats (one LISTEN line per address, in order),
/// and the address picks the transport: QUIC ignores `--security`/`--muxer`, WebSocket takes
/// them.
#[test]
fn repeated_listens_and_every_transport() {
    let mut child = Command::new(PEER)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--listen", "/ip4/127.0.0.1/udp/0/quic-v1"])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0/ws"])
        .args(["--security", "noise", "--muxer", "yamux", "--timeout", "60"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start listener");
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut addrs = Vec::new();
    for _ in 0..3 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("LISTEN ")
            .unwrap_or_else(|| panic!("expected a LISTEN line, got {line:?}"))
            .trim()
            .to_string();
        addrs.push(addr);
    }
    let listener = Listener {
        child,
        addr: addrs[0].clone(),
    };
    assert!(addrs[0].starts_with("/ip4/127.0.0.1/tcp/") && !addrs[0].contains("/ws/"));
    assert!(addrs[1].contains("/udp/") && addrs[1].contains("/quic-v1/p2p/"));
    assert!(addrs[2].contains("/tcp/") && addrs[2].contains("/ws/p2p/"));
    for addr in &addrs {
        for extra in [&["--bytes", "1048576"][..], &["--ping"][..]] {
            let out = Command::new(PEER)
                .args(["--dial", addr, "--security", "noise", "--muxer", "yamux"])
                .args(["--timeout", "60"])
                .args(extra)
                .output()
                .expect("run dialer");
            let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(out.status.success(), "{addr} {extra:?}: {line}");
            assert!(
                line.starts_with("OK ") || line.starts_with("PING OK "),
                "{line}"
            );
        }
    }
    // Over QUIC the security and muxer flags do not apply: any values work.
    let out = Command::new(PEER)
        .args([
            "--dial",
            &addrs[1],
            "--security",
            "secio",
            "--muxer",
            "mplex",
        ])
        .args(["--timeout", "60", "--bytes", "1000", "--streams", "20"])
        .output()
        .expect("run dialer");
    let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(out.status.success() && line.starts_with("OK "), "{line}");
    drop(listener);
}
