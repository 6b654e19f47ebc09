//! The SECIO handshake: `Propose`, `Exchange`, then the encrypted nonce check.

use futures::AsyncWriteExt;
use libp2p_core::framing::{Codec, Head};
use libp2p_core::{Keypair, PeerId, PublicKey, Socket};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use crate::algo::{self, NONCE_LEN};
use crate::stream::SecioStream;
use crate::{Config, SecioError};

/// Largest handshake message accepted. An RSA-8192 public key or signature takes about 1 KiB;
/// this leaves room without letting a peer make us allocate much.
pub(crate) const MAX_HANDSHAKE_MESSAGE: usize = 16 * 1024;

/// The first message: nonce, identity key and supported algorithms.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Propose {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) rand: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) pubkey: Option<Vec<u8>>,
    #[prost(string, optional, tag = "3")]
    pub(crate) exchanges: Option<String>,
    #[prost(string, optional, tag = "4")]
    pub(crate) ciphers: Option<String>,
    #[prost(string, optional, tag = "5")]
    pub(crate) hashes: Option<String>,
}

/// The second message: the signed ephemeral public key.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Exchange {
    #[prost(bytes = "vec", optional, tag = "1")]
    pub(crate) epubkey: Option<Vec<u8>>,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub(crate) signature: Option<Vec<u8>>,
}

/// Handshake messages: a 4-byte big-endian length, then the protobuf.
fn codec(max: usize) -> Codec {
    Codec::new(Head::U32, max)
}

/// Recovers the [`SecioError`] an `io::Error` of the stream carries.
fn from_io(e: std::io::Error) -> SecioError {
    if e.get_ref().is_some_and(|inner| inner.is::<SecioError>()) {
        if let Some(Ok(inner)) = e.into_inner().map(|inner| inner.downcast::<SecioError>()) {
            return *inner;
        }
        unreachable!("checked to hold a SecioError");
    }
    SecioError::Io(e)
}

pub(crate) async fn handshake<C: Socket>(
    mut socket: C,
    keypair: Keypair,
    config: Config,
) -> Result<(PeerId, SecioStream<C>), SecioError> {
    let rng = SystemRandom::new();
    let max_message = MAX_HANDSHAKE_MESSAGE.min(config.max_frame_len);

    // 1. Propose.
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce).map_err(|_| SecioError::Randomness)?;
    let local_pubkey = keypair.public().encode_protobuf();
    let offer = algo::Offer {
        exchanges: algo::join(&config.exchanges),
        ciphers: algo::join(&config.ciphers),
        hashes: algo::join(&config.hashes),
    };
    let local_proposal = Propose {
        rand: Some(nonce.to_vec()),
        pubkey: Some(local_pubkey.clone()),
        exchanges: Some(offer.exchanges.clone()),
        ciphers: Some(offer.ciphers.clone()),
        hashes: Some(offer.hashes.clone()),
    }
    .encode_to_vec();
    let codec = codec(max_message);
    codec.write(&mut socket, &local_proposal).await?;
    let remote_proposal = codec.read(&mut socket).await?;
    let remote = Propose::decode(remote_proposal.as_slice())?;

    let remote_pubkey_bytes = remote.pubkey.unwrap_or_default();
    let remote_pubkey = PublicKey::try_decode_protobuf(&remote_pubkey_bytes)
        .map_err(|_| SecioError::InvalidPublicKey)?;
    // Whether this is the peer that was dialed is the pipeline's to check.
    let remote_peer = remote_pubkey.to_peer_id();
    let remote_nonce = remote.rand.unwrap_or_default();

    // 1.1 Selection. An empty list of ours (or theirs) fails here with `NoCommonAlgorithm`,
    // on both sides, as both proposals have been exchanged.
    let order = algo::order(&remote_pubkey_bytes, &nonce, &local_pubkey, &remote_nonce)?;
    let selection = algo::select(
        order,
        &offer,
        remote.exchanges.as_deref().unwrap_or(""),
        remote.ciphers.as_deref().unwrap_or(""),
        remote.hashes.as_deref().unwrap_or(""),
    )?;
    tracing::debug!(?selection, %remote_peer, "secio: algorithms agreed");

    // 2. Exchange: our ephemeral key, signed over both proposals.
    let (ephemeral, ephemeral_public) = selection.curve.generate(&rng)?;
    let mut corpus =
        Vec::with_capacity(local_proposal.len() + remote_proposal.len() + ephemeral_public.len());
    corpus.extend_from_slice(&local_proposal);
    corpus.extend_from_slice(&remote_proposal);
    corpus.extend_from_slice(&ephemeral_public);
    let signature = keypair.sign(&corpus)?;
    let exchange = Exchange {
        epubkey: Some(ephemeral_public),
        signature: Some(signature),
    }
    .encode_to_vec();
    codec.write(&mut socket, &exchange).await?;
    let remote_exchange = codec.read(&mut socket).await?;
    let remote_exchange = Exchange::decode(remote_exchange.as_slice())?;
    let remote_ephemeral = remote_exchange.epubkey.unwrap_or_default();

    // 2.1 Verify.
    corpus.clear();
    corpus.extend_from_slice(&remote_proposal);
    corpus.extend_from_slice(&local_proposal);
    corpus.extend_from_slice(&remote_ephemeral);
    if !remote_pubkey.verify(&corpus, &remote_exchange.signature.unwrap_or_default()) {
        return Err(SecioError::BadSignature);
    }

    // 2.2 Keys.
    let secret = ephemeral.agree(&remote_ephemeral)?;
    let (k1, k2) = algo::stretch_keys(selection.cipher, selection.hash, &secret);
    let (local_keys, remote_keys) = match order {
        std::cmp::Ordering::Greater => (k1, k2),
        _ => (k2, k1),
    };
    let mut stream = SecioStream::new(
        socket,
        selection.cipher,
        selection.hash,
        &local_keys,
        &remote_keys,
        config.max_frame_len,
        config.max_write_frame,
    )?;

    // 3. Finish: send the remote's nonce back, expect ours.
    stream.encode_frame(&remote_nonce);
    futures::future::poll_fn(|cx| stream.poll_drain(cx))
        .await
        .map_err(from_io)?;
    stream.flush().await.map_err(from_io)?;
    match futures::future::poll_fn(|cx| stream.poll_next_frame(cx))
        .await
        .map_err(from_io)?
    {
        Some(_) if stream.frame() == nonce => stream.consume_frame(),
        Some(_) => return Err(SecioError::NonceMismatch),
        None => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
    }
    Ok((remote_peer, stream))
}
