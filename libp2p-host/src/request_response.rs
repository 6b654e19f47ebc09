//! Request-response for applications: one request per stream, as rust-libp2p's
//! `request_response` codecs put it on the wire. The requester writes the request and closes
//! its write side, then reads the response to the end; the responder reads the request to the
//! end, writes the response and closes. Each side reads under a size cap and a deadline.
//!
//! Bodies are bytes; with the `json` or `cbor` feature, serde values (the same bytes as
//! rust-libp2p's `request_response::json` and `::cbor`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p_core::duration::secs;
use libp2p_core::{Classify, Fault, Incoming, NewStreamError, PeerId, Stream};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Limits of request-response, the same for every protocol of a host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RequestResponseConfig {
    /// Largest request read, in bytes; a larger one fails the exchange. Default 1 MiB, as
    /// rust-libp2p's json and cbor codecs.
    pub max_request_size: usize,
    /// Largest response read, in bytes. Default 10 MiB, as rust-libp2p's codecs.
    pub max_response_size: usize,
    /// Bound on one whole exchange (open, write, read; on the responder's side, reading the
    /// request and, separately, writing the response). Default 10 s, rust-libp2p's default.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Inbound requests of one protocol being read or awaiting their response at once;
    /// further streams are reset. Default 100, rust-libp2p's default.
    pub max_concurrent_inbound: usize,
}

impl Default for RequestResponseConfig {
    fn default() -> Self {
        RequestResponseConfig {
            max_request_size: 1024 * 1024,
            max_response_size: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            max_concurrent_inbound: 100,
        }
    }
}

/// Why an exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No stream could be opened (no connection, protocol not supported, ...).
    #[error(transparent)]
    Stream(#[from] NewStreamError),
    /// The stream failed.
    #[error("request stream with {peer} failed: {source}")]
    Io {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<io::Error>,
    },
    /// The remote sent more than the cap.
    #[error("{peer} sent more than {max} bytes")]
    TooLarge {
        /// The peer.
        peer: PeerId,
        /// The cap.
        max: usize,
    },
    /// The exchange did not finish in time.
    #[error("request exchange with {peer} timed out after {after:?}")]
    Timeout {
        /// The peer.
        peer: PeerId,
        /// The bound.
        after: Duration,
    },
    /// A body could not be encoded or decoded.
    #[error("request body with {peer}: {source}")]
    Codec {
        /// The peer.
        peer: PeerId,
        /// What went wrong.
        #[source]
        source: Arc<CodecError>,
    },
}

impl Classify for RequestError {
    fn fault(&self) -> Fault {
        match self {
            RequestError::Stream(e) => e.fault(),
            RequestError::Io { source, .. } => source.fault(),
            RequestError::TooLarge { .. } => Fault::Remote,
            RequestError::Timeout { .. } => Fault::Timeout,
            RequestError::Codec { source, .. } => source.fault(),
        }
    }
}

