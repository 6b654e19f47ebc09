//! `/secio/1.0.0`: the SECIO secure channel of go-libp2p, py-libp2p and older rust-libp2p.
//!
//! Both sides send a `Propose` (nonce, identity public key, and their lists of key exchanges,
//! ciphers and hashes), agree on one algorithm of each kind (whose list wins depends on hashes
//! of the keys and nonces), then send an `Exchange`: an ephemeral ECDH public key signed with
//! the identity key over both proposals. The ECDH secret is stretched into a key, IV and MAC
//! key for each direction, and each side proves it holds them by sending back the remote's
//! nonce encrypted. From then on every message is a frame of `4-byte big-endian length ‖
//! AES-CTR ciphertext ‖ HMAC(ciphertext)`.
//!
//! By default we offer `P-256,P-384,P-521`, `AES-256,AES-128` and `SHA256,SHA512` (the lists of
//! go-libp2p), in that order of preference. [`Config::exchanges`], [`Config::ciphers`]
//! and [`Config::hashes`] restrict or reorder them:
//!
//! ```
//! use libp2p_secio::{Cipher, Digest, KeyExchange, Config};
//! let only_p256 = Config {
//!     exchanges: vec![KeyExchange::P256],
//!     ..Config::default()
//! };
//! // The same from comma-separated wire names; an unknown name or an empty list is an error.
//! let from_names = Config::default()
//!     .with_algorithms("P-256", "AES-256,AES-128", "SHA256,SHA512")
//!     .unwrap();
//! assert_eq!(only_p256.exchanges, from_names.exchanges);
//! assert!(Config::default().with_algorithms("P-256", "Blowfish", "SHA256").is_err());
//! ```
//!
//! SECIO is deprecated in favour of Noise and TLS; it is here to talk to peers that speak
//! nothing else. Note a weakness of the protocol itself: the MAC covers only the ciphertext,
//! not a sequence number, so an attacker on the path who drops or replays a whole data frame
//! is not detected by the MAC check (the keystream then no longer lines up and the plaintext
//! comes out garbled). Bit flips in a frame are always detected.
//!
//! ```no_run
//! use libp2p_core::{Keypair, Transport, TransportExt};
//! use libp2p_secio::Secio;
//! # fn needs_a_transport<T: Transport>(t: T) where T::Output: libp2p_core::Socket {
//! let secured = t.upgrade().authenticate(Secio::new(Keypair::generate_ed25519()));
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod algo;
mod handshake;
mod stream;

use std::future::Future;
use std::io;

use libp2p_core::framing::FrameError;
use libp2p_core::{Classify, Fault, Keypair, PeerId, Role, SecurityUpgrade, Socket, UpgradeInfo};

pub use algo::{Cipher, Digest, KeyExchange};
pub use stream::SecioStream;

/// The protocol name.
pub const PROTOCOL: &str = "/secio/1.0.0";

/// Limits of the SECIO handshake and channel.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest frame (ciphertext and MAC) accepted from the remote; a larger announced length
    /// fails with [`SecioError::FrameTooLarge`] before anything is allocated, and the read
    /// buffer grows only as a frame's bytes arrive (by at most 128 KiB past them), so an
    /// announced length costs nothing until it is sent. Default 8 MiB.
    pub max_frame_len: usize,
    /// Largest plaintext sent in one frame; longer writes are split. Default 64 KiB.
    pub max_write_frame: usize,
    /// The key exchanges we offer, most preferred first. Default `P-256,P-384,P-521`.
    ///
    /// Whose order wins is decided per connection by the protocol (hashes of both sides' keys
    /// and nonces); the other side's preferences only break ties of the winner's list. An
    /// empty list makes every handshake fail with [`SecioError::NoCommonAlgorithm`] once the
    /// proposals are exchanged (so the remote fails the same way).
    pub exchanges: Vec<KeyExchange>,
    /// The ciphers we offer, most preferred first. Default `AES-256,AES-128`. An empty list
    /// fails as for [`Self::exchanges`].
    pub ciphers: Vec<Cipher>,
    /// The hashes (of the MACs and the key stretching) we offer, most preferred first. Default
    /// `SHA256,SHA512`. An empty list fails as for [`Self::exchanges`].
    pub hashes: Vec<Digest>,
}

