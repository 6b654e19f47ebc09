//! Faults (the reliability issue, point 5): a peer killed mid-transfer, a connection reset, a
//! listener that vanishes and a peer that stops answering mid-stream. In each, every pending
//! call ends with an error within its bound, nothing hangs, and once the hosts are closed no
//! task they started is left on the runtime (counted before and after).
//!
//! The killed peer is a spawned `peer` process (SIGKILL); the other faults go through a small
//! TCP relay of the test's own between two in-process hosts, which can reset both sides
//! (linger 0), freeze (stop forwarding, keep the sockets open) or stop listening.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p_host::testkit::tcp_host;
use libp2p_host::{
    Classify, CloseCause, Event, Events, Fault, Host, Multiaddr, PeerId, Protocol, Stream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const PEER: &str = env!("CARGO_BIN_EXE_peer");
const ECHO: &str = "/echo/1.0.0";
/// What a loaded CI machine may take beyond a configured bound before a case counts as hung.
const SLACK: Duration = Duration::from_secs(5);

/// What the relay does with the connections it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward both ways.
    Forward,
    /// Stop reading either side; the sockets stay open (a frozen peer, a black hole).
    Freeze,
    /// Close both sides with linger 0, so each gets an RST.
    Reset,
}

/// A TCP relay from its own port to `target`, run by the test.
struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    accept: JoinHandle<()>,
}

impl Relay {
    async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let (mode, watcher) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(async move {
            let mut carried = Vec::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue; // the target is gone: the dialer sees its socket close
                };
                carried.push(tokio::spawn(carry(inbound, outbound, watcher.clone())));
            }
        });
        Relay { addr, mode, accept }
    }

    /// The relay's address with the target's peer id.
    fn multiaddr(&self, peer: PeerId) -> Multiaddr {
        let SocketAddr::V4(v4) = self.addr else {
            unreachable!("bound on 127.0.0.1")
        };
        Multiaddr::empty()
            .with(Protocol::Ip4(*v4.ip()))
            .with(Protocol::Tcp(v4.port()))
            .with(Protocol::P2p(peer))
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The carriers see the sender go and end.
        self.accept.abort();
    }
}

