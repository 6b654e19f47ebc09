//! `/noise`: the libp2p Noise secure channel (`Noise_XX_25519_ChaChaPoly_SHA256`).
//!
//! The dialer is the Noise initiator. The three XX messages carry, besides the Noise tokens,
//! a protobuf `NoiseHandshakePayload` in messages 2 (responder) and 3 (initiator): the
//! libp2p identity public key and its signature over `"noise-libp2p-static-key:" ‖ the
//! X25519 static public key`, which binds the Noise static key to the libp2p identity. Every
//! message, handshake and transport alike, goes on the wire as a 2-byte big-endian length
//! followed by that many bytes (at most 65535); a transport message is the ChaCha20-Poly1305
//! ciphertext of at most 65519 bytes of plaintext plus its 16-byte tag.
//!
//! Each [`Noise`] value generates a fresh X25519 static keypair when it is built; clones
//! share it.
//!
//! ```no_run
//! use libp2p_core::{Keypair, Transport, TransportExt};
//! use libp2p_noise::Noise;
//! # fn needs_a_transport<T: Transport>(t: T) where T::Output: libp2p_core::Socket {
//! let secured = t.upgrade().authenticate(Noise::new(Keypair::generate_ed25519()));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod handshake;
mod proto;
mod stream;

use std::future::Future;
use std::io;
use std::sync::Arc;

use libp2p_core::framing::FrameError;
use libp2p_core::{Classify, Fault, Keypair, PeerId, Role, SecurityUpgrade, Socket, UpgradeInfo};

pub use stream::NoiseStream;

/// The protocol name.
pub const PROTOCOL: &str = "/noise";

/// The Noise protocol instance libp2p uses.
pub(crate) const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// A snow builder for [`NOISE_PARAMS`]: ring for ChaChaPoly and SHA-256, snow's own
/// resolver (curve25519-dalek, getrandom) for X25519 and the RNG, which ring's does not give.
pub(crate) fn builder<'a>() -> snow::Builder<'a> {
    use snow::resolvers::{DefaultResolver, FallbackResolver, RingResolver};
    let params = NOISE_PARAMS
        .parse()
        .expect("NOISE_PARAMS is a valid Noise protocol name");
    snow::Builder::with_resolver(
        params,
        Box::new(FallbackResolver::new(
            Box::new(RingResolver),
            Box::new(DefaultResolver),
        )),
    )
}

/// The prefix of the bytes the identity key signs: this, then the Noise static public key.
pub(crate) const STATIC_KEY_DOMAIN: &[u8] = b"noise-libp2p-static-key:";

/// Largest Noise message (handshake or transport), as bounded by the 2-byte length prefix.
pub const MAX_MESSAGE_LEN: usize = 65535;

/// Length of the AEAD tag that ends every encrypted message.
pub const TAG_LEN: usize = 16;

/// Largest plaintext carried by one transport message; longer writes are split.
pub const MAX_FRAME_PLAINTEXT: usize = MAX_MESSAGE_LEN - TAG_LEN;

