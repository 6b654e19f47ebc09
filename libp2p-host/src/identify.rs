//! `/ipfs/id/1.0.0` (and `/ipfs/id/push/1.0.0`): a peer tells the other who it is, where it
//! listens, which protocols it speaks and at which address it sees the other.
//!
//! The responder writes one length-prefixed `Identify` protobuf and closes the stream; the
//! requester reads until the end of the stream (go-libp2p may split a large record into
//! several messages, which are merged).

use std::io;

use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p_core::framing::{self, Codec, FrameError};
use libp2p_core::{Multiaddr, PublicKey};
use prost::Message;

use crate::config::{MAX_IDENTIFY_MESSAGES, MAX_IDENTIFY_MESSAGE_LEN};

/// The protocol name.
pub const PROTOCOL: &str = "/ipfs/id/1.0.0";
/// The push variant: the sender pushes its current info unasked.
pub const PUSH_PROTOCOL: &str = "/ipfs/id/push/1.0.0";

/// The wire message (field numbers of the libp2p identify spec).
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdentifyMessage {
    /// The sender's libp2p public key, protobuf-encoded.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub public_key: Option<Vec<u8>>,
    /// The sender's listen addresses, binary multiaddrs.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub listen_addrs: Vec<Vec<u8>>,
    /// Protocols the sender handles.
    #[prost(string, repeated, tag = "3")]
    pub protocols: Vec<String>,
    /// The address the sender sees the receiver at.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub observed_addr: Option<Vec<u8>>,
    /// e.g. `/ipfs/0.1.0`.
    #[prost(string, optional, tag = "5")]
    pub protocol_version: Option<String>,
    /// e.g. `rust-libp2p-modular/0.1.0`.
    #[prost(string, optional, tag = "6")]
    pub agent_version: Option<String>,
    /// A signed peer record (kept as bytes; not verified here).
    #[prost(bytes = "vec", optional, tag = "8")]
    pub signed_peer_record: Option<Vec<u8>>,
}

/// What a peer says about itself (the type lives in core, where services see it).
pub use libp2p_core::IdentifyInfo as Info;

/// Errors of identify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifyError {
    /// The stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// A message exceeded [`MAX_IDENTIFY_MESSAGE_LEN`] or there were more than [`MAX_IDENTIFY_MESSAGES`].
    #[error("identify message too large ({len} bytes, limit {max})")]
    TooLarge {
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The message could not be decoded or lacks the public key.
    #[error("malformed identify message: {0}")]
    Malformed(String),
}

impl libp2p_core::Classify for IdentifyError {
    fn fault(&self) -> libp2p_core::Fault {
        match self {
            IdentifyError::Io(e) => libp2p_core::Fault::of_io(e),
            _ => libp2p_core::Fault::Remote,
        }
    }
}

fn to_message(info: &Info) -> IdentifyMessage {
    IdentifyMessage {
        public_key: Some(info.public_key.encode_protobuf()),
        listen_addrs: info.listen_addrs.iter().map(|a| a.to_vec()).collect(),
        protocols: info.protocols.clone(),
        observed_addr: info.observed_addr.as_ref().map(|a| a.to_vec()),
        protocol_version: Some(info.protocol_version.clone()),
        agent_version: Some(info.agent_version.clone()),
        signed_peer_record: None,
    }
}

impl IdentifyMessage {
    fn into_info(self) -> Result<Info, IdentifyError> {
        let message = self;
        let key = message
            .public_key
            .ok_or_else(|| IdentifyError::Malformed("no public key".into()))?;
        let public_key = PublicKey::try_decode_protobuf(&key)
            .map_err(|e| IdentifyError::Malformed(format!("public key: {e}")))?;
        // Unparsable addresses are skipped, as other implementations do: one odd address
        // from a newer peer must not make the whole answer useless.
        let listen_addrs = message
            .listen_addrs
            .into_iter()
            .filter_map(|bytes| Multiaddr::try_from(bytes).ok())
            .collect();
        Ok(Info {
            public_key,
            protocol_version: message.protocol_version.unwrap_or_default(),
            agent_version: message.agent_version.unwrap_or_default(),
            listen_addrs,
            protocols: message.protocols,
            observed_addr: message
                .observed_addr
                .and_then(|b| Multiaddr::try_from(b).ok()),
        })
    }
}

