//! Two network namespaces joined by a veth pair, for tests that must multicast without
//! reaching the host's own interfaces. Shared by `libp2p-mdns/tests/netns.rs` and the
//! `peer` program's mDNS test (which includes this file by path).

use std::process::Command;

/// Runs `ip` with `args`.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The two namespaces; deleting them removes the veth pair too.
pub struct Namespaces {
    /// Their names.
    pub names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
    }
}

/// Creates namespaces `{prefix}-a-{tag}` and `{prefix}-b-{tag}` joined by a veth pair
/// `{veth}a{tag}` / `{veth}b{tag}`, with the addresses 10.`net`.0.1/24 and fd00:`net`::1/64 in
/// the first, .2 and ::2 in the second (`veth` plus `tag` must stay under 15 characters).
pub fn setup(prefix: &str, veth: &str, net: u8, tag: &str) -> Result<Namespaces, String> {
    let a = format!("{prefix}-a-{tag}");
    let b = format!("{prefix}-b-{tag}");
    let va = format!("{veth}a{tag}");
    let vb = format!("{veth}b{tag}");
    ip(&["netns", "add", &a])?;
    let mut ns = Namespaces {
        names: vec![a.clone()],
    };
    ip(&["netns", "add", &b])?;
    ns.names.push(b.clone());
    // Created directly inside the namespaces: the pair never exists among the host's links.
    ip(&[
        "link", "add", &va, "netns", &a, "type", "veth", "peer", "name", &vb, "netns", &b,
    ])?;
    for (n, v, host) in [(&a, &va, 1), (&b, &vb, 2)] {
        let four = format!("10.{net}.0.{host}/24");
        let six = format!("fd00:{net}::{host}/64");
        ip(&["-n", n, "link", "set", "lo", "up"])?;
        ip(&["-n", n, "addr", "add", &four, "dev", v])?;
        ip(&["-n", n, "addr", "add", &six, "dev", v, "nodad"])?;
        ip(&["-n", n, "link", "set", v, "up"])?;
    }
    Ok(ns)
}

/// A process run inside a namespace (`ip netns exec`), killed when dropped, whose stdout
/// lines arrive on a channel as they are printed.
pub struct Child {
    /// The process (`ip netns exec` running it).
    pub child: std::process::Child,
    /// Its stdout, line by line.
    pub lines: std::sync::mpsc::Receiver<String>,
}

impl Child {
    /// Runs `program` with `args` inside namespace `ns`, with the extra environment `env`;
    /// stderr goes to the test's.
    pub fn spawn_in(
        ns: &str,
        program: &std::ffi::OsStr,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Child {
        use std::io::BufRead;
        use std::process::Stdio;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run under ip netns exec");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Child { child, lines: rx }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