/// A body that is not what the serde type expects (or ours that cannot be encoded).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// JSON.
    #[cfg(feature = "json")]
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    /// CBOR, decoding.
    #[cfg(feature = "cbor")]
    #[error("cbor: {0}")]
    CborDecode(#[from] ciborium::de::Error<io::Error>),
    /// CBOR, encoding.
    #[cfg(feature = "cbor")]
    #[error("cbor: {0}")]
    CborEncode(#[from] ciborium::ser::Error<io::Error>),
}

impl Classify for CodecError {
    fn fault(&self) -> Fault {
        // Ours fail only on values serde cannot represent; a body we cannot read is theirs.
        Fault::Remote
    }
}

/// Reads `stream` to its end, at most `max` bytes (never reserving more than has arrived).
async fn read_capped(stream: &mut Stream, max: usize) -> Result<Vec<u8>, RequestError> {
    let peer = stream.remote_peer();
    let mut body = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| RequestError::Io {
                peer,
                source: Arc::new(e),
            })?;
        if n == 0 {
            return Ok(body);
        }
        if body.len() + n > max {
            return Err(RequestError::TooLarge { peer, max });
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

async fn write_and_close(stream: &mut Stream, data: &[u8]) -> Result<(), RequestError> {
    let peer = stream.remote_peer();
    let io = |e| RequestError::Io {
        peer,
        source: Arc::new(e),
    };
    stream.write_all(data).await.map_err(io)?;
    stream.shutdown().await.map_err(io)
}

async fn bounded<T>(
    peer: PeerId,
    after: Duration,
    fut: impl std::future::Future<Output = Result<T, RequestError>>,
) -> Result<T, RequestError> {
    tokio::time::timeout(after, fut)
        .await
        .unwrap_or(Err(RequestError::Timeout { peer, after }))
}

impl crate::Host {
    /// Sends `request` to `peer` on `protocol` (a new stream, connecting first if needed) and
    /// returns the response, under the request timeout and the response size cap.
    pub async fn request(
        &self,
        peer: PeerId,
        protocol: &str,
        request: &[u8],
    ) -> Result<Vec<u8>, RequestError> {
        let config = &self.config().request_response;
        bounded(peer, config.request_timeout, async {
            let mut stream = self.new_stream(peer, &[protocol]).await?;
            write_and_close(&mut stream, request).await?;
            read_capped(&mut stream, config.max_response_size).await
        })
        .await
    }

    /// Serves requests of `protocol`: a `futures::Stream` of [`InboundRequest`]s, each read
    /// whole under the size cap and deadline, at most `max_concurrent_inbound` at once (a
    /// stream beyond it is reset). Dropping it stops serving the protocol.
    pub fn serve_requests(&self, protocol: &str) -> Result<Requests, crate::AcceptError> {
        let incoming = self.accept(protocol)?;
        let config = self.config().request_response.clone();
        let (sender, receiver) = mpsc::channel(config.max_concurrent_inbound.max(1));
        tokio::spawn(read_requests(incoming, sender, config));
        Ok(Requests { receiver })
    }

    /// [`Host::request`](crate::Host::request) with a JSON body and response (rust-libp2p's
    /// `request_response::json`).
    #[cfg(feature = "json")]
    pub async fn request_json<Q: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        peer: PeerId,
        protocol: &str,
        request: &Q,
    ) -> Result<R, RequestError> {
        let codec = |e: serde_json::Error| RequestError::Codec {
            peer,
            source: Arc::new(e.into()),
        };
        let body = serde_json::to_vec(request).map_err(codec)?;
        let response = self.request(peer, protocol, &body).await?;
        serde_json::from_slice(&response).map_err(codec)
    }

    /// [`Host::request`](crate::Host::request) with a CBOR body and response (rust-libp2p's
    /// `request_response::cbor`).
    #[cfg(feature = "cbor")]
    pub async fn request_cbor<Q: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        peer: PeerId,
        protocol: &str,
        request: &Q,
    ) -> Result<R, RequestError> {
        let body = to_cbor(peer, request)?;
        let response = self.request(peer, protocol, &body).await?;
        from_cbor(peer, &response)
    }
}

#[cfg(feature = "cbor")]
fn to_cbor<T: Serialize>(peer: PeerId, value: &T) -> Result<Vec<u8>, RequestError> {
    let mut body = Vec::new();
    ciborium::into_writer(value, &mut body).map_err(|e| RequestError::Codec {
        peer,
        source: Arc::new(e.into()),
    })?;
    Ok(body)
}

#[cfg(feature = "cbor")]
fn from_cbor<T: serde::de::DeserializeOwned>(peer: PeerId, body: &[u8]) -> Result<T, RequestError> {
    ciborium::from_reader(body).map_err(|e| RequestError::Codec {
        peer,
        source: Arc::new(e.into()),
    })
}

