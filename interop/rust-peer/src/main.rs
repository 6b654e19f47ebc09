//! `rust-peer`: the foreign peer, built on rust-libp2p from crates.io, that our own libp2p
//! implementation is tested against. It follows the command-line contract in CONTRACT.md
//! (the same as ../PEER-CLI.md) exactly:
//!
//! ```text
//! rust-peer --listen /ip4/127.0.0.1/tcp/0 [--security S] [--muxer M] [--key K] [--seed N] [--timeout SECS]
//! rust-peer --dial /ip4/127.0.0.1/tcp/PORT/p2p/ID [--bytes N] [--streams K]
//! rust-peer --dial ADDR/p2p/ID --ping
//! rust-peer --dial ADDR/p2p/ID --perf-upload N --perf-download M
//! rust-peer --dial ADDR/p2p/ID --connections N     # benchmark: `CONN OK <connections/s>`
//! rust-peer --dial ADDR/p2p/ID --hold N            # benchmark: `HOLD OK <N>`, then stay
//! rust-peer --listen ADDR --serve-requests         # also answer /reqresp-json and /reqresp-cbor
//! rust-peer --dial ADDR/p2p/ID --request json|cbor # `REQUEST OK 5 <avg round trip ms>`
//! ```
//!
//! Stdout carries only the contract's lines (`LISTEN`, `OK`, `PING OK`, `PERF`, `REQUEST OK`, `FAIL`);
//! diagnostics go to stderr (all swarm events with `RUST_PEER_VERBOSE=1`).

use std::{
    convert::Infallible,
    io::{self, Write as _},
    process::exit,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use futures::{AsyncReadExt as _, AsyncWriteExt as _, StreamExt as _};
use libp2p::{
    gossipsub, identify, kad, mdns,
    identity::{self, Keypair},
    multiaddr::{Multiaddr, Protocol},
    noise, ping, plaintext,
    request_response::{self, ProtocolSupport},
    swarm::{behaviour::toggle::Toggle, dial_opts::DialOpts, NetworkBehaviour, SwarmEvent},
    tcp, yamux, PeerId, Stream, StreamProtocol, Swarm, SwarmBuilder,
};
use libp2p_stream::Control;
use serde::{Deserialize, Serialize};

const ECHO: StreamProtocol = StreamProtocol::new("/echo/1.0.0");
const PERF: StreamProtocol = StreamProtocol::new("/perf/1.0.0");
const CHUNK: usize = 64 * 1024;
/// Request-response with rust-libp2p's JSON codec (`request_response::json`).
const REQRESP_JSON: StreamProtocol = StreamProtocol::new("/reqresp-json/1.0.0");
/// Request-response with rust-libp2p's CBOR codec (`request_response::cbor`).
const REQRESP_CBOR: StreamProtocol = StreamProtocol::new("/reqresp-cbor/1.0.0");
/// How many requests `--request` sends, one after another.
const REQUESTS: u64 = 5;

/// Set once `--hold` has printed `HOLD OK`: the timeout then ends the process quietly.
static HELD: AtomicBool = AtomicBool::new(false);
/// Set while the node serves in a PEER-CLI v2 role (a listener, a gossip node, an mDNS node):
/// the timeout then ends the process quietly, exit status 0.
pub(crate) static SERVING: AtomicBool = AtomicBool::new(false);

mod v2;

// ---------------------------------------------------------------------------------------------
// Failures

/// A failure: printed as `FAIL <reason>` on stdout.
pub(crate) enum Fail {
    /// The peer does not implement the requested protocol or option: exit status 2.
    Unsupported(String),
    /// Bad command line: exit status 2.
    Usage(String),
    /// Anything else: exit status 1.
    Other(String),
}

impl Fail {
    fn exit(self) -> ! {
        match self {
            Fail::Unsupported(what) => finish(&format!("FAIL unsupported: {what}"), 2),
            Fail::Usage(what) => finish(&format!("FAIL usage: {what}"), 2),
            Fail::Other(why) => finish(&format!("FAIL {}", one_line(&why)), 1),
        }
    }
}

pub(crate) fn other(why: impl std::fmt::Display) -> Fail {
    Fail::Other(why.to_string())
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Print one contract line, flush, and leave at once (without waiting for the runtime's tasks).
fn finish(line: &str, code: i32) -> ! {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    exit(code)
}

fn verbose() -> bool {
    std::env::var_os("RUST_PEER_VERBOSE").is_some_and(|v| !v.is_empty() && v != "0")
}

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Clone, Copy, Debug)]
enum Security {
    Noise,
    Plaintext,
    Tls,
}

#[derive(Clone, Copy, Debug)]
enum Muxer {
    Yamux,
    Mplex,
}

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    Ed25519,
    Rsa,
    Secp256k1,
    Ecdsa,
}

/// The body encoding of `--request`: which of the two request-response protocols.
#[derive(Clone, Copy, Debug)]
enum Codec {
    /// `/reqresp-json/1.0.0`.
    Json,
    /// `/reqresp-cbor/1.0.0`.
    Cbor,
}

enum Mode {
    /// `--listen` (repeatable): the addresses in the order given.
    Listen(Vec<Multiaddr>),
    Dial(Multiaddr, PeerId),
    /// Any PEER-CLI v2 role (Kademlia, gossipsub, mDNS, `--bootstrap`): see `v2.rs`.
    V2(v2::Options),
}

enum Action {
    Echo { bytes: usize, streams: usize },
    Ping,
    Perf { upload: u64, download: u64 },
    Connections(usize),
    Hold(usize),
    /// `--request`: 5 requests, one after another, on the protocol of that codec.
    Request(Codec),
}

struct Args {
    security: Security,
    muxer: Muxer,
    key: KeyKind,
    seed: Option<u64>,
    timeout: u64,
    /// `--serve-requests`: answer both request-response protocols (listen mode).
    serve_requests: bool,
    mode: Mode,
    action: Action,
}

