//! A remote's misbehaviour costs a handful of log lines per connection, not one per bad frame.
//! (Its own test binary: it installs the process-wide log subscriber.)

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::AsyncWriteExt;
use libp2p_core::Role;
use libp2p_yamux::Yamux;

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn ten_thousand_frames_past_the_window_log_a_handful_of_lines() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    // Two outputs: everything at debug and above from every crate (the yamux crate's `log`
    // records come through the `log` bridge that `try_init` installs), and the same with the
    // directive our programs' default filter carries, `yamux=off`.
    let (capture, filtered) = (Capture::default(), Capture::default());
    let layer = |capture: &Capture, filter: &str| {
        let writer = capture.clone();
        tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(EnvFilter::new(filter))
            .boxed()
    };
    tracing_subscriber::registry()
        .with(vec![
            layer(&capture, "debug"),
            layer(&filtered, "debug,yamux=off"),
        ])
        .try_init()
        .expect("the only subscriber in this binary");

    let (attacker, target) = tcp_pair().await;
    let (_muxer, driver) = Yamux::default().muxer(target, Role::Listener);
    let driver = tokio::spawn(driver);
    // Fill a new stream's 256 KiB window exactly (legal), then 10,000 one-byte frames.
    let mut attack = data_frames(SYN, 1, 256 * 1024);
    for _ in 0..10_000 {
        attack.extend(data(0, 1, b"x"));
    }
    let mut attacker = attacker;
    let _ = attacker.write_all(&attack).await;
    let _ = attacker.flush().await;
    let ended = tokio::time::timeout(Duration::from_secs(2), driver).await;

    let text = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    println!("{text}");
    let errors = lines.iter().filter(|l| l.contains("ERROR")).count();
    assert!(
        lines.len() <= 10 && errors <= 1,
        "{} lines ({errors} at ERROR), the first ones:\n{}",
        lines.len(),
        lines[..lines.len().min(10)].join("\n")
    );
    // Our own: one line for the connection, at debug.
    let ours: Vec<&&str> = lines
        .iter()
        .filter(|l| l.contains("libp2p_yamux"))
        .collect();
    assert!(
        ours.len() <= 1 && ours.iter().all(|l| l.contains("DEBUG")),
        "{ours:?}"
    );
    // With `yamux=off`, only our own line is left.
    let text = String::from_utf8_lossy(&filtered.0.lock().unwrap()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() == 1 && lines[0].contains("libp2p_yamux"),
        "{lines:?}"
    );
    assert!(
        matches!(ended, Ok(Ok(Err(_)))),
        "the connection ended: {ended:?}"
    );
    drop(attacker);
}