/// Sends `info` on `stream` and closes it (the responder's side, and the push sender's).
pub async fn send<S: AsyncWrite + Unpin>(mut stream: S, info: &Info) -> io::Result<()> {
    let mut frame = Vec::new();
    Codec::uvarint(usize::MAX)
        .encode(&to_message(info).encode_to_vec(), &mut frame)
        .expect("no limit on our own message");
    stream.write_all(&frame).await?;
    stream.close().await
}

impl From<FrameError> for IdentifyError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => IdentifyError::Io(e),
            FrameError::TooLong { len, max } => IdentifyError::TooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                max,
            },
            other => IdentifyError::Malformed(other.to_string()),
        }
    }
}

/// Reads the remote's identify answer (the requester's side, and the push receiver's).
pub async fn receive<S: AsyncRead + Unpin>(mut stream: S) -> Result<Info, IdentifyError> {
    let mut merged = IdentifyMessage::default();
    let mut count = 0;
    while let Some(body) = framing::try_read_frame(&mut stream, MAX_IDENTIFY_MESSAGE_LEN).await? {
        count += 1;
        if count > MAX_IDENTIFY_MESSAGES {
            return Err(IdentifyError::TooLarge {
                len: count,
                max: MAX_IDENTIFY_MESSAGES,
            });
        }
        merged
            .merge(body.as_slice())
            .map_err(|e| IdentifyError::Malformed(e.to_string()))?;
    }
    if count == 0 {
        return Err(IdentifyError::Malformed("empty answer".into()));
    }
    merged.into_info()
}

/// The identify service: answers `/ipfs/id/1.0.0`, identifies every new connection's peer,
/// takes pushes on `/ipfs/id/push/1.0.0`, and pushes our new protocols and addresses to
/// connected peers that accept pushes.
pub(crate) struct IdentifyService {
    pub(crate) protocol_version: String,
    pub(crate) agent_version: String,
    /// Bound on each exchange.
    pub(crate) timeout: std::time::Duration,
}

impl IdentifyService {
    fn local_info(&self, host: &dyn libp2p_core::HostContext, observed: Option<Multiaddr>) -> Info {
        Info {
            public_key: host.keypair().public(),
            protocol_version: self.protocol_version.clone(),
            agent_version: self.agent_version.clone(),
            listen_addrs: host.listen_addrs(),
            protocols: host.protocols(),
            observed_addr: observed,
        }
    }
}

/// Runs `fut` for at most `limit`, as an identify error.
async fn bounded<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = Result<T, IdentifyError>>,
) -> Result<T, IdentifyError> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(IdentifyError::Io(io::ErrorKind::TimedOut.into())),
    }
}