fn number<T: std::str::FromStr>(opt: &str, v: &str) -> Result<T, Fail> {
    v.parse()
        .map_err(|_| Fail::Usage(format!("{opt}: not a number: {v}")))
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Args, Fail> {
    let mut security = Security::Noise;
    let mut muxer = Muxer::Yamux;
    let mut key = KeyKind::Ed25519;
    let mut seed = None;
    let mut timeout = 60u64;
    let mut listen: Vec<Multiaddr> = Vec::new();
    let mut dial = None;
    let mut v2 = v2::Options::default();
    let mut bytes = 1024usize;
    let mut streams = 1usize;
    let mut ping = false;
    let mut perf_upload = None;
    let mut perf_download = None;
    let mut connections = None;
    let mut hold = None;
    let mut request = None;
    let mut serve_requests = false;

    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        // Accept both `--opt value` and `--opt=value`.
        let (opt, inline) = match arg.split_once('=') {
            Some((o, v)) if o.starts_with("--") => (o.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String, Fail> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .ok_or_else(|| Fail::Usage(format!("{opt} needs a value"))),
            }
        };
        match opt.as_str() {
            "--security" => {
                security = match value()?.as_str() {
                    "noise" => Security::Noise,
                    "plaintext" => Security::Plaintext,
                    "tls" => Security::Tls,
                    other => return Err(Fail::Unsupported(other.to_string())),
                }
            }
            "--muxer" => {
                muxer = match value()?.as_str() {
                    "yamux" => Muxer::Yamux,
                    "mplex" => Muxer::Mplex,
                    other => return Err(Fail::Unsupported(other.to_string())),
                }
            }
            "--key" => {
                key = match value()?.as_str() {
                    "ed25519" => KeyKind::Ed25519,
                    "rsa" => KeyKind::Rsa,
                    "secp256k1" => KeyKind::Secp256k1,
                    "ecdsa" => KeyKind::Ecdsa,
                    other => return Err(Fail::Unsupported(format!("key {other}"))),
                }
            }
            "--seed" => seed = Some(number(&opt, &value()?)?),
            "--timeout" => timeout = number(&opt, &value()?)?,
            "--listen" => {
                let v = value()?;
                listen.push(
                    v.parse::<Multiaddr>()
                        .map_err(|e| Fail::Usage(format!("--listen {v}: {e}")))?,
                );
            }
            "--dial" => {
                let v = value()?;
                dial = Some(
                    v.parse::<Multiaddr>()
                        .map_err(|e| Fail::Usage(format!("--dial {v}: {e}")))?,
                );
            }
            "--bytes" => bytes = number(&opt, &value()?)?,
            "--streams" => streams = number(&opt, &value()?)?,
            "--ping" => {
                if inline.is_some() {
                    return Err(Fail::Usage("--ping takes no value".into()));
                }
                ping = true
            }
            "--perf-upload" => perf_upload = Some(number(&opt, &value()?)?),
            "--perf-download" => perf_download = Some(number(&opt, &value()?)?),
            "--connections" => connections = Some(number(&opt, &value()?)?),
            "--hold" => hold = Some(number(&opt, &value()?)?),
            "--request" => {
                request = Some(match value()?.as_str() {
                    "json" => Codec::Json,
                    "cbor" => Codec::Cbor,
                    other => return Err(Fail::Unsupported(format!("request codec {other}"))),
                })
            }
            "--serve-requests" => {
                if inline.is_some() {
                    return Err(Fail::Usage("--serve-requests takes no value".into()));
                }
                serve_requests = true
            }
            "--kad" | "--mdns" => {
                if inline.is_some() {
                    return Err(Fail::Usage(format!("{opt} takes no value")));
                }
                if opt == "--kad" {
                    v2.kad = true
                } else {
                    v2.mdns = true
                }
            }
            "--bootstrap" => {
                let v = value()?;
                let addr = v
                    .parse::<Multiaddr>()
                    .map_err(|e| Fail::Usage(format!("--bootstrap {v}: {e}")))?;
                match addr.iter().last() {
                    Some(Protocol::P2p(peer)) => v2.bootstrap.push((addr, peer)),
                    _ => return Err(Fail::Usage(format!("--bootstrap {v}: must end in /p2p/<peer id>"))),
                }
            }
            "--provide" => v2.provide = Some(value()?),
            "--find-providers" => v2.find_providers = Some(value()?),
            "--find-peer" => {
                let v = value()?;
                v2.find_peer = Some(
                    v.parse::<PeerId>()
                        .map_err(|e| Fail::Usage(format!("--find-peer {v}: {e}")))?,
                );
            }
            "--gossip" => v2.gossip = Some(value()?),
            "--publish" => v2.publish = Some(value()?),
            "--count" => v2.count = number(&opt, &value()?)?,
            "--publish-wait" => v2.publish_wait = Duration::from_secs_f64(number::<f64>(&opt, &value()?)?.max(0.0)),
            "-h" | "--help" => {
                eprintln!(
                    "usage: rust-peer (--listen ADDR | --dial ADDR/p2p/ID [--bytes N] [--streams K] \
                     [--ping] [--perf-upload N --perf-download M] [--connections N] [--hold N] [--request json|cbor]) \
                     [--serve-requests] [--security noise|plaintext|tls] \
                     [--muxer yamux|mplex] [--key ed25519|rsa|secp256k1|ecdsa] [--seed N] [--timeout SECS]"
                );
                exit(2);
            }
            other => return Err(Fail::Unsupported(format!("option {other}"))),
        }
    }

    if v2.any() {
        v2.listen = listen;
        if let Some(addr) = dial {
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => v2.dial.push((addr, peer)),
                _ => return Err(Fail::Usage("--dial address must end in /p2p/<peer id>".into())),
            }
        }
        v2.check()?;
        return Ok(Args {
            security,
            muxer,
            key,
            seed,
            timeout,
            serve_requests,
            mode: Mode::V2(v2),
            action: Action::Ping,
        });
    }
    let listen = if listen.is_empty() { None } else { Some(listen) };
    let mode = match (listen, dial) {
        (Some(addrs), None) => Mode::Listen(addrs),
        (None, Some(mut addr)) => match addr.pop() {
            Some(Protocol::P2p(peer)) => {
                // Dial with the /p2p suffix so the swarm checks the remote's identity.
                addr.push(Protocol::P2p(peer));
                Mode::Dial(addr, peer)
            }
            _ => return Err(Fail::Usage("--dial address must end in /p2p/<peer id>".into())),
        },
        (Some(_), Some(_)) => return Err(Fail::Usage("--listen and --dial exclude each other".into())),
        (None, None) => return Err(Fail::Usage("one of --listen or --dial is required".into())),
    };
    // libp2p-plaintext 0.44 caps its handshake (Exchange) message at 100 bytes: an ed25519 or
    // secp256k1 key fits, an ecdsa (~133 bytes) or rsa key never does.
    if let (Security::Plaintext, KeyKind::Rsa | KeyKind::Ecdsa) = (security, key) {
        let name = if let KeyKind::Rsa = key { "rsa" } else { "ecdsa" };
        return Err(Fail::Unsupported(format!(
            "plaintext with {name} key (libp2p-plaintext limits its handshake message to 100 bytes)"
        )));
    }
    let perf = perf_upload.is_some() || perf_download.is_some();
    if ping && perf {
        return Err(Fail::Usage("--ping and --perf-* exclude each other".into()));
    }
    if request.is_some() && (ping || perf) {
        return Err(Fail::Usage("--request excludes --ping and --perf-*".into()));
    }
    let action = if let Some(n) = connections {
        Action::Connections(n)
    } else if let Some(n) = hold {
        Action::Hold(n)
    } else if let Some(codec) = request {
        Action::Request(codec)
    } else if ping {
        Action::Ping
    } else if perf {
        Action::Perf {
            upload: perf_upload.unwrap_or(0),
            download: perf_download.unwrap_or(0),
        }
    } else {
        if streams == 0 {
            return Err(Fail::Usage("--streams must be at least 1".into()));
        }
        Action::Echo { bytes, streams }
    };
    Ok(Args {
        security,
        muxer,
        key,
        seed,
        timeout,
        serve_requests,
        mode,
        action,
    })
}