impl Config {
    /// Sets the offered algorithms from comma-separated wire names, e.g.
    /// `("P-256,P-384", "AES-128", "SHA256")`, keeping their order. An unknown name or an empty
    /// list is a [`SecioError::InvalidConfig`].
    pub fn with_algorithms(
        mut self,
        exchanges: &str,
        ciphers: &str,
        hashes: &str,
    ) -> Result<Self, SecioError> {
        self.exchanges = KeyExchange::parse_list(exchanges)?;
        self.ciphers = Cipher::parse_list(ciphers)?;
        self.hashes = Digest::parse_list(hashes)?;
        Ok(self)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_len: 8 * 1024 * 1024,
            max_write_frame: 64 * 1024,
            exchanges: KeyExchange::ALL.to_vec(),
            ciphers: Cipher::ALL.to_vec(),
            hashes: Digest::ALL.to_vec(),
        }
    }
}

/// What can go wrong in the SECIO handshake or channel.
///
/// Errors of the channel after the handshake reach the reader as an [`io::Error`] of kind
/// [`io::ErrorKind::InvalidData`] that carries the `SecioError` (see
/// [`io::Error::get_ref`]); a channel that failed returns its first error again.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecioError {
    /// Reading or writing the socket failed (including the remote closing it).
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The two sides share no algorithm of this kind ("key exchange", "cipher" or "hash"),
    /// including when either side offers none.
    #[error("no {0} in common with the remote")]
    NoCommonAlgorithm(&'static str),
    /// The remote's signature over the proposals and its ephemeral key is not valid.
    #[error("invalid signature on the remote's key exchange")]
    BadSignature,
    /// The remote's identity public key could not be decoded.
    #[error("invalid remote public key")]
    InvalidPublicKey,
    /// The remote's ephemeral ECDH public key is not a point of the agreed curve.
    #[error("invalid remote ephemeral key")]
    InvalidEphemeralKey,
    /// A frame's MAC does not match its contents.
    #[error("frame MAC mismatch")]
    MacMismatch,
    /// The remote did not send back our nonce: it does not hold the same keys.
    #[error("nonce verification failed")]
    NonceMismatch,
    /// The remote announced a frame longer than we accept.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// Announced length.
        len: u64,
        /// Configured maximum.
        max: usize,
    },
    /// The remote sent a frame too short to hold its MAC.
    #[error("frame of {len} bytes is shorter than its {mac}-byte MAC")]
    FrameTooShort {
        /// The frame's length.
        len: usize,
        /// The MAC's length.
        mac: usize,
    },
    /// A handshake message could not be framed (a length prefix we cannot read or write).
    #[error("handshake framing: {0}")]
    Frame(#[source] FrameError),
    /// Both sides have the same key and nonce: we are talking to ourselves.
    #[error("connected to self")]
    ConnectedToSelf,
    /// A handshake message is not a valid protobuf.
    #[error("malformed handshake message: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The system's random number generator failed (nonce or ephemeral key).
    #[error("no randomness available")]
    Randomness,
    /// Our identity key could not sign the key exchange.
    #[error("signing the key exchange failed: {0}")]
    Signing(#[from] libp2p_core::identity::SigningError),
    /// A stretched key did not fit the agreed cipher (a bug of ours, never the remote's).
    #[error("stretched key does not fit the cipher")]
    KeyLength,
    /// An algorithm name we do not support, or an empty algorithm list, given to
    /// [`Config::with_algorithms`] or one of the `parse_list`/`from_str` functions.
    #[error("invalid secio configuration: {0}")]
    InvalidConfig(#[source] ConfigError),
}

/// What is wrong with an algorithm list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The list of this kind ("key exchange", "cipher", "hash") is empty.
    #[error("empty {0} list")]
    Empty(&'static str),
    /// A name we do not support.
    #[error("unknown {kind} {name:?}")]
    Unknown {
        /// The kind of algorithm.
        kind: &'static str,
        /// The name given.
        name: String,
    },
}

impl From<FrameError> for SecioError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Io(e) => SecioError::Io(e),
            FrameError::TooLong { len, max } => SecioError::FrameTooLarge { len, max },
            other => SecioError::Frame(other),
        }
    }
}