/// Forwards between `a` and `b` as the mode says, until either side closes or the relay goes.
/// Both directions are copied at once (one at a time would deadlock an echo: each side
/// blocked writing to a peer that is blocked writing back).
async fn carry(mut a: TcpStream, mut b: TcpStream, mut mode: watch::Receiver<Mode>) {
    loop {
        let current = *mode.borrow_and_update();
        match current {
            Mode::Reset => {
                for socket in [&a, &b] {
                    #[allow(deprecated)] // linger 0 on drop is what makes the RST
                    let _ = socket.set_linger(Some(Duration::ZERO));
                }
                return;
            }
            Mode::Freeze => {
                if mode.changed().await.is_err() {
                    return;
                }
            }
            Mode::Forward => {
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut a, &mut b) => return,
                    changed = mode.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}

/// `RUST_LOG=debug` shows what the hosts did (off by default).
fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

fn alive_tasks() -> usize {
    init_log();
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the runtime holds no more tasks than `before` (each fault's tasks end within
/// their bounds once the hosts are closed); fails with the count otherwise.
async fn no_task_left(before: usize) {
    let deadline = tokio::time::Instant::now() + SLACK + Duration::from_secs(5);
    loop {
        let now = alive_tasks();
        if now <= before {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{now} tasks alive after the hosts closed, {before} before they started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast_config() -> libp2p_host::Config {
    let mut config = libp2p_host::Config::default();
    config.negotiation_timeout = Duration::from_secs(1);
    config.handshake_timeout = Duration::from_secs(2);
    config.ping_interval = Duration::from_millis(500);
    config.ping_timeout = Duration::from_secs(1);
    config
}

fn tcp_socket_addr(addr: &Multiaddr) -> SocketAddr {
    let mut ip = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(v4) => ip = Some(std::net::IpAddr::V4(v4)),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::new(ip.expect("ip4"), port.expect("tcp"))
}

/// Serves echo on `host`, counting the handler streams that ended.
fn serve_echo(host: &Host, ended: Arc<AtomicU64>) {
    host.set_stream_handler(ECHO, move |mut stream: Stream| {
        let ended = ended.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            ended.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    })
    .expect("echo handler");
}

/// A transfer in flight on one echo stream: a writer sending until it fails and a reader
/// counting echoed bytes until its stream ends. Both report how they ended.
struct Transfer {
    echoed: Arc<AtomicU64>,
    writer: JoinHandle<std::io::Result<()>>,
    reader: JoinHandle<std::io::Result<()>>,
}

impl Transfer {
    fn start(stream: Stream) -> Transfer {
        let (mut rx, mut tx) = tokio::io::split(stream);
        let echoed = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(async move {
            let chunk = vec![7u8; 64 * 1024];
            loop {
                tx.write_all(&chunk).await?;
            }
        });
        let counted = echoed.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = rx.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                counted.fetch_add(n as u64, Ordering::SeqCst);
            }
        });
        Transfer {
            echoed,
            writer,
            reader,
        }
    }

    async fn wait_for(&self, bytes: u64) {
        tokio::time::timeout(SLACK, async {
            while self.echoed.load(Ordering::SeqCst) < bytes {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the transfer runs before the fault");
    }

    /// Both halves end within `bound`; the writer with an error (it never stops by itself).
    async fn ends_within(self, bound: Duration, what: &str) {
        let writer = tokio::time::timeout(bound, self.writer)
            .await
            .unwrap_or_else(|_| panic!("{what}: a pending write still hangs after {bound:?}"))
            .expect("writer task");
        assert!(writer.is_err(), "{what}: the write ended without an error");
        tokio::time::timeout(bound, self.reader)
            .await
            .unwrap_or_else(|_| panic!("{what}: a pending read still hangs after {bound:?}"))
            .expect("reader task")
            .ok();
    }
}

async fn closed_event(events: &mut Events, peer: PeerId, bound: Duration) -> CloseCause {
    tokio::time::timeout(bound, async {
        while let Some(event) = events.next().await {
            if let Event::ConnectionClosed {
                peer: p,
                cause,
                remaining: 0,
                ..
            } = event
            {
                if p == peer {
                    return cause;
                }
            }
        }
        panic!("events ended");
    })
    .await
    .expect("a closed connection is reported")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_transfer() {
    let before = alive_tasks();
    let mut child = Command::new(PEER)
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn peer");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("LISTEN line");
    let addr: Multiaddr = line
        .trim()
        .strip_prefix("LISTEN ")
        .expect("LISTEN <addr>")
        .parse()
        .expect("listen address");

    let a = tcp_host(fast_config()).await;
    let mut events = a.events();
    let peer = a.dial(addr).await.expect("dial the peer");
    let stream = a.new_stream(peer, &[ECHO]).await.expect("echo stream");
    let transfer = Transfer::start(stream);
    transfer.wait_for(1 << 20).await;

    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    transfer.ends_within(SLACK, "peer killed").await;
    closed_event(&mut events, peer, SLACK).await;
    assert!(!a.is_connected(&peer));

    // Calls made after the death fail too, and promptly: the dial finds the port closed.
    let error = tokio::time::timeout(SLACK, a.new_stream(peer, &[ECHO]))
        .await
        .expect("new_stream to a dead peer returns")
        .expect_err("no one listens there any more");
    assert_eq!(error.fault(), Fault::Network, "{error}");
    tokio::time::timeout(SLACK, a.ping(peer))
        .await
        .expect("ping of a dead peer returns")
        .expect_err("a dead peer does not answer");

    a.close().await;
    drop(a);
    drop(events);
    no_task_left(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_reset_mid_transfer() {
    let before = alive_tasks();
    let a = tcp_host(fast_config()).await;
    let b = tcp_host(fast_config()).await;
    let ended = Arc::new(AtomicU64::new(0));
    serve_echo(&b, ended.clone());
    let relay = Relay::start(tcp_socket_addr(&b.listen_addrs()[0])).await;
    let mut a_events = a.events();
    let mut b_events = b.events();

    a.dial(relay.multiaddr(b.peer_id()))
        .await
        .expect("dial through the relay");
    let stream = a
        .new_stream(b.peer_id(), &[ECHO])
        .await
        .expect("echo stream");
    let transfer = Transfer::start(stream);
    transfer.wait_for(1 << 20).await;

    relay.set(Mode::Reset);
    transfer.ends_within(SLACK, "reset").await;
    let cause = closed_event(&mut a_events, b.peer_id(), SLACK).await;
    assert!(matches!(cause, CloseCause::Remote), "{cause:?}");
    closed_event(&mut b_events, a.peer_id(), SLACK).await;
    tokio::time::timeout(SLACK, async {
        while ended.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the listener's handler sees its stream end");

    // Nothing is left broken: the hosts meet again directly, and echo works.
    a.dial(b.p2p_addrs()[0].clone()).await.expect("dial again");
    let mut stream = a
        .new_stream(b.peer_id(), &[ECHO])
        .await
        .expect("echo stream");
    stream.write_all(b"after the reset").await.unwrap();
    let mut back = [0u8; 15];
    tokio::time::timeout(SLACK, stream.read_exact(&mut back))
        .await
        .expect("echo after the reset")
        .unwrap();
    assert_eq!(&back, b"after the reset");
    drop(stream);

    drop(relay);
    a.close().await;
    b.close().await;
    drop((a, b, a_events, b_events));
    no_task_left(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_vanishes() {
    let before = alive_tasks();
    let a = tcp_host(fast_config()).await;
    let b = tcp_host(fast_config()).await;
    serve_echo(&b, Arc::default());
    let b_addr = b.p2p_addrs()[0].clone();
    let b_peer = b.peer_id();
    let mut events = a.events();
    a.dial(b_addr.clone()).await.expect("dial");
    let stream = a.new_stream(b_peer, &[ECHO]).await.expect("echo stream");
    let transfer = Transfer::start(stream);
    transfer.wait_for(64 * 1024).await;

    // The whole listening host goes: its listener, its connections.
    b.close().await;
    drop(b);
    transfer.ends_within(SLACK, "listener gone").await;
    closed_event(&mut events, b_peer, SLACK).await;

    let error = tokio::time::timeout(SLACK, a.dial(b_addr.clone()))
        .await
        .expect("a dial to a vanished listener returns")
        .expect_err("nobody listens");
    assert_eq!(error.fault(), Fault::Network, "{error}");

    // A relay that still accepts but whose target is gone: the handshake's socket closes at
    // once, and the dial fails within the handshake bound, not later.
    let relay = Relay::start(tcp_socket_addr(&b_addr)).await;
    tokio::time::timeout(
        fast_config().handshake_timeout + SLACK,
        a.dial(relay.multiaddr(b_peer)),
    )
    .await
    .expect("a dial through a relay to nothing returns")
    .expect_err("nobody behind the relay");

    drop(relay);
    a.close().await;
    drop((a, events));
    no_task_left(before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_mid_stream() {
    let before = alive_tasks();
    let config = fast_config();
    let a = tcp_host(config.clone()).await;
    let b = tcp_host(config.clone()).await;
    serve_echo(&b, Arc::default());
    let relay = Relay::start(tcp_socket_addr(&b.listen_addrs()[0])).await;
    let mut events = a.events();
    a.dial(relay.multiaddr(b.peer_id()))
        .await
        .expect("dial through the relay");
    let mut stream = a
        .new_stream(b.peer_id(), &[ECHO])
        .await
        .expect("echo stream");
    stream.write_all(b"x").await.unwrap();
    let mut one = [0u8; 1];
    stream
        .read_exact(&mut one)
        .await
        .expect("one echo before the freeze");
    a.ping(b.peer_id()).await.expect("a ping before the freeze");

    relay.set(Mode::Freeze);
    // Pending at the moment the peer stops answering: a read waiting for an echo, a ping, and
    // the opening of a new stream.
    stream.write_all(b"y").await.unwrap();
    let read = tokio::spawn(async move { stream.read(&mut [0u8; 1]).await });
    let ping = tokio::time::timeout(config.negotiation_timeout + SLACK, a.ping(b.peer_id()))
        .await
        .expect("a ping of a frozen peer returns within its bound");
    assert!(ping.is_err(), "a frozen peer answered a ping");

    // The liveness check finds the peer dead within its interval and timeout, and closing the
    // connection ends the pending read.
    let liveness = config.ping_interval + config.ping_timeout;
    let cause = closed_event(&mut events, b.peer_id(), liveness + SLACK).await;
    assert!(matches!(cause, CloseCause::Local), "{cause:?}");
    let read = tokio::time::timeout(SLACK, read)
        .await
        .expect("the pending read ends once the connection is dropped")
        .expect("reader task");
    assert!(!matches!(read, Ok(1)), "a frozen peer echoed: {read:?}");
    assert!(!a.is_connected(&b.peer_id()));

    // A new dial through the relay reaches it but gets no answer: the handshake bound ends
    // it (a dial by peer id would also try the direct address identify taught us).
    let error = tokio::time::timeout(
        config.handshake_timeout + SLACK,
        a.dial(relay.multiaddr(b.peer_id())),
    )
    .await
    .expect("a dial to a frozen peer returns within the handshake bound")
    .expect_err("a frozen peer cannot complete a handshake");
    assert_eq!(error.fault(), Fault::Timeout, "{error}");

    drop(relay);
    a.close().await;
    b.close().await;
    drop((a, b, events));
    no_task_left(before).await;
}