// ---------------------------------------------------------------------------------------------
// Keys

fn seed_bytes(n: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn rsa_key_path() -> std::path::PathBuf {
    match std::env::var_os("PEER_RSA_KEY") {
        Some(p) if !p.is_empty() => p.into(),
        _ => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../libp2p-core/testdata/rsa-2048.pk8"),
    }
}

fn make_key(kind: KeyKind, seed: Option<u64>) -> Result<Keypair, Fail> {
    let bad = |e: &dyn std::fmt::Display| other(format!("key: {e}"));
    match (kind, seed) {
        (KeyKind::Ed25519, None) => Ok(Keypair::generate_ed25519()),
        (KeyKind::Ed25519, Some(n)) => Keypair::ed25519_from_bytes(seed_bytes(n)).map_err(|e| bad(&e)),
        (KeyKind::Secp256k1, None) => Ok(Keypair::generate_secp256k1()),
        (KeyKind::Secp256k1, Some(n)) => {
            let secret = identity::secp256k1::SecretKey::try_from_bytes(seed_bytes(n.max(1)))
                .map_err(|e| bad(&e))?;
            Ok(identity::secp256k1::Keypair::from(secret).into())
        }
        (KeyKind::Ecdsa, None) => Ok(Keypair::generate_ecdsa()),
        (KeyKind::Ecdsa, Some(n)) => {
            let secret = identity::ecdsa::SecretKey::try_from_bytes(seed_bytes(n.max(1)))
                .map_err(|e| bad(&e))?;
            Ok(identity::ecdsa::Keypair::from(secret).into())
        }
        // libp2p-identity cannot generate RSA keys: the one key file serves, seed or not.
        (KeyKind::Rsa, _) => {
            let path = rsa_key_path();
            let der = std::fs::read(&path).map_err(|e| {
                Fail::Unsupported(format!("rsa key file missing ({}: {e})", path.display()))
            })?;
            match Keypair::rsa_from_pkcs8(&mut der.clone()) {
                Ok(key) => Ok(key),
                // The file may hold a bare PKCS#1 RSAPrivateKey: wrap it as PKCS#8 and retry.
                Err(e) => Keypair::rsa_from_pkcs8(&mut pkcs1_to_pkcs8(&der)).map_err(|_| bad(&e)),
            }
        }
    }
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// PrivateKeyInfo { version 0, AlgorithmIdentifier { rsaEncryption, NULL }, OCTET STRING pkcs1 }.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    const VERSION: [u8; 3] = [0x02, 0x01, 0x00];
    const RSA_ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut octets = vec![0x04];
    octets.extend(der_len(pkcs1.len()));
    octets.extend_from_slice(pkcs1);
    let body_len = VERSION.len() + RSA_ALGORITHM.len() + octets.len();
    let mut out = vec![0x30];
    out.extend(der_len(body_len));
    out.extend_from_slice(&VERSION);
    out.extend_from_slice(&RSA_ALGORITHM);
    out.extend(octets);
    out
}

// ---------------------------------------------------------------------------------------------
// Swarm

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Serves /echo/1.0.0 and /perf/1.0.0 (inbound).
    serve: serve::Behaviour,
    /// Opens /echo/1.0.0 and /perf/1.0.0 streams (outbound).
    stream: libp2p_stream::Behaviour,
    ping: ping::Behaviour,
    identify: identify::Behaviour,
    /// `/reqresp-json/1.0.0`: requests out (`--request json`), and in with `--serve-requests`.
    reqresp_json: request_response::json::Behaviour<Request, Response>,
    /// `/reqresp-cbor/1.0.0`: requests out (`--request cbor`), and in with `--serve-requests`.
    reqresp_cbor: request_response::cbor::Behaviour<Request, Response>,
    /// `/ipfs/kad/1.0.0` in server mode (`--kad` and the options that imply it).
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    /// Gossipsub (`--gossip`), strict signing, the library's default message id.
    gossipsub: Toggle<gossipsub::Behaviour>,
    /// mDNS (`--mdns`), tokio flavour, IPv4.
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The optional behaviours of a PEER-CLI v2 role.
#[derive(Clone, Copy, Default)]
pub(crate) struct Extras {
    pub(crate) kad: bool,
    pub(crate) gossip: bool,
    pub(crate) mdns: bool,
}

/// The request of both request-response protocols. Unknown fields are refused, so a body
/// that is not exactly this shape fails to decode (and the requester sees the stream end).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    message: String,
    n: u64,
}