/// What can go wrong in the Noise handshake or channel.
///
/// Errors of the channel after the handshake reach the reader or writer as an
/// [`io::Error`]; a message that fails to decrypt is one of kind
/// [`io::ErrorKind::InvalidData`] that carries a `NoiseError` (see [`io::Error::get_ref`]).
/// A direction of the channel that failed returns its first error again on every later call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NoiseError {
    /// Reading or writing the socket failed (including the remote closing it early).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The Noise protocol refused a message: snow's own error in the handshake, and in the
    /// channel [`snow::Error::Decrypt`] for a message whose tag does not match and
    /// [`snow::Error::Input`] for one shorter than its tag.
    #[error("noise protocol error: {0}")]
    Noise(#[from] snow::Error),
    /// A handshake message could not be framed (the remote's was cut short or too long).
    #[error("handshake framing: {0}")]
    Frame(#[source] FrameError),
    /// The remote's handshake payload is not a valid `NoiseHandshakePayload`, or lacks
    /// its identity key or signature.
    #[error("invalid handshake payload")]
    InvalidPayload,
    /// The remote's identity public key (or its Noise static key) could not be decoded.
    #[error("invalid remote public key")]
    InvalidKey,
    /// The remote's identity signature over its Noise static key is not valid.
    #[error("invalid signature over the remote's noise static key")]
    BadSignature,
    /// The three XX messages went through but snow does not call the handshake finished.
    #[error("noise handshake did not finish")]
    Unfinished,
    /// One direction sent 2^64-1 messages: the Noise spec reserves the last nonce.
    #[error("nonce exhausted: 2^64-1 messages in one direction")]
    NonceExhausted,
    /// Sealing a message failed (ring refused it).
    #[error("encryption failed")]
    Encrypt,
    /// Our static key could not be made or signed when this [`Noise`] was built.
    #[error("cannot set up the local static key: {0}")]
    KeySetup(#[source] Arc<KeySetupError>),
}

/// Why the local static key could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySetupError {
    /// snow could not generate the X25519 keypair.
    #[error("generating the static keypair: {0}")]
    Generate(#[source] snow::Error),
    /// The identity key could not sign the static key.
    #[error("signing the static key: {0}")]
    Sign(#[from] libp2p_core::identity::SigningError),
}

impl From<FrameError> for NoiseError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => NoiseError::Io(e),
            other => NoiseError::Frame(other),
        }
    }
}

impl Classify for NoiseError {
    fn fault(&self) -> Fault {
        match self {
            NoiseError::Io(e) => e.fault(),
            // The remote's bytes: a bad tag, a short or malformed message, a bad key.
            NoiseError::Noise(snow::Error::Decrypt | snow::Error::Input | snow::Error::Dh) => {
                Fault::Remote
            }
            // Our parameters, our state, our randomness.
            NoiseError::Noise(_) => Fault::Local,
            NoiseError::Frame(e) => e.fault(),
            NoiseError::InvalidPayload | NoiseError::InvalidKey | NoiseError::BadSignature => {
                Fault::Remote
            }
            NoiseError::Unfinished
            | NoiseError::NonceExhausted
            | NoiseError::Encrypt
            | NoiseError::KeySetup(_) => Fault::Local,
        }
    }
}

impl NoiseError {
    /// A copy, for the errors that are plain values (a failed channel returns its first
    /// error again).
    pub(crate) fn duplicate(&self) -> Option<NoiseError> {
        Some(match self {
            NoiseError::Noise(snow::Error::Decrypt) => NoiseError::Noise(snow::Error::Decrypt),
            NoiseError::Noise(snow::Error::Input) => NoiseError::Noise(snow::Error::Input),
            NoiseError::InvalidPayload => NoiseError::InvalidPayload,
            NoiseError::InvalidKey => NoiseError::InvalidKey,
            NoiseError::BadSignature => NoiseError::BadSignature,
            NoiseError::Unfinished => NoiseError::Unfinished,
            NoiseError::NonceExhausted => NoiseError::NonceExhausted,
            NoiseError::Encrypt => NoiseError::Encrypt,
            NoiseError::KeySetup(e) => NoiseError::KeySetup(e.clone()),
            _ => return None,
        })
    }
}

/// What one [`Noise`] value brings to every handshake: its static DH keys and the encoded
/// handshake payload that binds them to the identity.
pub(crate) struct LocalKeys {
    /// The X25519 static private key.
    pub(crate) static_private: Vec<u8>,
    /// The X25519 static public key.
    pub(crate) static_public: Vec<u8>,
    /// The protobuf-encoded `NoiseHandshakePayload` we send.
    pub(crate) payload: Vec<u8>,
}

