//! Accept errors (here `EMFILE`, the descriptor table full) pause the listener instead of
//! spinning, are reported once per run, and the listener accepts again once the cause is gone.
//!
//! The test runs itself again in a child process whose descriptor limit the shell lowered
//! (`ulimit -n`), so that filling the table does not disturb the other tests.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use libp2p_core::{ListenerEvent, Transport, TransportError};
use libp2p_transport_tcp::TcpTransport;

const CHILD: &str = "LIBP2P_TCP_EMFILE_CHILD";
const NAME: &str = "accept_errors_back_off_and_the_listener_survives";
/// `EMFILE` on Linux.
const EMFILE: i32 = 24;

#[test]
fn accept_errors_back_off_and_the_listener_survives() {
    if std::env::var_os(CHILD).is_some() {
        return child();
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec \"$0\" --exact {NAME} --nocapture --test-threads=1"
        ))
        .arg(&exe)
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("child passed"),
        "child failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
}

fn child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let tcp = TcpTransport::new();
        let mut listener = tcp.listen("/ip4/127.0.0.1/tcp/0".parse().unwrap()).unwrap();
        let addr = listener.local_addr();
        assert!(matches!(
            listener.next().await,
            Some(ListenerEvent::NewAddress(_))
        ));

        // Fill the descriptor table with clients; the kernel completes their handshakes into
        // the listen queue, where they wait for an accept that cannot get a descriptor.
        let mut clients = Vec::new();
        loop {
            match std::net::TcpStream::connect(addr) {
                Ok(s) => clients.push(s),
                Err(e) if e.raw_os_error() == Some(EMFILE) => break,
                Err(e) => panic!("connect: {e}"),
            }
            assert!(clients.len() < 1000, "the descriptor limit is not in force");
        }
        assert!(!clients.is_empty());

        // Every accept fails now. Watch the listener for a while.
        let watch = Duration::from_millis(700);
        let started = Instant::now();
        let mut reported = 0;
        loop {
            let left = watch.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, listener.next()).await {
                Err(_) => break,
                Ok(Some(ListenerEvent::Error(TransportError::Io(e)))) => {
                    assert_eq!(e.raw_os_error(), Some(EMFILE), "{e}");
                    reported += 1;
                }
                Ok(other) => panic!("nothing can be accepted now, got {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        let failed = listener.accept_errors();
        assert_eq!(reported, 1, "one report for the whole run of errors");
        // Pauses of 10, 20, 40 ... ms: the attempts grow with the logarithm of the time, where
        // a spinning loop would make millions.
        let bound = 2 + (elapsed.as_secs_f64() / 0.010).log2().ceil() as u64;
        assert!(
            (2..=bound).contains(&failed),
            "{failed} failed accepts in {elapsed:?} (bound {bound})"
        );

        // Free the table: the listener takes the queued connections, then a new one, which
        // works.
        let queued = clients.len();
        drop(clients);
        let mut fresh = Box::pin(tcp.dial(libp2p_transport_tcp::socket_to_multiaddr(addr)));
        let mut dialed = None;
        let mut last = None;
        for i in 0..=queued {
            let event = tokio::time::timeout(Duration::from_secs(5), async {
                loop {
                    tokio::select! {
                        event = listener.next() => return event,
                        socket = &mut fresh, if dialed.is_none() => {
                            dialed = Some(socket.expect("dial"));
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|_| panic!("accept {i} of {} after the table freed", queued + 1));
            match event {
                Some(ListenerEvent::Incoming { pending, .. }) => last = Some(pending),
                other => panic!("expected a connection, got {other:?}"),
            }
        }
        let mut dialed = match dialed {
            Some(d) => d,
            None => fresh.await.expect("dial"),
        };
        let mut accepted = tcp.accept(last.unwrap()).await.unwrap();
        dialed.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), accepted.read_exact(&mut buf))
            .await
            .expect("read within 5 s")
            .unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(listener.accept_errors(), failed, "no errors after the run");
        println!("child passed: {failed} failed accepts in {elapsed:?}, one reported");
    });
}