/// The response: `message` upper-cased, `n + 1`. Unknown fields are refused, as for `Request`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Response {
    message: String,
    n: u64,
}

/// rust-libp2p's defaults, spelled out: 10 s per request (inbound and outbound), at most 100
/// request streams at once per connection; the codecs cap a request at 1 MiB and a response
/// at 10 MiB.
fn reqresp_config() -> request_response::Config {
    request_response::Config::default()
        .with_request_timeout(Duration::from_secs(10))
        .with_max_concurrent_streams(100)
}

fn make_behaviour(key: &Keypair, ping_config: ping::Config, serve_requests: bool, extras: Extras) -> Result<Behaviour, Fail> {
    let local = key.public().to_peer_id();
    let kad = extras.kad.then(|| {
        let mut kad = kad::Behaviour::with_config(
            local,
            kad::store::MemoryStore::new(local),
            kad::Config::new(kad::PROTOCOL_NAME),
        );
        // Server mode from the start: on loopback no external address is ever confirmed, so
        // the automatic mode would stay client and answer nothing.
        kad.set_mode(Some(kad::Mode::Server));
        kad
    });
    let gossipsub = match extras.gossip {
        false => None,
        true => Some(
            // The library's defaults: strict validation, message id = source (base58) and
            // sequence number (decimal), flood publishing, heartbeat 1 s after 5 s.
            gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossipsub::Config::default())
                .map_err(|e| other(format!("gossipsub: {e}")))?,
        ),
    };
    let mdns = match extras.mdns {
        false => None,
        true => {
            // Queries every 2 s (the default, 5 min, would leave a node that starts second
            // unseen by one that asked before it was up until the next round).
            let config = mdns::Config {
                query_interval: Duration::from_secs(2),
                ..mdns::Config::default()
            };
            Some(mdns::tokio::Behaviour::new(config, local).map_err(|e| other(format!("mdns: {e}")))?)
        }
    };
    // Without --serve-requests inbound requests are refused at protocol negotiation.
    let support = if serve_requests {
        ProtocolSupport::Full
    } else {
        ProtocolSupport::Outbound
    };
    Ok(Behaviour {
        serve: serve::Behaviour,
        stream: libp2p_stream::Behaviour::new(),
        ping: ping::Behaviour::new(ping_config),
        identify: identify::Behaviour::new(
            identify::Config::new("/ipfs/0.1.0".to_string(), key.public())
                .with_agent_version("rust-peer".to_string()),
        ),
        reqresp_json: request_response::json::Behaviour::new([(REQRESP_JSON, support.clone())], reqresp_config()),
        reqresp_cbor: request_response::cbor::Behaviour::new([(REQRESP_CBOR, support)], reqresp_config()),
        kad: kad.into(),
        gossipsub: gossipsub.into(),
        mdns: mdns.into(),
    })
}

fn plaintext_config(key: &Keypair) -> Result<plaintext::Config, Infallible> {
    Ok(plaintext::Config::new(key))
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn build_swarm(
    security: Security,
    muxer: Muxer,
    key: Keypair,
    ping_config: ping::Config,
    idle: Duration,
    serve_requests: bool,
    extras: Extras,
) -> Result<Swarm<Behaviour>, Fail> {
    // One arm per (security, muxer): each offers exactly that one protocol, on TCP and on
    // WebSocket (over TCP); QUIC brings its own TLS and muxing.
    macro_rules! build {
        ($security:expr, $muxer:expr) => {{
            let mut made = None;
            let swarm = SwarmBuilder::with_existing_identity(key)
                .with_tokio()
                .with_tcp(tcp::Config::default().nodelay(true), $security, $muxer)
                .map_err(|e| other(format!("security: {e}")))?
                .with_quic()
                .with_dns()
                .map_err(|e| other(format!("dns: {e}")))?
                .with_websocket($security, $muxer)
                .await
                .map_err(|e| other(format!("websocket: {e}")))?
                .with_behaviour(|k| {
                    let behaviour = make_behaviour(k, ping_config, serve_requests, extras);
                    match behaviour {
                        Ok(b) => Ok(b),
                        Err(e) => {
                            made = Some(e);
                            Err(Box::<dyn std::error::Error + Send + Sync>::from("behaviour"))
                        }
                    }
                });
            match swarm {
                Ok(b) => b.with_swarm_config(|c| c.with_idle_connection_timeout(idle)).build(),
                Err(e) => return Err(made.unwrap_or_else(|| other(format!("behaviour: {e:?}")))),
            }
        }};
    }
    Ok(match (security, muxer) {
        (Security::Noise, Muxer::Yamux) => build!(noise::Config::new, yamux::Config::default),
        (Security::Noise, Muxer::Mplex) => build!(noise::Config::new, libp2p_mplex::Config::default),
        (Security::Plaintext, Muxer::Yamux) => build!(plaintext_config, yamux::Config::default),
        (Security::Plaintext, Muxer::Mplex) => build!(plaintext_config, libp2p_mplex::Config::default),
        (Security::Tls, Muxer::Yamux) => build!(libp2p::tls::Config::new, yamux::Config::default),
        (Security::Tls, Muxer::Mplex) => build!(libp2p::tls::Config::new, libp2p_mplex::Config::default),
    })
}

pub(crate) fn log_event(event: &SwarmEvent<BehaviourEvent>) {
    match event {
        SwarmEvent::IncomingConnectionError { send_back_addr, error, .. } => {
            eprintln!("rust-peer: incoming connection from {send_back_addr} failed: {error}")
        }
        SwarmEvent::OutgoingConnectionError { error, .. } => {
            eprintln!("rust-peer: outgoing connection failed: {error}")
        }
        SwarmEvent::ListenerError { error, .. } => eprintln!("rust-peer: listener error: {error}"),
        SwarmEvent::ConnectionClosed { peer_id, cause: Some(cause), .. } => {
            eprintln!("rust-peer: connection to {peer_id} closed: {cause}")
        }
        SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer, result: Err(e), .. })) => {
            eprintln!("rust-peer: ping {peer}: {e}")
        }
        SwarmEvent::Behaviour(BehaviourEvent::ReqrespJson(e) | BehaviourEvent::ReqrespCbor(e)) => match e {
            request_response::Event::InboundFailure { peer, error, .. } => {
                eprintln!("rust-peer: inbound request from {peer}: {error}")
            }
            request_response::Event::OutboundFailure { peer, error, .. } => {
                eprintln!("rust-peer: outbound request to {peer}: {error}")
            }
            _ => {}
        },
        _ => {}
    }
    if verbose() {
        eprintln!("rust-peer: {event:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Protocols

/// Byte `pos` of echo stream `idx`: not periodic in any small power of two, differs per stream.
fn pattern(idx: usize, pos: usize) -> u8 {
    ((pos % 251) as u8) ^ (idx as u8).wrapping_mul(37) ^ ((pos >> 16) as u8)
}

fn fill(buf: &mut [u8], idx: usize, start: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b = pattern(idx, start + i);
    }
}

/// Server side of /echo/1.0.0: copy every byte back until the remote closes its write side,
/// then close ours.
async fn serve_echo(stream: Stream) -> io::Result<u64> {
    let (mut reader, mut writer) = stream.split();
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        writer.write_all(&buf[..n]).await?;
        total += n as u64;
    }
    writer.close().await?;
    Ok(total)
}

