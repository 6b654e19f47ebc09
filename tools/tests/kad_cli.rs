//! The `peer` program's Kademlia lines (../shared/PEER-CLI-v2.md) against itself: a bootstrap
//! node, a provider, and dial-mode nodes that find the provider and the peer.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

const PEER: &str = env!("CARGO_BIN_EXE_peer");
const STACK: [&str; 4] = ["--security", "noise", "--muxer", "yamux"];

struct Node {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    addr: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    fn next_line(&mut self) -> String {
        self.lines.next().expect("a line").expect("readable stdout")
    }
}

fn listen(extra: &[&str]) -> Node {
    let mut child = Command::new(PEER)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "60"])
        .args(STACK)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start listener");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("readable");
    let addr = first
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("first line should be LISTEN, got {first:?}"))
        .to_string();
    Node { child, lines, addr }
}

/// Runs a dial-mode node to its end: (exit success, stdout lines).
fn run(extra: &[&str]) -> (bool, Vec<String>) {
    let out = Command::new(PEER)
        .args(["--timeout", "30"])
        .args(STACK)
        .args(extra)
        .output()
        .expect("run peer");
    let text = String::from_utf8_lossy(&out.stdout);
    (
        out.status.success(),
        text.lines().map(str::to_owned).collect(),
    )
}

fn id(addr: &str) -> &str {
    addr.rsplit('/').next().unwrap()
}

#[test]
fn provide_find_providers_and_find_peer() {
    let boot = listen(&["--kad"]);
    let mut provider = listen(&["--provide", "some key", "--bootstrap", &boot.addr]);
    assert_eq!(provider.next_line(), "BOOTSTRAP OK 1");
    assert_eq!(provider.next_line(), "PROVIDE OK");
    let provider_id = id(&provider.addr).to_string();

    let (ok, lines) = run(&["--find-providers", "some key", "--bootstrap", &boot.addr]);
    assert!(ok, "{lines:?}");
    assert_eq!(
        lines,
        ["BOOTSTRAP OK 2", &format!("PROVIDERS {provider_id}")]
    );

    let (ok, lines) = run(&["--find-peer", &provider_id, "--bootstrap", &boot.addr]);
    assert!(ok, "{lines:?}");
    assert_eq!(lines, ["BOOTSTRAP OK 2", &format!("PEER {provider_id}")]);

    // Nobody provides this key, and nobody has this id: one FAIL line, a non-zero exit.
    let (ok, lines) = run(&["--find-providers", "other", "--bootstrap", &boot.addr]);
    assert!(!ok);
    assert!(lines.last().unwrap().starts_with("FAIL "), "{lines:?}");
    let nobody = "12D3KooWGRUVh3Ke7Y3GGDc5PcExcxpdHDp1FwGp9JYoYaJuGzNg";
    let (ok, lines) = run(&["--find-peer", nobody, "--bootstrap", &boot.addr]);
    assert!(!ok);
    assert!(lines.last().unwrap().starts_with("FAIL "), "{lines:?}");

    // Misuse is refused at once.
    let (ok, lines) = run(&["--provide", "k", "--bootstrap", &boot.addr]);
    assert!(!ok);
    assert!(lines[0].starts_with("FAIL "), "{lines:?}");
}
