//! The functions the fuzz targets call, one per target; the corpus replay test
//! (`tests/corpus.rs`) calls the same ones on every committed input, on stable.
//!
//! Each takes arbitrary bytes as what a remote sends and runs our decoder or state machine
//! over them to the end. The protocol machines are driven through their public async API over
//! a scripted socket ([`Script`]): reads give the input (in chunks whose size the first byte
//! picks, so that the fuzzer also explores split reads), writes are accepted and dropped, and
//! the end of the input is the end of the connection. Nothing may panic, hang or allocate
//! without bound; errors are the expected outcome for most inputs.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p_core::{Keypair, Role, SecurityUpgrade, StreamMuxer};

pub mod seeds;

/// A socket whose remote side is a script: reads give `data` in chunks of `chunk` bytes,
/// then the end of the stream; writes are taken whole and dropped.
#[derive(Debug)]
pub struct Script {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl Script {
    /// The first byte of `input` picks the chunk size, the rest is what the remote sends.
    pub fn new(input: &[u8]) -> Script {
        let (chunk, data) = match input.split_first() {
            Some((first, rest)) => ([1, 3, 64, 1 << 20][usize::from(first & 3)], rest),
            None => (1, input),
        };
        Script {
            data: data.to_vec(),
            pos: 0,
            chunk,
        }
    }
}

impl AsyncRead for Script {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = buf.len().min(self.chunk).min(self.data.len() - self.pos);
        let start = self.pos;
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        self.pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Script {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Runs `f` on a fresh single-threaded tokio runtime (with timers: the muxers' deadlines use
/// them). Fresh, so that no task outlives the input that started it.
fn run<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// A fixed identity key (the fuzzer needs no randomness of its own).
pub fn key(seed: u8) -> Keypair {
    Keypair::ed25519_from_bytes([seed; 32]).expect("32 bytes are an ed25519 secret key")
}

/// Protocols our side offers or accepts in the multistream targets.
const PROTOCOLS: [&str; 3] = ["/a/1.0.0", "/b/2.0.0", "/noise"];

/// The listener side of multistream-select: the input is what the dialer sends.
pub fn multistream_listener(input: &[u8]) {
    let config = libp2p_multistream::Config::default();
    run(async {
        if let Ok((_, mut negotiated)) =
            libp2p_multistream::listener_select(Script::new(input), &PROTOCOLS[..], &config).await
        {
            let mut rest = Vec::new();
            let _ = negotiated.read_to_end(&mut rest).await;
        }
    });
}

/// The dialer side of multistream-select (eager, lazy, and `ls`): the input's first byte
/// picks the mode, the rest is what the listener sends.
pub fn multistream_dialer(input: &[u8]) {
    let Some((&mode, input)) = input.split_first() else {
        return;
    };
    let config = libp2p_multistream::Config::default();
    run(async {
        let io = Script::new(input);
        match mode % 3 {
            0 | 1 => {
                let version = if mode % 3 == 0 {
                    libp2p_multistream::Version::V1
                } else {
                    libp2p_multistream::Version::V1Lazy
                };
                if let Ok((_, mut negotiated)) =
                    libp2p_multistream::dialer_select(io, PROTOCOLS, version, &config).await
                {
                    let _ = negotiated.write_all(b"data").await;
                    let mut rest = Vec::new();
                    let _ = negotiated.read_to_end(&mut rest).await;
                }
            }
            _ => {
                let _ = libp2p_multistream::list_protocols(io, &config).await;
            }
        }
    });
}

/// Reads a muxed stream to its end, dropping the bytes, and writes a little back.
async fn drain<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let _ = stream.write_all(&buf[..n.min(16)]).await;
    }
    let _ = stream.close().await;
}

/// Runs a muxer's driver over the script while accepting and draining every inbound stream.
async fn run_muxer<M, D>(muxer: M, driver: D)
where
    M: StreamMuxer,
    M::Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    D: std::future::Future + Send + 'static,
    D::Output: Send,
{
    let driver = tokio::spawn(driver);
    // One outbound stream too, so that frames for our own ids have somewhere to go.
    if let Ok(stream) = muxer.open().await {
        tokio::spawn(drain(stream));
    }
    while let Ok(stream) = muxer.accept().await {
        tokio::spawn(drain(stream));
    }
    let _ = driver.await;
}

/// The mplex core and driver: the input is what the remote sends on the connection.
pub fn mplex(input: &[u8]) {
    let config = libp2p_mplex::Config {
        max_streams: 64,
        max_buffer_len: 64 * 1024,
        ..Default::default()
    };
    run(async {
        let (muxer, driver) = libp2p_mplex::Mplex::with_config(config).connect(Script::new(input));
        run_muxer(muxer, driver).await;
    });
}

/// The yamux adapter (and the yamux crate under it): the input is what the remote sends.
pub fn yamux(input: &[u8]) {
    let config = libp2p_yamux::Config::default().with_max_streams(64);
    run(async {
        let (muxer, driver) =
            libp2p_yamux::Yamux::with_config(config).muxer(Script::new(input), Role::Listener);
        run_muxer(muxer, driver).await;
    });
}

/// Runs one security handshake over the script in the role the input's first byte picks;
/// on success reads the secured stream to its end.
async fn secure<S: SecurityUpgrade<Script>>(security: S, input: &[u8]) {
    let Some((&mode, input)) = input.split_first() else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Listener
    } else {
        Role::Dialer
    };
    let protocol = security.protocol_names()
        .next()
        .expect("an upgrade names its protocol");
    if let Ok((_, mut secured)) = security
        .secure(Script::new(input), role, None, protocol)
        .await
    {
        let _ = secured.write_all(b"data").await;
        let mut rest = Vec::new();
        let _ = secured.read_to_end(&mut rest).await;
    }
}

/// The secio handshake (Propose, Exchange, the nonce check) and, past it, its frames.
pub fn secio(input: &[u8]) {
    run(secure(libp2p_secio::Secio::new(key(1)), input));
}

/// The noise handshake messages as they arrive (the ephemeral keys, the framing).
pub fn noise(input: &[u8]) {
    run(secure(libp2p_noise::Noise::new(key(1)), input));
}

/// The plaintext Exchange.
pub fn plaintext(input: &[u8]) {
    run(secure(libp2p_plaintext::Plaintext::new(key(1)), input));
}

/// The TLS handshake as the listener or dialer sees it (rustls, our certificate checks).
pub fn tls(input: &[u8]) {
    run(secure(libp2p_tls::Tls::new(key(1)), input));
}

/// Noise past the Diffie-Hellman: the fuzzer runs a real handshake with snow against our
/// listener, so that its bytes reach the payload decoder and the transport framing. The
/// first byte picks what they are: 0, the third message's payload (the identity key and
/// signature); 1, raw bytes after a valid handshake (length prefixes and ciphertext); 2,
/// plaintexts after a valid handshake, each sealed properly (the read path past decryption).
pub fn noise_payload(input: &[u8]) {
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    run(async {
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let listener = async {
            use tokio_util::compat::TokioAsyncReadCompatExt;
            if let Ok((_, mut secured)) = libp2p_noise::Noise::new(key(1))
                .secure(ours.compat(), Role::Listener, None, "/noise")
                .await
            {
                let mut rest = Vec::new();
                let _ = secured.read_to_end(&mut rest).await;
            }
        };
        let dialer = seeds::noise_dialer(theirs, mode % 3, data);
        let _ = futures::join!(listener, dialer);
    });
}

/// Identify messages as read off a stream (several merged, as pushes are).
pub fn identify(input: &[u8]) {
    let _ = futures::executor::block_on(libp2p_host::identify::receive(Script::new(input)));
}

/// Kademlia frames, then each message as a request and as a response of its own type.
pub fn kad(input: &[u8]) {
    use libp2p_kad::proto::{decode_frame, MessageType, PeerLimits, Request, Response};
    let limits = PeerLimits {
        max_peers: 20,
        max_addrs: 8,
    };
    let mut buf = input;
    while let Ok(Some((msg, used))) = decode_frame(buf, 16 * 1024) {
        buf = &buf[used..];
        let _ = Request::from_proto(msg.clone(), limits);
        if let Ok(ty) = MessageType::try_from(msg.r#type) {
            let _ = Response::from_proto(msg, ty, limits);
        }
    }
}

/// Gossipsub RPC frames, each then handled by a router that has the sender as a peer.
pub fn gossipsub(input: &[u8]) {
    use libp2p_gossipsub::{Authenticity, Config, Gossipsub, PeerKind, TopicHash};
    let codec = libp2p_gossipsub::Codec::new(64 * 1024);
    let now = Instant::now();
    let Ok(mut router) = Gossipsub::new(Config::default(), Authenticity::Signed(key(3)), 1, now)
    else {
        return;
    };
    let from = key(2).public().to_peer_id();
    router.add_peer(from, PeerKind::Gossipsub1_1, false, None);
    let _ = router.subscribe(TopicHash::new("t"), now);
    let mut buf = input;
    let mut at = now;
    while let Ok(Some((rpc, used))) = codec.decode(buf) {
        buf = &buf[used..];
        router.handle_rpc(from, rpc, at);
        at += std::time::Duration::from_millis(700);
        router.handle_timeout(at);
    }
}