/// Server side of /perf/1.0.0: read the 8-byte big-endian count M, drain the upload until the
/// remote closes its write side, send M bytes, close.
async fn serve_perf(mut stream: Stream) -> io::Result<(u64, u64)> {
    let mut header = [0u8; 8];
    stream.read_exact(&mut header).await?;
    let download = u64::from_be_bytes(header);
    let mut buf = vec![0u8; CHUNK];
    let mut uploaded = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        uploaded += n as u64;
    }
    buf.fill(0);
    let mut left = download;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&buf[..n]).await?;
        left -= n as u64;
    }
    stream.close().await?;
    Ok((uploaded, download))
}

/// Inbound /echo/1.0.0 and /perf/1.0.0. Each negotiated stream is handed straight to its own
/// task from the connection handler. (libp2p-stream's `Control::accept` is not used for this:
/// it drops inbound streams whenever its one-slot channel is full, which loses streams when a
/// remote opens many at once.)
mod serve {
    use std::{
        convert::Infallible,
        future::{ready, Ready},
        task::{Context, Poll},
    };

    use libp2p::{
        core::{
            transport::PortUse,
            upgrade::{DeniedUpgrade, InboundUpgrade, UpgradeInfo},
            Endpoint,
        },
        swarm::{
            handler::{ConnectionEvent, FullyNegotiatedInbound},
            ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
            NetworkBehaviour, SubstreamProtocol, THandler, THandlerInEvent, THandlerOutEvent,
            ToSwarm,
        },
        Multiaddr, PeerId, Stream, StreamProtocol,
    };

    use super::{serve_echo, serve_perf, verbose, ECHO, PERF};

    pub struct Behaviour;

    impl NetworkBehaviour for Behaviour {
        type ConnectionHandler = Handler;
        type ToSwarm = Infallible;

        fn handle_established_inbound_connection(
            &mut self,
            _: ConnectionId,
            peer: PeerId,
            _: &Multiaddr,
            _: &Multiaddr,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            Ok(Handler { peer })
        }

        fn handle_established_outbound_connection(
            &mut self,
            _: ConnectionId,
            peer: PeerId,
            _: &Multiaddr,
            _: Endpoint,
            _: PortUse,
        ) -> Result<THandler<Self>, ConnectionDenied> {
            Ok(Handler { peer })
        }

        fn on_swarm_event(&mut self, _: FromSwarm) {}

        fn on_connection_handler_event(&mut self, _: PeerId, _: ConnectionId, event: THandlerOutEvent<Self>) {
            match event {}
        }

        fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
            Poll::Pending
        }
    }

    /// Accepts either protocol and reports which one was negotiated.
    #[derive(Clone, Copy)]
    pub struct Protocols;

    impl UpgradeInfo for Protocols {
        type Info = StreamProtocol;
        type InfoIter = [StreamProtocol; 2];

        fn protocol_info(&self) -> Self::InfoIter {
            [ECHO, PERF]
        }
    }

    impl InboundUpgrade<Stream> for Protocols {
        type Output = (Stream, StreamProtocol);
        type Error = Infallible;
        type Future = Ready<Result<Self::Output, Infallible>>;

        fn upgrade_inbound(self, stream: Stream, protocol: StreamProtocol) -> Self::Future {
            ready(Ok((stream, protocol)))
        }
    }

    pub struct Handler {
        peer: PeerId,
    }

    impl ConnectionHandler for Handler {
        type FromBehaviour = Infallible;
        type ToBehaviour = Infallible;
        type InboundProtocol = Protocols;
        type OutboundProtocol = DeniedUpgrade;
        type InboundOpenInfo = ();
        type OutboundOpenInfo = ();

        fn listen_protocol(&self) -> SubstreamProtocol<Protocols> {
            SubstreamProtocol::new(Protocols, ())
        }

        fn poll(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<ConnectionHandlerEvent<DeniedUpgrade, (), Infallible>> {
            Poll::Pending
        }

        fn on_behaviour_event(&mut self, event: Infallible) {
            match event {}
        }

        fn on_connection_event(&mut self, event: ConnectionEvent<Protocols, DeniedUpgrade>) {
            if let ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                protocol: (stream, protocol),
                ..
            }) = event
            {
                let peer = self.peer;
                // The open stream keeps the connection alive until the task is done with it.
                tokio::spawn(async move {
                    let result = if protocol == ECHO {
                        serve_echo(stream).await.map(|n| format!("echoed {n} bytes"))
                    } else {
                        serve_perf(stream)
                            .await
                            .map(|(up, down)| format!("received {up}, sent {down} bytes"))
                    };
                    match result {
                        Ok(done) if verbose() => eprintln!("rust-peer: {protocol} from {peer}: {done}"),
                        Ok(_) => {}
                        Err(e) => eprintln!("rust-peer: {protocol} from {peer}: {e}"),
                    }
                });
            }
        }
    }
}