async fn read_requests(
    mut incoming: Incoming,
    sender: mpsc::Sender<InboundRequest>,
    config: RequestResponseConfig,
) {
    let permits = Arc::new(Semaphore::new(config.max_concurrent_inbound.max(1)));
    loop {
        let mut stream = tokio::select! {
            stream = incoming.next() => match stream {
                Some(stream) => stream,
                None => return,
            },
            _ = sender.closed() => return,
        };
        let peer = stream.remote_peer();
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!(%peer, protocol = incoming.protocol(), "too many inbound requests; reset");
            continue;
        };
        let (sender, config) = (sender.clone(), config.clone());
        tokio::spawn(async move {
            let read = bounded(
                peer,
                config.request_timeout,
                read_capped(&mut stream, config.max_request_size),
            )
            .await;
            match read {
                Ok(data) => {
                    let request = InboundRequest {
                        data,
                        responder: Responder {
                            stream,
                            timeout: config.request_timeout,
                            _permit: permit,
                        },
                    };
                    let _ = sender.send(request).await;
                }
                Err(e) => tracing::debug!(%peer, error = %e, "inbound request failed"),
            }
        });
    }
}

/// Inbound requests of one protocol (from [`Host::serve_requests`](crate::Host::serve_requests)).
#[derive(Debug)]
pub struct Requests {
    receiver: mpsc::Receiver<InboundRequest>,
}

impl futures::Stream for Requests {
    type Item = InboundRequest;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<InboundRequest>> {
        self.receiver.poll_recv(cx)
    }
}

/// One request, read whole; answer it through [`InboundRequest::respond`] (dropping it
/// resets the stream: the requester sees an error).
#[derive(Debug)]
pub struct InboundRequest {
    data: Vec<u8>,
    responder: Responder,
}

impl InboundRequest {
    /// Who asked.
    pub fn peer(&self) -> PeerId {
        self.responder.stream.remote_peer()
    }

    /// The protocol it came on.
    pub fn protocol(&self) -> &str {
        self.responder.stream.protocol()
    }

    /// The request's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The request's bytes and the means to answer.
    pub fn into_parts(self) -> (Vec<u8>, Responder) {
        (self.data, self.responder)
    }

    /// Sends the response and closes the stream.
    pub async fn respond(self, response: &[u8]) -> Result<(), RequestError> {
        self.responder.send(response).await
    }

    /// The request as JSON.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, RequestError> {
        serde_json::from_slice(&self.data).map_err(|e| RequestError::Codec {
            peer: self.peer(),
            source: Arc::new(e.into()),
        })
    }

    /// Sends `response` as JSON.
    #[cfg(feature = "json")]
    pub async fn respond_json<T: Serialize>(self, response: &T) -> Result<(), RequestError> {
        let body = serde_json::to_vec(response).map_err(|e| RequestError::Codec {
            peer: self.peer(),
            source: Arc::new(e.into()),
        })?;
        self.respond(&body).await
    }

    /// The request as CBOR.
    #[cfg(feature = "cbor")]
    pub fn cbor<T: serde::de::DeserializeOwned>(&self) -> Result<T, RequestError> {
        from_cbor(self.peer(), &self.data)
    }

    /// Sends `response` as CBOR.
    #[cfg(feature = "cbor")]
    pub async fn respond_cbor<T: Serialize>(self, response: &T) -> Result<(), RequestError> {
        let body = to_cbor(self.peer(), response)?;
        self.respond(&body).await
    }
}

/// The answering half of an [`InboundRequest`].
#[derive(Debug)]
pub struct Responder {
    stream: Stream,
    timeout: Duration,
    _permit: OwnedSemaphorePermit,
}

impl Responder {
    /// Sends the response and closes the stream, within the request timeout.
    pub async fn send(mut self, response: &[u8]) -> Result<(), RequestError> {
        let peer = self.stream.remote_peer();
        bounded(
            peer,
            self.timeout,
            write_and_close(&mut self.stream, response),
        )
        .await
    }
}
