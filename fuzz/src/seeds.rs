//! Seed inputs for each target, made by our own encoders (and by real handshakes between our
//! own security upgrades, recorded), and the fuzzer's side of the noise handshake.
//!
//! `cargo test --manifest-path fuzz/Cargo.toml --no-default-features -- --ignored write_seeds`
//! writes them to `corpus/<target>/`.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p_core::{Role, SecurityUpgrade, UpgradeInfo};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// The chunk-size byte [`Script`](crate::Script) reads first: whole reads.
const WHOLE: u8 = 3;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn ms(text: &str, out: &mut Vec<u8>) {
    varint(text.len() as u64 + 1, out);
    out.extend_from_slice(text.as_bytes());
    out.push(b'\n');
}

fn mplex_frame(id: u64, flag: u64, body: &[u8], out: &mut Vec<u8>) {
    varint((id << 3) | flag, out);
    varint(body.len() as u64, out);
    out.extend_from_slice(body);
}

fn yamux_header(kind: u8, flags: u16, id: u32, len: u32, out: &mut Vec<u8>) {
    out.push(0);
    out.push(kind);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
}

/// A socket that records what is written into it.
struct Recorder {
    inner: Compat<DuplexStream>,
    written: Arc<Mutex<Vec<u8>>>,
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = futures::ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.written
            .lock()
            .expect("lock")
            .extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Runs a real handshake between two instances of one security upgrade and returns what the
/// side in `recorded` wrote: the input the other role's target expects (with its mode and
/// chunk bytes in front).
fn record<S, F>(make: F, recorded: Role) -> Vec<u8>
where
    S: SecurityUpgrade<Recorder> + SecurityUpgrade<Compat<DuplexStream>>,
    F: Fn(libp2p_core::Keypair) -> S,
{
    let written = Arc::new(Mutex::new(Vec::new()));
    let (a, b) = tokio::io::duplex(1 << 20);
    let recorder = Recorder {
        inner: a.compat(),
        written: written.clone(),
    };
    let (ours, theirs) = (make(crate::key(2)), make(crate::key(1)));
    let name = UpgradeInfo::protocol_names(&ours)
        .next()
        .expect("an upgrade names its protocol");
    let other = match recorded {
        Role::Dialer => Role::Listener,
        // Role::Listener (`Role` is non-exhaustive).
        _ => Role::Dialer,
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
        .block_on(async {
            let left = async {
                if let Ok((_, mut s)) = ours.secure(recorder, recorded, None, name).await {
                    use futures::AsyncWriteExt;
                    let _ = s.write_all(b"hello from the seed").await;
                    let _ = s.close().await;
                }
            };
            let right = async {
                if let Ok((_, mut s)) = theirs.secure(b.compat(), other, None, name).await {
                    use futures::AsyncReadExt;
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                }
            };
            futures::join!(left, right);
        });
    // The target's mode byte: even runs our side as the listener.
    let mode = match recorded {
        Role::Dialer => 0,
        // Role::Listener (`Role` is non-exhaustive).
        _ => 1,
    };
    let mut input = vec![mode, WHOLE];
    input.extend_from_slice(&written.lock().expect("lock"));
    input
}

/// The fuzzer's side of a noise handshake with our listener on `io` (see
/// [`noise_payload`](crate::noise_payload) for the modes).
pub async fn noise_dialer(io: DuplexStream, mode: u8, data: &[u8]) {
    let _ = noise_dialer_inner(io, mode, data).await;
}

async fn write_frame(io: &mut DuplexStream, body: &[u8]) -> io::Result<()> {
    io.write_all(&(body.len() as u16).to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

async fn read_frame(io: &mut DuplexStream) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// The payload that proves `key` owns the noise static key `static_public`.
fn identity_payload(key: &libp2p_core::Keypair, static_public: &[u8]) -> Vec<u8> {
    let mut signed = b"noise-libp2p-static-key:".to_vec();
    signed.extend_from_slice(static_public);
    let signature = key.sign(&signed).expect("ed25519 signs");
    let public = key.public().encode_protobuf();
    let mut out = Vec::new();
    out.push(0x0a);
    varint(public.len() as u64, &mut out);
    out.extend_from_slice(&public);
    out.push(0x12);
    varint(signature.len() as u64, &mut out);
    out.extend_from_slice(&signature);
    out
}

fn snow_error(e: snow::Error) -> io::Error {
    io::Error::other(e.to_string())
}

async fn noise_dialer_inner(mut io: DuplexStream, mode: u8, data: &[u8]) -> io::Result<()> {
    let params: snow::params::NoiseParams = "Noise_XX_25519_ChaChaPoly_SHA256"
        .parse()
        .expect("noise params");
    let builder = snow::Builder::new(params.clone());
    let static_key = builder.generate_keypair().map_err(snow_error)?;
    let mut hs = snow::Builder::new(params)
        .local_private_key(&static_key.private)
        .map_err(snow_error)?
        .build_initiator()
        .map_err(snow_error)?;
    let mut buf = vec![0u8; 65_535];
    let n = hs.write_message(&[], &mut buf).map_err(snow_error)?;
    write_frame(&mut io, &buf[..n]).await?;
    let msg2 = read_frame(&mut io).await?;
    hs.read_message(&msg2, &mut buf).map_err(snow_error)?;
    let payload = if mode == 0 {
        data[..data.len().min(60_000)].to_vec()
    } else {
        identity_payload(&crate::key(3), &static_key.public)
    };
    let n = hs.write_message(&payload, &mut buf).map_err(snow_error)?;
    write_frame(&mut io, &buf[..n]).await?;
    if mode == 0 {
        return io.shutdown().await;
    }
    let mut transport = hs.into_transport_mode().map_err(snow_error)?;
    if mode == 1 {
        io.write_all(data).await?;
    } else {
        for chunk in data.chunks(1000) {
            let n = transport
                .write_message(chunk, &mut buf)
                .map_err(snow_error)?;
            write_frame(&mut io, &buf[..n]).await?;
        }
    }
    io.shutdown().await
}

/// Every target's seeds: (target, inputs).
pub fn all() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    let mut out = Vec::new();

    let mut listener = Vec::new();
    for proposals in [
        &["/a/1.0.0"][..],
        &["/x/1", "ls", "/b/2.0.0"][..],
        &["/x/1", "/y/2", "/noise"][..],
    ] {
        let mut input = vec![WHOLE];
        ms("/multistream/1.0.0", &mut input);
        for p in proposals {
            ms(p, &mut input);
        }
        input.extend_from_slice(b"data behind");
        listener.push(input.clone());
        input[0] = 0;
        listener.push(input);
    }
    out.push(("multistream_listener", listener));

    let mut dialer = Vec::new();
    for mode in 0..3u8 {
        let mut input = vec![mode, WHOLE];
        ms("/multistream/1.0.0", &mut input);
        if mode == 2 {
            let mut list = Vec::new();
            for p in ["/a/1.0.0", "/b/2.0.0"] {
                ms(p, &mut list);
            }
            list.push(b'\n');
            varint(list.len() as u64, &mut input);
            input.extend_from_slice(&list);
        } else {
            ms("na", &mut input);
            ms("/b/2.0.0", &mut input);
            input.extend_from_slice(b"data");
        }
        dialer.push(input);
    }
    out.push(("multistream_dialer", dialer));

    let mut mplex = vec![WHOLE];
    mplex_frame(1, 0, b"1", &mut mplex);
    mplex_frame(1, 2, b"hello", &mut mplex);
    mplex_frame(1, 4, b"", &mut mplex);
    mplex_frame(3, 0, b"3", &mut mplex);
    mplex_frame(3, 6, b"", &mut mplex);
    mplex_frame(0, 1, b"to our stream", &mut mplex);
    mplex_frame(0, 3, b"", &mut mplex);
    let mut mplex_split = mplex.clone();
    mplex_split[0] = 1;
    out.push(("mplex", vec![mplex, mplex_split]));

    let mut yamux = vec![WHOLE];
    yamux_header(1, 1, 1, 0, &mut yamux);
    yamux_header(0, 0, 1, 5, &mut yamux);
    yamux.extend_from_slice(b"hello");
    yamux_header(1, 0, 1, 1024, &mut yamux);
    yamux_header(2, 1, 0, 7, &mut yamux);
    yamux_header(0, 4, 1, 0, &mut yamux);
    yamux_header(1, 2, 2, 0, &mut yamux);
    yamux_header(3, 0, 0, 0, &mut yamux);
    let mut yamux_split = yamux.clone();
    yamux_split[0] = 2;
    out.push(("yamux", vec![yamux, yamux_split]));

    out.push((
        "secio",
        vec![
            record(libp2p_secio::Secio::new, Role::Dialer),
            record(libp2p_secio::Secio::new, Role::Listener),
        ],
    ));
    out.push((
        "noise",
        vec![
            record(libp2p_noise::Noise::new, Role::Dialer),
            record(libp2p_noise::Noise::new, Role::Listener),
        ],
    ));
    out.push((
        "plaintext",
        vec![
            record(libp2p_plaintext::Plaintext::new, Role::Dialer),
            record(libp2p_plaintext::Plaintext::new, Role::Listener),
        ],
    ));
    out.push((
        "tls",
        vec![
            record(libp2p_tls::Tls::new, Role::Dialer),
            record(libp2p_tls::Tls::new, Role::Listener),
        ],
    ));

    let payload = identity_payload(&crate::key(3), &[9u8; 32]);
    let mut mode0 = vec![0u8];
    mode0.extend_from_slice(&payload);
    let mut mode1 = vec![1u8, 0, 5];
    mode1.extend_from_slice(b"short");
    let mut mode2 = vec![2u8];
    mode2.extend_from_slice(b"hello, sealed properly");
    out.push(("noise_payload", vec![mode0, mode1, mode2]));

    let identify = libp2p_host::identify::IdentifyMessage {
        public_key: Some(crate::key(2).public().encode_protobuf()),
        listen_addrs: vec![b"\x04\x7f\x00\x00\x01\x06\x0f\xa1".to_vec()],
        protocols: vec!["/ipfs/id/1.0.0".into(), "/ipfs/ping/1.0.0".into()],
        observed_addr: Some(b"\x04\x7f\x00\x00\x01\x06\x0f\xa2".to_vec()),
        protocol_version: Some("/ipfs/0.1.0".into()),
        agent_version: Some("seed/0.1".into()),
        signed_peer_record: None,
    };
    let body = identify.encode_to_vec();
    let mut one = vec![WHOLE];
    varint(body.len() as u64, &mut one);
    one.extend_from_slice(&body);
    let mut two = one.clone();
    two.extend_from_slice(&one[1..]);
    out.push(("identify", vec![one, two]));

    use libp2p_kad::proto::{encode_frame, MessageType, ProtoMessage, ProtoPeer, ProtoRecord};
    let peer = ProtoPeer {
        id: crate::key(2).public().to_peer_id().to_bytes(),
        addrs: vec![b"\x04\x7f\x00\x00\x01\x06\x0f\xa1".to_vec()],
        connection: 1,
    };
    let mut kad = Vec::new();
    for (ty, record) in [
        (MessageType::FindNode, None),
        (MessageType::GetProviders, None),
        (
            MessageType::PutValue,
            Some(ProtoRecord {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                ..Default::default()
            }),
        ),
        (MessageType::Ping, None),
    ] {
        let msg = ProtoMessage {
            r#type: ty as i32,
            key: b"k".to_vec(),
            record,
            closer_peers: vec![peer.clone()],
            provider_peers: vec![peer.clone()],
            cluster_level_raw: 0,
        };
        let mut frame = Vec::new();
        encode_frame(&msg, &mut frame);
        kad.push(frame);
    }
    out.push(("kad", kad));

    use libp2p_gossipsub::proto::{
        ControlGraft, ControlIHave, ControlIWant, ControlMessage, ControlPrune, Message, Rpc,
        SubOpts,
    };
    let codec = libp2p_gossipsub::Codec::new(64 * 1024);
    let rpcs = [
        Rpc {
            subscriptions: vec![SubOpts {
                subscribe: Some(true),
                topic_id: Some("t".into()),
            }],
            ..Default::default()
        },
        Rpc {
            publish: vec![Message {
                from: Some(crate::key(2).public().to_peer_id().to_bytes()),
                data: Some(b"hello".to_vec()),
                seqno: Some(1u64.to_be_bytes().to_vec()),
                topic: "t".into(),
                signature: None,
                key: None,
            }],
            ..Default::default()
        },
        Rpc {
            control: Some(ControlMessage {
                ihave: vec![ControlIHave {
                    topic_id: Some("t".into()),
                    message_ids: vec![b"id1".to_vec()],
                }],
                iwant: vec![ControlIWant {
                    message_ids: vec![b"id1".to_vec()],
                }],
                graft: vec![ControlGraft {
                    topic_id: Some("t".into()),
                }],
                prune: vec![ControlPrune {
                    topic_id: Some("t".into()),
                    peers: Vec::new(),
                    backoff: Some(60),
                }],
                idontwant: Vec::new(),
            }),
            ..Default::default()
        },
    ];
    let mut gossip = Vec::new();
    let mut all_three = Vec::new();
    for rpc in &rpcs {
        let mut frame = Vec::new();
        codec.encode(rpc, &mut frame).expect("seed RPC fits");
        all_three.extend_from_slice(&frame);
        gossip.push(frame);
    }
    gossip.push(all_three);
    out.push(("gossipsub", gossip));
    out
}