/// Client side of one echo stream: write `n` pattern bytes (then close the write side) while
/// reading the echo, verified byte for byte, up to the remote's close.
async fn echo_one(stream: Stream, idx: usize, n: usize) -> io::Result<()> {
    let (mut reader, mut writer) = stream.split();
    let write = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0;
        while sent < n {
            let len = CHUNK.min(n - sent);
            fill(&mut buf[..len], idx, sent);
            writer.write_all(&buf[..len]).await?;
            sent += len;
        }
        writer.close().await
    };
    let read = async move {
        let mut buf = vec![0u8; CHUNK];
        let mut expect = vec![0u8; CHUNK];
        let mut got = 0;
        loop {
            let m = reader.read(&mut buf).await?;
            if m == 0 {
                break;
            }
            if got + m > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("echoed more than the {n} bytes sent"),
                ));
            }
            fill(&mut expect[..m], idx, got);
            if let Some(i) = (0..m).find(|&i| buf[i] != expect[i]) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "echo differs at byte {}: got {:#04x}, sent {:#04x}",
                        got + i,
                        buf[i],
                        expect[i]
                    ),
                ));
            }
            got += m;
        }
        if got != n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("echo ended after {got} of {n} bytes"),
            ));
        }
        Ok(())
    };
    futures::try_join!(write, read).map(|_| ())
}

async fn run_echo(control: Control, peer: PeerId, bytes: usize, streams: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|idx| {
            let mut control = control.clone();
            tokio::spawn(async move {
                let stream = control
                    .open_stream(peer, ECHO)
                    .await
                    .map_err(|e| format!("echo stream {idx}: {e}"))?;
                echo_one(stream, idx, bytes)
                    .await
                    .map_err(|e| format!("echo stream {idx}: {e}"))
            })
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| format!("echo task: {e}"))??;
    }
    Ok(start.elapsed())
}

async fn run_perf(mut control: Control, peer: PeerId, upload: u64, download: u64) -> Result<(f64, f64), String> {
    let mut stream = control
        .open_stream(peer, PERF)
        .await
        .map_err(|e| format!("perf: {e}"))?;
    let io_err = |e: io::Error| format!("perf: {e}");
    let start = Instant::now();
    stream.write_all(&download.to_be_bytes()).await.map_err(io_err)?;
    let buf = vec![0u8; CHUNK];
    let mut left = upload;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&buf[..n]).await.map_err(io_err)?;
        left -= n as u64;
    }
    stream.close().await.map_err(io_err)?;
    let upload_time = start.elapsed();
    let start = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    loop {
        let n = stream.read(&mut buf).await.map_err(io_err)?;
        if n == 0 {
            break;
        }
        got += n as u64;
    }
    let download_time = start.elapsed();
    if got != download {
        return Err(format!("perf: received {got} of {download} bytes"));
    }
    let rate = |bytes: u64, t: Duration| {
        if bytes == 0 {
            0.0
        } else {
            bytes as f64 / (1024.0 * 1024.0) / t.as_secs_f64().max(1e-9)
        }
    };
    Ok((rate(upload, upload_time), rate(download, download_time)))
}

// ---------------------------------------------------------------------------------------------
// Modes

async fn listen(mut swarm: Swarm<Behaviour>, addrs: Vec<Multiaddr>) -> Result<String, Fail> {
    let mut listeners = Listeners::start(&mut swarm, &addrs)?;
    loop {
        let event = swarm.select_next_some().await;
        log_event(&event);
        match event {
            SwarmEvent::NewListenAddr { listener_id, address } => listeners.bound(listener_id, address),
            SwarmEvent::ListenerClosed { reason, .. } => {
                return Err(other(format!("listener closed: {reason:?}")));
            }
            SwarmEvent::Behaviour(BehaviourEvent::ReqrespJson(event)) => {
                if let Some((channel, response)) = answer(event) {
                    // Fails only if the requester is gone (logged as an inbound failure).
                    let _ = swarm.behaviour_mut().reqresp_json.send_response(channel, response);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::ReqrespCbor(event)) => {
                if let Some((channel, response)) = answer(event) {
                    let _ = swarm.behaviour_mut().reqresp_cbor.send_response(channel, response);
                }
            }
            _ => {}
        }
    }
}

async fn dial(mut swarm: Swarm<Behaviour>, addr: Multiaddr, peer: PeerId, action: Action) -> Result<String, Fail> {
    let control = swarm.behaviour().stream.new_control();
    swarm
        .dial(addr.clone())
        .map_err(|e| other(format!("dial {addr}: {e}")))?;
    loop {
        let event = swarm.select_next_some().await;
        log_event(&event);
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == peer => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(other(format!("dial {addr}: {error}")));
            }
            _ => {}
        }
    }

    let line = match action {
        Action::Ping => {
            let mut rtts = Vec::new();
            while rtts.len() < 5 {
                let event = swarm.select_next_some().await;
                log_event(&event);
                match event {
                    SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event { peer: p, result, .. }))
                        if p == peer =>
                    {
                        rtts.push(result.map_err(|e| other(format!("ping: {e}")))?);
                    }
                    SwarmEvent::ConnectionClosed { peer_id, cause, num_established: 0, .. } if peer_id == peer => {
                        return Err(other(format!("connection closed during ping: {cause:?}")));
                    }
                    _ => {}
                }
            }
            let avg = rtts.iter().sum::<Duration>() / rtts.len() as u32;
            format!("PING OK {:.3}", avg.as_secs_f64() * 1000.0)
        }
        Action::Echo { bytes, streams } => {
            let work = tokio::spawn(run_echo(control, peer, bytes, streams));
            let elapsed = drive(&mut swarm, peer, work).await?;
            format!("OK {peer} {} {:.6}", bytes * streams, elapsed.as_secs_f64())
        }
        Action::Perf { upload, download } => {
            let work = tokio::spawn(run_perf(control, peer, upload, download));
            let (up, down) = drive(&mut swarm, peer, work).await?;
            format!("PERF upload {up:.2} download {down:.2}")
        }
        Action::Request(codec) => {
            let avg = run_requests(&mut swarm, peer, codec).await?;
            format!("REQUEST OK {REQUESTS} {:.3}", avg.as_secs_f64() * 1000.0)
        }
        // Handled by `connections` and `hold` before this point.
        Action::Connections(_) | Action::Hold(_) => return Err(other("internal: wrong action")),
    };

    // Close the connection politely (bounded): the remote sees a clean end, not a reset.
    let _ = swarm.disconnect_peer_id(peer);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            let event = swarm.select_next_some().await;
            if verbose() {
                eprintln!("rust-peer: {event:?}");
            }
            if let SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } = event {
                if peer_id == peer {
                    break;
                }
            }
        }
    })
    .await;
    Ok(line)
}

