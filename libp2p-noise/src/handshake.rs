//! The XX handshake: `-> e`, `<- e, ee, s, es` + responder payload, `-> s, se` + initiator
//! payload.

use std::sync::Arc;

use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p_core::{PeerId, PublicKey, Role, Socket};

use crate::stream::Ciphers;
use crate::stream::NoiseStream;
use crate::{proto, LocalKeys, NoiseError, MAX_MESSAGE_LEN, STATIC_KEY_DOMAIN};

/// The most XX adds to a payload in one message: an ephemeral and a static key (32 bytes each)
/// and two AEAD tags (16 bytes each).
const HANDSHAKE_OVERHEAD: usize = 2 * 32 + 2 * 16;

/// The buffers of one handshake: the message on the wire and the payload inside it.
struct Buffers {
    message: Vec<u8>,
    payload: Vec<u8>,
}

/// Writes one length-prefixed handshake message and flushes it.
async fn send<C: Socket>(
    socket: &mut C,
    state: &mut snow::HandshakeState,
    bufs: &mut Buffers,
    payload: &[u8],
) -> Result<(), NoiseError> {
    // Room for the payload plus what XX adds to a message (two keys, two tags), capped by the
    // frame size.
    let room = (2 + payload.len() + HANDSHAKE_OVERHEAD).min(2 + MAX_MESSAGE_LEN);
    if bufs.message.len() < room {
        bufs.message.resize(room, 0);
    }
    let len = state.write_message(payload, &mut bufs.message[2..])?;
    let prefix =
        u16::try_from(len).map_err(|_| NoiseError::Noise("handshake message too long".into()))?;
    bufs.message[..2].copy_from_slice(&prefix.to_be_bytes());
    socket.write_all(&bufs.message[..2 + len]).await?;
    socket.flush().await?;
    Ok(())
}

/// Reads one length-prefixed handshake message (not a byte past it) and processes it;
/// returns the length of the payload now in `bufs.payload`.
async fn receive<C: Socket>(
    socket: &mut C,
    state: &mut snow::HandshakeState,
    bufs: &mut Buffers,
) -> Result<usize, NoiseError> {
    let mut header = [0u8; 2];
    socket.read_exact(&mut header).await?;
    let len = usize::from(u16::from_be_bytes(header));
    // Both buffers grow to what this message needs (at most 64 KiB, the 2-byte length's bound);
    // the payload inside is never longer than the message.
    if bufs.message.len() < len {
        bufs.message.resize(len, 0);
    }
    if bufs.payload.len() < len {
        bufs.payload.resize(len, 0);
    }
    socket.read_exact(&mut bufs.message[..len]).await?;
    Ok(state.read_message(&bufs.message[..len], &mut bufs.payload)?)
}

/// Checks the remote's payload against the static key the handshake proved it holds, and
/// returns the remote's identity.
fn verify_payload(state: &snow::HandshakeState, payload: &[u8]) -> Result<PeerId, NoiseError> {
    let payload = proto::decode_payload(payload).ok_or(NoiseError::InvalidPayload)?;
    let (key, sig) = match (payload.identity_key, payload.identity_sig) {
        (Some(key), Some(sig)) if !key.is_empty() && !sig.is_empty() => (key, sig),
        _ => return Err(NoiseError::InvalidPayload),
    };
    let public = PublicKey::try_decode_protobuf(&key).map_err(|_| NoiseError::InvalidKey)?;
    let remote_static = state.get_remote_static().ok_or(NoiseError::InvalidKey)?;
    let mut signed = Vec::with_capacity(STATIC_KEY_DOMAIN.len() + remote_static.len());
    signed.extend_from_slice(STATIC_KEY_DOMAIN);
    signed.extend_from_slice(remote_static);
    if !public.verify(&signed, &sig) {
        return Err(NoiseError::BadSignature);
    }
    Ok(public.to_peer_id())
}

fn check_expected(expected: Option<PeerId>, actual: PeerId) -> Result<(), NoiseError> {
    match expected {
        Some(expected) if expected != actual => Err(NoiseError::PeerIdMismatch {
            expected: Box::new(expected),
            actual: Box::new(actual),
        }),
        _ => Ok(()),
    }
}

