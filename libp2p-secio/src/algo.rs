//! Algorithm negotiation and key derivation: the order of preference, the selection of each
//! algorithm, the shared secret's encoding and go-libp2p's key stretching.

use std::cmp::Ordering;

use ring::{agreement, digest, hmac};

use crate::SecioError;

/// The key exchanges we offer, in our order of preference.
pub(crate) const EXCHANGES: &str = "P-256,P-384";
/// The ciphers we offer, in our order of preference.
pub(crate) const CIPHERS: &str = "AES-256,AES-128";
/// The hashes we offer, in our order of preference.
pub(crate) const HASHES: &str = "SHA256,SHA512";

/// Size of the handshake nonce (`Propose.rand`).
pub(crate) const NONCE_LEN: usize = 16;

/// An ephemeral key exchange curve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curve {
    P256,
    P384,
}

impl Curve {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "P-256" => Some(Curve::P256),
            "P-384" => Some(Curve::P384),
            _ => None,
        }
    }

    pub(crate) fn algorithm(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
        }
    }
}

/// A symmetric cipher (always AES in counter mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CipherKind {
    Aes128,
    Aes256,
}

impl CipherKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "AES-128" => Some(CipherKind::Aes128),
            "AES-256" => Some(CipherKind::Aes256),
            _ => None,
        }
    }

    /// Key length in bytes.
    pub(crate) fn key_len(self) -> usize {
        match self {
            CipherKind::Aes128 => 16,
            CipherKind::Aes256 => 32,
        }
    }
}

/// The hash of the MACs and of the key stretching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HashKind {
    Sha256,
    Sha512,
}

impl HashKind {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "SHA256" => Some(HashKind::Sha256),
            "SHA512" => Some(HashKind::Sha512),
            _ => None,
        }
    }

    pub(crate) fn hmac(self) -> hmac::Algorithm {
        match self {
            HashKind::Sha256 => hmac::HMAC_SHA256,
            HashKind::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Length of a MAC tag in bytes.
    pub(crate) fn tag_len(self) -> usize {
        match self {
            HashKind::Sha256 => 32,
            HashKind::Sha512 => 64,
        }
    }
}

/// IV length (AES block size).
pub(crate) const IV_LEN: usize = 16;
/// MAC key length, as in go-libp2p.
pub(crate) const MAC_KEY_LEN: usize = 20;

/// Whose preferences win: `Greater` means ours, `Less` theirs.
///
/// `oh1 = sha256(remote_pubkey ‖ local_nonce)`, `oh2 = sha256(local_pubkey ‖ remote_nonce)`,
/// compared lexicographically. Equal hashes mean we are talking to ourselves.
pub(crate) fn order(
    remote_pubkey: &[u8],
    local_nonce: &[u8],
    local_pubkey: &[u8],
    remote_nonce: &[u8],
) -> Result<Ordering, SecioError> {
    let hash = |a: &[u8], b: &[u8]| {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(a);
        ctx.update(b);
        ctx.finish()
    };
    let oh1 = hash(remote_pubkey, local_nonce);
    let oh2 = hash(local_pubkey, remote_nonce);
    match oh1.as_ref().cmp(oh2.as_ref()) {
        Ordering::Equal => Err(SecioError::ConnectedToSelf),
        other => Ok(other),
    }
}

/// Picks the first entry of the winning side's comma-separated list that the other side also
/// offers.
pub(crate) fn select_best<'a>(order: Ordering, ours: &'a str, theirs: &'a str) -> Option<&'a str> {
    let (first, second) = match order {
        Ordering::Greater => (ours, theirs),
        Ordering::Less => (theirs, ours),
        // Identical preferences: both sides pick the first (unreachable after `order`).
        Ordering::Equal => return ours.split(',').next().filter(|s| !s.is_empty()),
    };
    first
        .split(',')
        .find(|candidate| !candidate.is_empty() && second.split(',').any(|c| c == *candidate))
}

/// The algorithms both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) curve: Curve,
    pub(crate) cipher: CipherKind,
    pub(crate) hash: HashKind,
}

/// Selects every algorithm from the remote's lists.
pub(crate) fn select(
    order: Ordering,
    exchanges: &str,
    ciphers: &str,
    hashes: &str,
) -> Result<Selection, SecioError> {
    let curve = select_best(order, EXCHANGES, exchanges)
        .and_then(Curve::parse)
        .ok_or(SecioError::NoCommonAlgorithm("key exchange"))?;
    let cipher = select_best(order, CIPHERS, ciphers)
        .and_then(CipherKind::parse)
        .ok_or(SecioError::NoCommonAlgorithm("cipher"))?;
    let hash = select_best(order, HASHES, hashes)
        .and_then(HashKind::parse)
        .ok_or(SecioError::NoCommonAlgorithm("hash"))?;
    Ok(Selection {
        curve,
        cipher,
        hash,
    })
}