/// The listeners of `--listen` (repeatable): one `LISTEN` line per address, in the order the
/// addresses were given (a later listener that binds first waits for the earlier ones).
pub(crate) struct Listeners {
    local: PeerId,
    ids: Vec<libp2p::core::transport::ListenerId>,
    bound: Vec<Option<Multiaddr>>,
    printed: usize,
}

impl Listeners {
    pub(crate) fn start(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr]) -> Result<Self, Fail> {
        let mut ids = Vec::with_capacity(addrs.len());
        for addr in addrs {
            ids.push(
                swarm
                    .listen_on(addr.clone())
                    .map_err(|e| other(format!("listen on {addr}: {e}")))?,
            );
        }
        Ok(Listeners {
            local: *swarm.local_peer_id(),
            bound: vec![None; ids.len()],
            ids,
            printed: 0,
        })
    }

    /// A `NewListenAddr`: the first address of each listener is the one announced.
    pub(crate) fn bound(&mut self, id: libp2p::core::transport::ListenerId, address: Multiaddr) {
        if let Some(i) = self.ids.iter().position(|l| *l == id) {
            if self.bound[i].is_none() {
                self.bound[i] = Some(address);
            }
        }
        while self.printed < self.bound.len() {
            let Some(address) = &self.bound[self.printed] else { break };
            print_line(&format!("LISTEN {address}/p2p/{}", self.local));
            self.printed += 1;
        }
    }

    /// Every listener has printed its line.
    pub(crate) fn all_printed(&self) -> bool {
        self.printed == self.bound.len()
    }
}