impl Classify for SecioError {
    fn fault(&self) -> Fault {
        match self {
            SecioError::Io(e) => e.fault(),
            SecioError::NoCommonAlgorithm(_) => Fault::Incompatible,
            SecioError::BadSignature
            | SecioError::InvalidPublicKey
            | SecioError::InvalidEphemeralKey
            | SecioError::MacMismatch
            | SecioError::NonceMismatch
            | SecioError::FrameTooLarge { .. }
            | SecioError::FrameTooShort { .. }
            | SecioError::Decode(_) => Fault::Remote,
            SecioError::Frame(e) => e.fault(),
            // Our own key and nonce came back: a dial to ourselves.
            SecioError::ConnectedToSelf => Fault::Local,
            SecioError::Randomness
            | SecioError::Signing(_)
            | SecioError::KeyLength
            | SecioError::InvalidConfig(_) => Fault::Local,
        }
    }
}

impl SecioError {
    /// A copy, for the errors that are plain values (a failed channel returns its first
    /// error again).
    pub(crate) fn duplicate(&self) -> Option<SecioError> {
        Some(match self {
            SecioError::MacMismatch => SecioError::MacMismatch,
            SecioError::FrameTooLarge { len, max } => SecioError::FrameTooLarge {
                len: *len,
                max: *max,
            },
            SecioError::FrameTooShort { len, mac } => SecioError::FrameTooShort {
                len: *len,
                mac: *mac,
            },
            SecioError::NonceMismatch => SecioError::NonceMismatch,
            SecioError::KeyLength => SecioError::KeyLength,
            _ => return None,
        })
    }
}

/// The `/secio/1.0.0` security upgrade.
#[derive(Clone)]
pub struct Secio {
    keypair: Keypair,
    config: Config,
}

impl std::fmt::Debug for Secio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secio")
            .field("peer", &self.keypair.public().to_peer_id())
            .field("config", &self.config)
            .finish()
    }
}

impl Secio {
    /// SECIO with the identity `keypair` and default limits.
    pub fn new(keypair: Keypair) -> Self {
        Self::with_config(keypair, Config::default())
    }

    /// SECIO with explicit limits.
    pub fn with_config(keypair: Keypair, config: Config) -> Self {
        Secio { keypair, config }
    }
}

impl UpgradeInfo for Secio {
    fn protocol_names(&self) -> impl Iterator<Item = &'static str> + Clone + Send + Sync + '_ {
        std::iter::once(PROTOCOL)
    }
}

impl<C: Socket> SecurityUpgrade<C> for Secio {
    type Output = SecioStream<C>;
    type Error = SecioError;

    fn secure(
        &self,
        socket: C,
        _role: Role,
        _expected: Option<PeerId>,
        _protocol: &str,
    ) -> impl Future<Output = Result<(PeerId, SecioStream<C>), SecioError>> + Send + 'static {
        let keypair = self.keypair.clone();
        let config = self.config.clone();
        // The handshake's deadline is the upgrade pipeline's.
        handshake::handshake(socket, keypair, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_its_class() {
        let remote = [
            SecioError::BadSignature,
            SecioError::InvalidPublicKey,
            SecioError::InvalidEphemeralKey,
            SecioError::MacMismatch,
            SecioError::NonceMismatch,
            SecioError::from(FrameError::TooLong { len: 9, max: 1 }),
            SecioError::FrameTooShort { len: 1, mac: 32 },
            SecioError::Frame(FrameError::InvalidHead),
        ];
        for e in remote {
            assert_eq!(e.fault(), Fault::Remote, "{e}");
        }
        assert_eq!(
            SecioError::NoCommonAlgorithm("cipher").fault(),
            Fault::Incompatible
        );
        for e in [
            SecioError::ConnectedToSelf,
            SecioError::Randomness,
            SecioError::KeyLength,
            SecioError::InvalidConfig(ConfigError::Empty("hash")),
        ] {
            assert_eq!(e.fault(), Fault::Local, "{e}");
        }
        let cut = SecioError::from(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
        assert!(matches!(cut, SecioError::Io(_)));
        assert_eq!(cut.fault(), Fault::Network);
    }
}
