//! The XX handshake: `-> e`, `<- e, ee, s, es` + responder payload, `-> s, se` + initiator
//! payload.

use std::sync::Arc;

use libp2p_core::framing::{Codec, Head};
use libp2p_core::{PeerId, PublicKey, Role, Socket};

use crate::stream::Ciphers;
use crate::stream::NoiseStream;
use crate::{proto, LocalKeys, NoiseError, MAX_MESSAGE_LEN, STATIC_KEY_DOMAIN};

/// The most XX adds to a payload in one message: an ephemeral and a static key (32 bytes each)
/// and two AEAD tags (16 bytes each).
const HANDSHAKE_OVERHEAD: usize = 2 * 32 + 2 * 16;

/// Handshake messages: a 2-byte big-endian length, then at most 65535 bytes.
fn codec() -> Codec {
    Codec::new(Head::U16, MAX_MESSAGE_LEN)
}

/// Writes one length-prefixed handshake message and flushes it.
async fn send<C: Socket>(
    socket: &mut C,
    state: &mut snow::HandshakeState,
    payload: &[u8],
) -> Result<(), NoiseError> {
    // Room for the payload plus what XX adds to a message (two keys, two tags), capped by the
    // frame size.
    let mut message = vec![0u8; (payload.len() + HANDSHAKE_OVERHEAD).min(MAX_MESSAGE_LEN)];
    let len = state.write_message(payload, &mut message)?;
    codec().write(socket, &message[..len]).await?;
    Ok(())
}

/// Reads one length-prefixed handshake message (not a byte past it) and processes it;
/// returns the payload inside.
async fn receive<C: Socket>(
    socket: &mut C,
    state: &mut snow::HandshakeState,
) -> Result<Vec<u8>, NoiseError> {
    let message = codec().read(socket).await?;
    // The payload inside is never longer than the message.
    let mut payload = vec![0u8; message.len()];
    let n = state.read_message(&message, &mut payload)?;
    payload.truncate(n);
    Ok(payload)
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

/// Runs the handshake as initiator (dialer) or responder (listener).
pub(crate) async fn handshake<C: Socket>(
    mut socket: C,
    role: Role,
    local: Arc<LocalKeys>,
) -> Result<(PeerId, NoiseStream<C>), NoiseError> {
    let builder = crate::builder().local_private_key(&local.static_private)?;
    let mut state = match role {
        Role::Dialer => builder.build_initiator()?,
        // Role::Listener (the enum is non-exhaustive; there are two roles).
        _ => builder.build_responder()?,
    };

    let remote = match role {
        Role::Dialer => {
            // -> e
            send(&mut socket, &mut state, &[]).await?;
            // <- e, ee, s, es + the responder's payload
            let payload = receive(&mut socket, &mut state).await?;
            let remote = verify_payload(&state, &payload)?;
            // -> s, se + our payload
            send(&mut socket, &mut state, &local.payload).await?;
            remote
        }
        // Role::Listener.
        _ => {
            // -> e (any payload is ignored)
            receive(&mut socket, &mut state).await?;
            // <- e, ee, s, es + our payload
            send(&mut socket, &mut state, &local.payload).await?;
            // -> s, se + the initiator's payload
            let payload = receive(&mut socket, &mut state).await?;
            verify_payload(&state, &payload)?
        }
    };
    if !state.is_handshake_finished() {
        return Err(NoiseError::Unfinished);
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
            handshake(b.compat(), Role::Listener, liar),
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