/// The shared secret as go and py encode it: a big-endian integer without leading zero bytes.
pub(crate) fn strip_leading_zeros(secret: &[u8]) -> &[u8] {
    let start = secret.iter().position(|b| *b != 0).unwrap_or(secret.len());
    &secret[start..]
}

/// One direction's keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StretchedKeys {
    pub(crate) iv: Vec<u8>,
    pub(crate) cipher_key: Vec<u8>,
    pub(crate) mac_key: Vec<u8>,
}

impl std::fmt::Debug for StretchedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StretchedKeys(..)")
    }
}

/// go-libp2p's `KeyStretcher`: expands `secret` into two sets of keys.
pub(crate) fn stretch_keys(
    cipher: CipherKind,
    hash: HashKind,
    secret: &[u8],
) -> (StretchedKeys, StretchedKeys) {
    const SEED: &[u8] = b"key expansion";
    let key_len = cipher.key_len();
    let half = IV_LEN + key_len + MAC_KEY_LEN;
    let mut result = Vec::with_capacity(2 * half + 64);
    let key = hmac::Key::new(hash.hmac(), secret);
    let mut a = hmac::sign(&key, SEED);
    while result.len() < 2 * half {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(a.as_ref());
        ctx.update(SEED);
        result.extend_from_slice(ctx.sign().as_ref());
        a = hmac::sign(&key, a.as_ref());
    }
    result.truncate(2 * half);
    let split = |r: &[u8]| StretchedKeys {
        iv: r[..IV_LEN].to_vec(),
        cipher_key: r[IV_LEN..IV_LEN + key_len].to_vec(),
        mac_key: r[IV_LEN + key_len..].to_vec(),
    };
    (split(&result[..half]), split(&result[half..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn joined(k: &StretchedKeys) -> String {
        format!("{}{}{}", hex(&k.iv), hex(&k.cipher_key), hex(&k.mac_key))
    }

    #[test]
    fn selection_follows_the_winner() {
        let ours = "P-256,P-384";
        let theirs = "P-384,P-256";
        assert_eq!(select_best(Ordering::Greater, ours, theirs), Some("P-256"));
        assert_eq!(select_best(Ordering::Less, ours, theirs), Some("P-384"));
        assert_eq!(select_best(Ordering::Greater, ours, "P-521"), None);
        assert_eq!(select_best(Ordering::Less, ours, "P-521"), None);
        assert_eq!(select_best(Ordering::Greater, ours, ""), None);
        assert_eq!(
            select_best(
                Ordering::Less,
                "AES-256,AES-128",
                "Blowfish,AES-128,AES-256"
            ),
            Some("AES-128")
        );
    }

    #[test]
    fn a_minimal_peer_agrees_with_us() {
        // py-libp2p offers only P-256, AES-128 and SHA256.
        for order in [Ordering::Greater, Ordering::Less] {
            let s = select(order, "P-256", "AES-128", "SHA256").unwrap();
            assert_eq!(
                s,
                Selection {
                    curve: Curve::P256,
                    cipher: CipherKind::Aes128,
                    hash: HashKind::Sha256
                }
            );
        }
        // A go peer with the full lists: whoever wins, the first entries coincide.
        for order in [Ordering::Greater, Ordering::Less] {
            let s = select(
                order,
                "P-256,P-384,P-521",
                "AES-256,AES-128",
                "SHA256,SHA512",
            )
            .unwrap();
            assert_eq!(s.curve, Curve::P256);
            assert_eq!(s.cipher, CipherKind::Aes256);
            assert_eq!(s.hash, HashKind::Sha256);
        }
        assert!(matches!(
            select(Ordering::Less, "P-521", "AES-128", "SHA256"),
            Err(SecioError::NoCommonAlgorithm("key exchange"))
        ));
        assert!(matches!(
            select(Ordering::Less, "P-256", "Blowfish", "SHA256"),
            Err(SecioError::NoCommonAlgorithm("cipher"))
        ));
        assert!(matches!(
            select(Ordering::Greater, "P-256", "AES-128", "SHA1"),
            Err(SecioError::NoCommonAlgorithm("hash"))
        ));
    }

    #[test]
    fn order_is_antisymmetric_and_detects_self() {
        let (ka, na) = (b"key-a".as_slice(), [1u8; 16]);
        let (kb, nb) = (b"key-b".as_slice(), [2u8; 16]);
        let a = order(kb, &na, ka, &nb).unwrap();
        let b = order(ka, &nb, kb, &na).unwrap();
        assert_eq!(a, b.reverse());
        assert!(matches!(
            order(ka, &na, ka, &na),
            Err(SecioError::ConnectedToSelf)
        ));
    }

    #[test]
    fn leading_zeros_are_stripped() {
        assert_eq!(strip_leading_zeros(&[0, 0, 1, 0, 2]), &[1, 0, 2]);
        assert_eq!(strip_leading_zeros(&[5, 0]), &[5, 0]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[] as &[u8]);
        assert_eq!(strip_leading_zeros(&[]), &[] as &[u8]);
    }

    /// Known answers computed independently (Python `hmac`) after go-libp2p's `KeyStretcher`,
    /// for a secret that starts with a zero byte: 00 01 02 .. 1f, stripped to 01 .. 1f.
    #[test]
    fn stretching_matches_known_answers_for_a_secret_with_a_leading_zero() {
        let raw: Vec<u8> = (0u8..32).collect();
        let secret = strip_leading_zeros(&raw);
        assert_eq!(secret.len(), 31);

        let (k1, k2) = stretch_keys(CipherKind::Aes128, HashKind::Sha256, secret);
        assert_eq!(
            joined(&k1),
            "e62f07d0db454ee87d4672c19217f3eb1f5c72beef7a79f5b2d245c93f341a438b45cf382772db242a9a0fc0b67ba0ebd756ac83"
        );
        assert_eq!(
            joined(&k2),
            "1270b94c1e2d4fd5245691860df62895ee89895e5f9dd48573e3b62ef4ef9863a46b1d3e05f4c43c1c02980aafd52dc16f9401a3"
        );
        assert_eq!(
            (k1.iv.len(), k1.cipher_key.len(), k1.mac_key.len()),
            (16, 16, 20)
        );

        let (k1, k2) = stretch_keys(CipherKind::Aes256, HashKind::Sha512, secret);
        assert_eq!(
            joined(&k1),
            "d8e70a5f877044432a851eafd6a737ef35bb56b4738a7d39dc79449f06135c6f02f8f6e6a37f07e2281bb55caac5db78445a99d1a53a722f97a5575894fa9fb53940074c"
        );
        assert_eq!(
            joined(&k2),
            "086776166145baaf089cd300af917639270c9939ae7012a2f0cb5f8b09a0796158e6038bf0b6d6ef12ebd505a8198f1d11249a0388d3b0d98dd1eae2f1ee39f1b105e4fa"
        );
        assert_eq!(
            (k1.iv.len(), k1.cipher_key.len(), k1.mac_key.len()),
            (16, 32, 20)
        );

        // Without stripping the keys differ (this is the 1-in-256 interop bug).
        let (unstripped, _) = stretch_keys(CipherKind::Aes128, HashKind::Sha256, &raw);
        assert_eq!(
            joined(&unstripped),
            "bef3e571301dc04a79ad4ab4310b90a480043e5a719b99aec95ba29a00234beba1999046d5c676ef6b53c490bca9643f14427b5e"
        );
        // Deterministic.
        assert_eq!(
            stretch_keys(CipherKind::Aes128, HashKind::Sha256, secret),
            stretch_keys(CipherKind::Aes128, HashKind::Sha256, secret)
        );
    }

    /// A real ECDH whose raw secret starts with 0x00: both sides derive the same stripped
    /// secret, one byte shorter than the coordinate.
    #[test]
    fn ecdh_secret_with_a_leading_zero_is_stripped_on_both_sides() {
        let rng = ring::rand::SystemRandom::new();
        let alg = &agreement::ECDH_P256;
        for _ in 0..20_000 {
            let a = agreement::EphemeralPrivateKey::generate(alg, &rng).unwrap();
            let b = agreement::EphemeralPrivateKey::generate(alg, &rng).unwrap();
            let pa = a.compute_public_key().unwrap();
            let pb = b.compute_public_key().unwrap();
            let sa =
                agreement::agree_ephemeral(a, &agreement::UnparsedPublicKey::new(alg, pb), |s| {
                    (s[0], strip_leading_zeros(s).to_vec())
                })
                .unwrap();
            if sa.0 != 0 {
                continue;
            }
            let sb =
                agreement::agree_ephemeral(b, &agreement::UnparsedPublicKey::new(alg, pa), |s| {
                    strip_leading_zeros(s).to_vec()
                })
                .unwrap();
            assert_eq!(sa.1, sb);
            assert!(sa.1.len() < 32);
            assert_eq!(
                stretch_keys(CipherKind::Aes128, HashKind::Sha256, &sa.1),
                stretch_keys(CipherKind::Aes128, HashKind::Sha256, &sb)
            );
            return;
        }
        panic!("no secret with a leading zero in 20000 tries");
    }
}