impl LocalKeys {
    fn generate(identity: &Keypair) -> Result<Self, KeySetupError> {
        let dh = builder()
            .generate_keypair()
            .map_err(KeySetupError::Generate)?;
        let mut signed = Vec::with_capacity(STATIC_KEY_DOMAIN.len() + dh.public.len());
        signed.extend_from_slice(STATIC_KEY_DOMAIN);
        signed.extend_from_slice(&dh.public);
        let signature = identity.sign(&signed)?;
        let payload = proto::encode_payload(identity.public().encode_protobuf(), signature);
        Ok(LocalKeys {
            static_private: dh.private,
            static_public: dh.public,
            payload,
        })
    }
}

/// The `/noise` security upgrade.
#[derive(Clone)]
pub struct Noise {
    keypair: Keypair,
    /// The static keys, or why they could not be made (reported by every handshake).
    local: Result<Arc<LocalKeys>, Arc<KeySetupError>>,
}

impl std::fmt::Debug for Noise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Noise")
            .field("peer", &self.keypair.public().to_peer_id())
            .finish_non_exhaustive()
    }
}

impl Noise {
    /// Noise with the identity `keypair`. Generates a fresh X25519 static keypair and signs it
    /// with `keypair`. Noise has no settings of its own: the handshake's deadline is the upgrade
    /// pipeline's, and the message sizes are the protocol's.
    pub fn new(keypair: Keypair) -> Self {
        let local = LocalKeys::generate(&keypair)
            .map(Arc::new)
            .map_err(Arc::new);
        if let Err(e) = &local {
            tracing::warn!("noise: cannot set up the static key: {e}");
        }
        Noise { keypair, local }
    }

    /// The X25519 static public key this upgrade presents (32 bytes), if it could be made.
    pub fn static_public_key(&self) -> Option<&[u8]> {
        self.local.as_ref().ok().map(|l| l.static_public.as_slice())
    }
}

impl UpgradeInfo for Noise {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> SecurityUpgrade<C> for Noise {
    type Output = NoiseStream<C>;
    type Error = NoiseError;

    fn secure(
        &self,
        socket: C,
        role: Role,
        _expected: Option<PeerId>,
        _protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, NoiseStream<C>), NoiseError>> + Send + 'static {
        let local = self.local.clone();
        async move {
            let local = local.map_err(NoiseError::KeySetup)?;
            handshake::handshake(socket, role, local).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_class() {
        let remote = [
            NoiseError::Noise(snow::Error::Decrypt),
            NoiseError::Noise(snow::Error::Input),
            NoiseError::InvalidPayload,
            NoiseError::InvalidKey,
            NoiseError::BadSignature,
            NoiseError::from(FrameError::TooLong { len: 9, max: 1 }),
        ];
        for e in remote {
            assert_eq!(e.fault(), Fault::Remote, "{e}");
        }
        let local = [
            NoiseError::Noise(snow::Error::Rng),
            NoiseError::Unfinished,
            NoiseError::NonceExhausted,
            NoiseError::Encrypt,
        ];
        for e in local {
            assert_eq!(e.fault(), Fault::Local, "{e}");
        }
        let cut = NoiseError::from(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
        assert!(matches!(cut, NoiseError::Io(_)));
        assert_eq!(cut.fault(), Fault::Network);
    }

    #[test]
    fn value_errors_are_repeated_whole() {
        let first = io::Error::new(
            io::ErrorKind::InvalidData,
            NoiseError::Noise(snow::Error::Decrypt),
        );
        let again = libp2p_core::repeat_io_error(&first, NoiseError::duplicate);
        assert_eq!(again.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(
            again.get_ref().and_then(|e| e.downcast_ref::<NoiseError>()),
            Some(NoiseError::Noise(snow::Error::Decrypt))
        ));
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        let again = libp2p_core::repeat_io_error(&reset, NoiseError::duplicate);
        assert_eq!(again.kind(), io::ErrorKind::ConnectionReset);
    }
}