/// Print one contract line (not the last), flushed.
pub(crate) fn print_line(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The answer to an inbound request (`--serve-requests`): `message` upper-cased, `n + 1`. For
/// `n = u64::MAX` there is none: the channel is dropped and the requester sees the stream end.
fn answer(
    event: request_response::Event<Request, Response>,
) -> Option<(request_response::ResponseChannel<Response>, Response)> {
    let request_response::Event::Message {
        peer,
        message: request_response::Message::Request { request, channel, .. },
        ..
    } = event
    else {
        return None;
    };
    let Some(n) = request.n.checked_add(1) else {
        eprintln!("rust-peer: request from {peer}: n = {} has no n + 1, not answered", request.n);
        return None;
    };
    Some((
        channel,
        Response {
            message: request.message.to_uppercase(),
            n,
        },
    ))
}

/// `--request`: request i = `{"message": "hello-<i>", "n": i}` for i = 1..=5, one after another,
/// each response checked exactly; returns the average round trip (from `send_request` to the
/// response, so each includes opening and negotiating its stream).
async fn run_requests(swarm: &mut Swarm<Behaviour>, peer: PeerId, codec: Codec) -> Result<Duration, Fail> {
    let mut total = Duration::ZERO;
    for i in 1..=REQUESTS {
        let request = Request {
            message: format!("hello-{i}"),
            n: i,
        };
        let start = Instant::now();
        let id = match codec {
            Codec::Json => swarm.behaviour_mut().reqresp_json.send_request(&peer, request),
            Codec::Cbor => swarm.behaviour_mut().reqresp_cbor.send_request(&peer, request),
        };
        // Each wait is bounded by the behaviour's request timeout (an OutboundFailure::Timeout).
        let response = loop {
            let event = swarm.select_next_some().await;
            log_event(&event);
            let event = match (codec, event) {
                (Codec::Json, SwarmEvent::Behaviour(BehaviourEvent::ReqrespJson(e)))
                | (Codec::Cbor, SwarmEvent::Behaviour(BehaviourEvent::ReqrespCbor(e))) => e,
                (_, SwarmEvent::ConnectionClosed { peer_id, cause, num_established: 0, .. }) if peer_id == peer => {
                    return Err(other(format!("request {i}: connection closed: {cause:?}")));
                }
                _ => continue,
            };
            match event {
                request_response::Event::Message {
                    message: request_response::Message::Response { request_id, response },
                    ..
                } if request_id == id => break response,
                request_response::Event::OutboundFailure { request_id, error, .. } if request_id == id => {
                    return Err(other(format!("request {i}: {error}")));
                }
                _ => {}
            }
        };
        total += start.elapsed();
        let expected = Response {
            message: format!("HELLO-{i}"),
            n: i + 1,
        };
        if response != expected {
            return Err(other(format!("request {i}: response {response:?}, expected {expected:?}")));
        }
    }
    Ok(total / REQUESTS as u32)
}

/// Poll the swarm while `work` runs on the connection; fail if the connection goes first.
async fn drive<T>(
    swarm: &mut Swarm<Behaviour>,
    peer: PeerId,
    mut work: tokio::task::JoinHandle<Result<T, String>>,
) -> Result<T, Fail> {
    loop {
        tokio::select! {
            biased;
            done = &mut work => {
                return done.map_err(|e| other(format!("task: {e}")))?.map_err(Fail::Other);
            }
            event = swarm.select_next_some() => {
                log_event(&event);
                if let SwarmEvent::ConnectionClosed { peer_id, cause, num_established: 0, .. } = event {
                    if peer_id == peer {
                        // Give the work a moment to report its own (more precise) error.
                        if let Ok(done) = tokio::time::timeout(Duration::from_millis(500), &mut work).await {
                            return done.map_err(|e| other(format!("task: {e}")))?.map_err(Fail::Other);
                        }
                        work.abort();
                        return Err(other(format!("connection closed: {cause:?}")));
                    }
                }
            }
        }
    }
}

fn timeout_of(secs: &u64) -> Duration {
    Duration::from_secs(*secs + 60)
}

/// `--connections N`: N connections one after another, each dialed, secured, muxed, used for
/// one 1-byte echo stream and closed; reports connections per second.
async fn connections(mut swarm: Swarm<Behaviour>, addr: Multiaddr, peer: PeerId, count: usize) -> Result<String, Fail> {
    let control = swarm.behaviour().stream.new_control();
    let start = Instant::now();
    for i in 0..count {
        let opts: DialOpts = addr.clone().into();
        let id = opts.connection_id();
        swarm
            .dial(opts)
            .map_err(|e| other(format!("dial {i} {addr}: {e}")))?;
        loop {
            let event = swarm.select_next_some().await;
            log_event(&event);
            match event {
                SwarmEvent::ConnectionEstablished { connection_id, .. } if connection_id == id => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => {
                    return Err(other(format!("dial {i} {addr}: {error}")));
                }
                _ => {}
            }
        }
        let mut control = control.clone();
        let work = tokio::spawn(async move {
            let stream = control
                .open_stream(peer, ECHO)
                .await
                .map_err(|e| format!("connection {i}: echo stream: {e}"))?;
            echo_one(stream, i, 1)
                .await
                .map_err(|e| format!("connection {i}: echo: {e}"))
        });
        drive(&mut swarm, peer, work).await?;
        swarm.close_connection(id);
        loop {
            let event = swarm.select_next_some().await;
            log_event(&event);
            if let SwarmEvent::ConnectionClosed { connection_id, .. } = event {
                if connection_id == id {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64().max(1e-9);
    Ok(format!("CONN OK {:.1}", count as f64 / secs))
}

/// `--hold N`: open N connections (one dial at a time by default), print `HOLD OK <N>`, then keep them
/// open (polling the swarm) until killed or the timeout.
async fn hold(mut swarm: Swarm<Behaviour>, addr: Multiaddr, count: usize) -> Result<String, Fail> {
    // One dial at a time by default, as our `peer` does (`PEER_HOLD_PARALLEL=K`: K at once).
    let at_once = std::env::var("PEER_HOLD_PARALLEL")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let (mut dialed, mut established) = (0usize, 0usize);
    while established < count {
        while dialed < count && dialed - established < at_once {
            swarm
                .dial(addr.clone())
                .map_err(|e| other(format!("dial {dialed} {addr}: {e}")))?;
            dialed += 1;
        }
        let event = swarm.select_next_some().await;
        log_event(&event);
        match event {
            SwarmEvent::ConnectionEstablished { .. } => established += 1,
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                return Err(other(format!("dial {addr}: {error}")));
            }
            SwarmEvent::ConnectionClosed { cause, .. } => {
                return Err(other(format!("held connection closed: {cause:?}")));
            }
            _ => {}
        }
    }
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "HOLD OK {established}");
        let _ = out.flush();
    }
    HELD.store(true, Ordering::SeqCst);
    loop {
        let event = swarm.select_next_some().await;
        log_event(&event);
    }
}

async fn run(args: Args) -> Result<String, Fail> {
    let key = make_key(args.key, args.seed)?;
    match args.mode {
        Mode::Listen(addrs) => {
            let swarm = build_swarm(
                args.security,
                args.muxer,
                key,
                ping::Config::new(),
                Duration::from_secs(60),
                args.serve_requests,
                Extras::default(),
            )
            .await?;
            listen(swarm, addrs).await
        }
        Mode::V2(options) => {
            let swarm = build_swarm(
                args.security,
                args.muxer,
                key,
                ping::Config::new(),
                timeout_of(&args.timeout),
                args.serve_requests,
                options.extras(),
            )
            .await?;
            v2::run(swarm, options).await
        }
        Mode::Dial(addr, peer) => {
            let swarm = match args.action {
                Action::Hold(n) => {
                    // Idle connections: default ping interval, kept open until the timeout.
                    let swarm = build_swarm(args.security, args.muxer, key, ping::Config::new(), timeout_of(&args.timeout), false, Extras::default()).await?;
                    return hold(swarm, addr, n).await;
                }
                Action::Connections(n) => {
                    let swarm = build_swarm(args.security, args.muxer, key, ping::Config::new(), Duration::from_secs(60), false, Extras::default()).await?;
                    return connections(swarm, addr, peer, n).await;
                }
                _ => {
                    let ping_config = ping::Config::new().with_interval(Duration::from_millis(100));
                    build_swarm(args.security, args.muxer, key, ping_config, Duration::from_secs(60), false, Extras::default()).await?
                }
            };
            dial(swarm, addr, peer, args.action).await
        }
    }
}

fn main() {
    // Unsupported options (secio, unknown names) fail here, before any networking.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = parse_args(argv).unwrap_or_else(|f| f.exit());
    let timeout = Duration::from_secs(args.timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| other(format!("runtime: {e}")).exit());
    match runtime.block_on(async { tokio::time::timeout(timeout, run(args)).await }) {
        Err(_) if HELD.load(Ordering::SeqCst) || SERVING.load(Ordering::SeqCst) => exit(0),
        Err(_) => finish("FAIL timeout", 1),
        Ok(Err(fail)) => fail.exit(),
        Ok(Ok(line)) => finish(&line, 0),
    }
}