/// Runs the handshake as initiator (dialer) or responder (listener).
pub(crate) async fn handshake<C: Socket>(
    mut socket: C,
    role: Role,
    local: Arc<LocalKeys>,
    expected: Option<PeerId>,
) -> Result<(PeerId, NoiseStream<C>), NoiseError> {
    let builder = crate::builder().local_private_key(&local.static_private)?;
    let mut state = match role {
        Role::Dialer => builder.build_initiator()?,
        Role::Listener => builder.build_responder()?,
    };
    let mut bufs = Buffers {
        message: Vec::new(),
        payload: Vec::new(),
    };

    let remote = match role {
        Role::Dialer => {
            // -> e
            send(&mut socket, &mut state, &mut bufs, &[]).await?;
            // <- e, ee, s, es + the responder's payload
            let n = receive(&mut socket, &mut state, &mut bufs).await?;
            let remote = verify_payload(&state, &bufs.payload[..n])?;
            check_expected(expected, remote)?;
            // -> s, se + our payload
            send(&mut socket, &mut state, &mut bufs, &local.payload).await?;
            remote
        }
        Role::Listener => {
            // -> e (any payload is ignored)
            receive(&mut socket, &mut state, &mut bufs).await?;
            // <- e, ee, s, es + our payload
            send(&mut socket, &mut state, &mut bufs, &local.payload).await?;
            // -> s, se + the initiator's payload
            let n = receive(&mut socket, &mut state, &mut bufs).await?;
            let remote = verify_payload(&state, &bufs.payload[..n])?;
            check_expected(expected, remote)?;
            remote
        }
    };
    if !state.is_handshake_finished() {
        return Err(NoiseError::Noise("handshake did not finish".into()));
    }
    let remote_static = state.get_remote_static().map(<[u8]>::to_vec);
    // The transport keys (Noise's Split()); the stream runs the cipher states itself.
    let ciphers = Ciphers::from_split(role == Role::Dialer, state.dangerously_get_raw_split());
    tracing::debug!(peer = %remote, ?role, "noise handshake complete");
    Ok((remote, NoiseStream::new(socket, ciphers, remote_static)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Noise;
    use libp2p_core::{Keypair, SecurityUpgrade};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    /// A responder whose payload is `payload`, made with the static key of `keys`.
    fn forged(keys: &LocalKeys, payload: Vec<u8>) -> Arc<LocalKeys> {
        Arc::new(LocalKeys {
            static_private: keys.static_private.clone(),
            static_public: keys.static_public.clone(),
            payload,
        })
    }

    async fn dial_forged(payload: Vec<u8>) -> Result<PeerId, NoiseError> {
        let honest = Noise::new(Keypair::generate_ed25519());
        let other = LocalKeys::generate(&Keypair::generate_ed25519()).unwrap();
        let liar = forged(&other, payload);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (dialer, _listener) = futures::join!(
            SecurityUpgrade::<_>::secure(&honest, a.compat(), Role::Dialer, None, "/noise"),
            handshake(b.compat(), Role::Listener, liar, None),
        );
        dialer.map(|(peer, _)| peer)
    }

    #[tokio::test]
    async fn a_signature_over_another_static_key_is_refused() {
        // A valid payload, but made for a different static key than the one in use.
        let identity = Keypair::generate_ed25519();
        let elsewhere = LocalKeys::generate(&identity).unwrap();
        let result = dial_forged(elsewhere.payload.clone()).await;
        assert!(
            matches!(result, Err(NoiseError::BadSignature)),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn malformed_payloads_are_refused() {
        let result = dial_forged(Vec::new()).await;
        assert!(
            matches!(result, Err(NoiseError::InvalidPayload)),
            "{result:?}"
        );
        let result = dial_forged(vec![0xff, 0xff, 0xff]).await;
        assert!(
            matches!(result, Err(NoiseError::InvalidPayload)),
            "{result:?}"
        );
        let result = dial_forged(proto::encode_payload(vec![1, 2, 3], vec![4, 5, 6])).await;
        assert!(matches!(result, Err(NoiseError::InvalidKey)), "{result:?}");
    }
}