impl libp2p_core::Service for IdentifyService {
    fn name(&self) -> &'static str {
        "identify"
    }

    fn protocols(&self) -> Vec<String> {
        vec![PROTOCOL.to_string(), PUSH_PROTOCOL.to_string()]
    }

    fn run(
        self: Box<Self>,
        ctx: libp2p_core::ServiceContext,
    ) -> futures::future::BoxFuture<'static, ()> {
        use futures::StreamExt;
        use libp2p_core::Event;
        use std::sync::Arc;
        let this = Arc::new(*self);
        let libp2p_core::ServiceContext {
            host,
            mut inbound,
            mut events,
            ..
        } = ctx;
        Box::pin(async move {
            let identify = |peer: libp2p_core::PeerId| {
                let host = host.clone();
                let limit = this.timeout;
                tokio::spawn(async move {
                    let result = bounded(limit, async {
                        let stream = host
                            .new_stream_connected(peer, vec![PROTOCOL.to_string()])
                            .await
                            .map_err(|e| IdentifyError::Io(io::Error::other(e)))?;
                        receive(stream.into_futures()).await
                    })
                    .await;
                    match result {
                        Ok(info) if info.public_key.to_peer_id() == peer => {
                            host.report_identify(peer, info)
                        }
                        Ok(_) => tracing::debug!(%peer, "identify carried another peer's key"),
                        Err(e) => tracing::debug!(%peer, error = %e, "identify failed"),
                    }
                });
            };
            let push_all = || {
                for peer in host.connected_peers() {
                    let accepts_push = host
                        .peerstore()
                        .protocols(&peer)
                        .iter()
                        .any(|p| p == PUSH_PROTOCOL);
                    if !accepts_push {
                        continue;
                    }
                    let host = host.clone();
                    let this = this.clone();
                    tokio::spawn(async move {
                        let result = bounded(this.timeout, async {
                            let stream = host
                                .new_stream_connected(peer, vec![PUSH_PROTOCOL.to_string()])
                                .await
                                .map_err(|e| IdentifyError::Io(io::Error::other(e)))?;
                            let observed = Some(stream.remote_addr().clone());
                            let info = this.local_info(host.as_ref(), observed);
                            Ok(send(stream.into_futures(), &info).await?)
                        })
                        .await;
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "identify push failed");
                        }
                    });
                }
            };
            loop {
                tokio::select! {
                    stream = inbound.next() => {
                        let Some(stream) = stream else { break };
                        let peer = stream.remote_peer();
                        let host = host.clone();
                        let this = this.clone();
                        tokio::spawn(async move {
                            let result = if stream.protocol() == PUSH_PROTOCOL {
                                bounded(this.timeout, receive(stream.into_futures()))
                                    .await
                                    .and_then(|info| {
                                        if info.public_key.to_peer_id() == peer {
                                            host.report_identify(peer, info);
                                            Ok(())
                                        } else {
                                            Err(IdentifyError::Malformed(
                                                "pushed another peer's key".into(),
                                            ))
                                        }
                                    })
                            } else {
                                let observed = Some(stream.remote_addr().clone());
                                let info = this.local_info(host.as_ref(), observed);
                                bounded(this.timeout, async {
                                    Ok(send(stream.into_futures(), &info).await?)
                                })
                                .await
                            };
                            if let Err(e) = result {
                                tracing::debug!(%peer, error = %e, "inbound identify failed");
                            }
                        });
                    }
                    event = events.next() => {
                        match event {
                            None => break,
                            Some(Event::ConnectionEstablished { peer, connections, .. }) => {
                                // A peer's later connections reuse what its first told us.
                                if connections == 1
                                    || host.peerstore().agent_version(&peer).is_none()
                                {
                                    identify(peer);
                                }
                            }
                            Some(Event::ProtocolsChanged { .. })
                            | Some(Event::ListenAddrAdded { .. })
                            | Some(Event::ListenAddrExpired { .. }) => push_all(),
                            Some(Event::Missed { .. }) => {
                                // Connections may have come while we were behind: identify
                                // every connected peer we know nothing of yet.
                                for peer in host.connected_peers() {
                                    if host.peerstore().agent_version(&peer).is_none() {
                                        identify(peer);
                                    }
                                }
                            }
                            Some(_) => {}
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p_core::Keypair;

    fn info() -> Info {
        Info {
            public_key: Keypair::generate_ed25519().public(),
            protocol_version: "/ipfs/0.1.0".into(),
            agent_version: "test/1".into(),
            listen_addrs: vec!["/ip4/127.0.0.1/tcp/4001".parse().unwrap()],
            protocols: vec![PROTOCOL.into(), "/echo/1.0.0".into()],
            observed_addr: Some("/ip4/10.0.0.1/tcp/5555".parse().unwrap()),
        }
    }

    #[test]
    fn round_trip_over_a_buffer() {
        let info = info();
        let mut wire = Vec::new();
        futures::executor::block_on(send(futures::io::Cursor::new(&mut wire), &info)).unwrap();
        let back = futures::executor::block_on(receive(wire.as_slice())).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn split_messages_are_merged() {
        let info = info();
        let mut first = to_message(&info);
        first.protocols.clear();
        let second = IdentifyMessage {
            protocols: info.protocols.clone(),
            ..Default::default()
        };
        let mut wire = Vec::new();
        for m in [first, second] {
            let body = m.encode_to_vec();
            wire.push(body.len() as u8);
            wire.extend_from_slice(&body);
        }
        let back = futures::executor::block_on(receive(wire.as_slice())).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn oversized_and_malformed_answers_are_errors() {
        let huge = [0xff, 0xff, 0x7f];
        assert!(matches!(
            futures::executor::block_on(receive(&huge[..])),
            Err(IdentifyError::TooLarge { .. })
        ));
        let garbage = [3u8, 0xff, 0xff, 0xff];
        assert!(futures::executor::block_on(receive(&garbage[..])).is_err());
        assert!(futures::executor::block_on(receive(&[][..])).is_err());
    }
}
