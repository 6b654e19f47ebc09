//! Algorithm negotiation and key derivation: the order of preference, the selection of each
//! algorithm, the shared secret's encoding and go-libp2p's key stretching.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use p521::elliptic_curve::sec1::ToSec1Point;
use p521::elliptic_curve::Generate;
use ring::rand::SystemRandom;
use ring::{agreement, digest, hmac};

use crate::{ConfigError, SecioError};

/// Size of the handshake nonce (`Propose.rand`).
pub(crate) const NONCE_LEN: usize = 16;

/// Declares a public algorithm enum with its wire names.
macro_rules! algorithms {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:literal {
            $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every supported algorithm of this kind, in the default order of preference.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name on the wire (as in the `Propose` lists).
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }

            /// The algorithm with this wire name, if we support it.
            pub(crate) fn parse(name: &str) -> Option<Self> {
                match name {
                    $($wire => Some($name::$variant),)+
                    _ => None,
                }
            }

            /// Parses a comma-separated list of wire names (e.g. `"P-256,P-384"`), keeping
            /// its order. An unknown name or an empty list is a [`SecioError::InvalidConfig`].
            pub fn parse_list(list: &str) -> Result<Vec<Self>, SecioError> {
                let parsed = list
                    .split(',')
                    .map(|name| name.trim().parse())
                    .collect::<Result<Vec<Self>, SecioError>>()?;
                if parsed.is_empty() {
                    return Err(SecioError::InvalidConfig(ConfigError::Empty($kind)));
                }
                Ok(parsed)
            }
        }

        impl FromStr for $name {
            type Err = SecioError;

            fn from_str(name: &str) -> Result<Self, SecioError> {
                Self::parse(name).ok_or_else(|| {
                    SecioError::InvalidConfig(ConfigError::Unknown {
                        kind: $kind,
                        name: name.to_string(),
                    })
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

algorithms! {
    /// An ephemeral ECDH key exchange curve. The public keys are uncompressed SEC1 points and
    /// the shared secret is the x-coordinate without leading zero bytes, as in go-libp2p.
    KeyExchange, "key exchange" {
        /// NIST P-256 (secp256r1).
        P256 => "P-256",
        /// NIST P-384 (secp384r1).
        P384 => "P-384",
        /// NIST P-521 (secp521r1).
        P521 => "P-521",
    }
}

algorithms! {
    /// A symmetric cipher (always AES in counter mode).
    Cipher, "cipher" {
        /// AES with a 256-bit key.
        Aes256 => "AES-256",
        /// AES with a 128-bit key.
        Aes128 => "AES-128",
    }
}

algorithms! {
    /// The hash of the frame MACs (HMAC) and of the key stretching.
    Digest, "hash" {
        /// SHA-256.
        Sha256 => "SHA256",
        /// SHA-512.
        Sha512 => "SHA512",
    }
}

/// Joins algorithms into the comma-separated form of the `Propose` lists.
pub(crate) fn join<T: fmt::Display>(list: &[T]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A freshly generated ephemeral key.
pub(crate) enum EphemeralKey {
    Ring(
        agreement::EphemeralPrivateKey,
        &'static agreement::Algorithm,
    ),
    P521(p521::ecdh::EphemeralSecret),
}

impl KeyExchange {
    /// Generates an ephemeral key; returns it with its public key as an uncompressed SEC1
    /// point.
    pub(crate) fn generate(
        self,
        rng: &SystemRandom,
    ) -> Result<(EphemeralKey, Vec<u8>), SecioError> {
        let failed = || SecioError::Randomness;
        let ring_alg = match self {
            KeyExchange::P256 => &agreement::ECDH_P256,
            KeyExchange::P384 => &agreement::ECDH_P384,
            KeyExchange::P521 => {
                let secret = p521::ecdh::EphemeralSecret::try_generate().map_err(|_| failed())?;
                let public = secret.public_key().to_sec1_point(false).as_bytes().to_vec();
                return Ok((EphemeralKey::P521(secret), public));
            }
        };
        let key = agreement::EphemeralPrivateKey::generate(ring_alg, rng).map_err(|_| failed())?;
        let public = key.compute_public_key().map_err(|_| failed())?;
        let public = public.as_ref().to_vec();
        Ok((EphemeralKey::Ring(key, ring_alg), public))
    }
}

impl EphemeralKey {
    /// The shared secret with the remote's ephemeral public key (an uncompressed SEC1
    /// point), already stripped of leading zeros.
    pub(crate) fn agree(self, remote: &[u8]) -> Result<Vec<u8>, SecioError> {
        match self {
            EphemeralKey::Ring(key, alg) => agreement::agree_ephemeral(
                key,
                &agreement::UnparsedPublicKey::new(alg, remote),
                |secret| strip_leading_zeros(secret).to_vec(),
            )
            .map_err(|_| SecioError::InvalidEphemeralKey),
            EphemeralKey::P521(secret) => {
                // Only the uncompressed form, like ring does for the other curves.
                if remote.first() != Some(&0x04) {
                    return Err(SecioError::InvalidEphemeralKey);
                }
                let remote = p521::PublicKey::from_sec1_bytes(remote)
                    .map_err(|_| SecioError::InvalidEphemeralKey)?;
                let shared = secret.diffie_hellman(&remote);
                Ok(strip_leading_zeros(shared.raw_secret_bytes().as_slice()).to_vec())
            }
        }
    }
}

impl Cipher {
    /// Key length in bytes.
    pub(crate) fn key_len(self) -> usize {
        match self {
            Cipher::Aes128 => 16,
            Cipher::Aes256 => 32,
        }
    }
}

impl Digest {
    pub(crate) fn hmac(self) -> hmac::Algorithm {
        match self {
            Digest::Sha256 => hmac::HMAC_SHA256,
            Digest::Sha512 => hmac::HMAC_SHA512,
        }
    }

    /// Length of a MAC tag in bytes.
    pub(crate) fn tag_len(self) -> usize {
        match self {
            Digest::Sha256 => 32,
            Digest::Sha512 => 64,
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
/// offers: ours when `order` is `Greater`, else theirs (`order` never returns `Equal`).
pub(crate) fn select_best<'a>(order: Ordering, ours: &'a str, theirs: &'a str) -> Option<&'a str> {
    let (first, second) = if order == Ordering::Greater {
        (ours, theirs)
    } else {
        (theirs, ours)
    };
    first
        .split(',')
        .find(|candidate| !candidate.is_empty() && second.split(',').any(|c| c == *candidate))
}

/// The algorithms both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Selection {
    pub(crate) curve: KeyExchange,
    pub(crate) cipher: Cipher,
    pub(crate) hash: Digest,
}

/// Our comma-separated lists, as sent in the `Propose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Offer {
    pub(crate) exchanges: String,
    pub(crate) ciphers: String,
    pub(crate) hashes: String,
}

impl Default for Offer {
    fn default() -> Self {
        Offer {
            exchanges: join(KeyExchange::ALL),
            ciphers: join(Cipher::ALL),
            hashes: join(Digest::ALL),
        }
    }
}

/// Selects every algorithm from our and the remote's lists.
pub(crate) fn select(
    order: Ordering,
    ours: &Offer,
    exchanges: &str,
    ciphers: &str,
    hashes: &str,
) -> Result<Selection, SecioError> {
    let curve = select_best(order, &ours.exchanges, exchanges)
        .and_then(KeyExchange::parse)
        .ok_or(SecioError::NoCommonAlgorithm("key exchange"))?;
    let cipher = select_best(order, &ours.ciphers, ciphers)
        .and_then(Cipher::parse)
        .ok_or(SecioError::NoCommonAlgorithm("cipher"))?;
    let hash = select_best(order, &ours.hashes, hashes)
        .and_then(Digest::parse)
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
    cipher: Cipher,
    hash: Digest,
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
            let s = select(order, &Offer::default(), "P-256", "AES-128", "SHA256").unwrap();
            assert_eq!(
                s,
                Selection {
                    curve: KeyExchange::P256,
                    cipher: Cipher::Aes128,
                    hash: Digest::Sha256
                }
            );
        }
        // A go peer with the full lists: whoever wins, the first entries coincide.
        for order in [Ordering::Greater, Ordering::Less] {
            let s = select(
                order,
                &Offer::default(),
                "P-256,P-384,P-521",
                "AES-256,AES-128",
                "SHA256,SHA512",
            )
            .unwrap();
            assert_eq!(s.curve, KeyExchange::P256);
            assert_eq!(s.cipher, Cipher::Aes256);
            assert_eq!(s.hash, Digest::Sha256);
        }
        assert!(matches!(
            select(
                Ordering::Less,
                &Offer::default(),
                "P-224",
                "AES-128",
                "SHA256"
            ),
            Err(SecioError::NoCommonAlgorithm("key exchange"))
        ));
        assert!(matches!(
            select(
                Ordering::Less,
                &Offer::default(),
                "P-256",
                "Blowfish",
                "SHA256"
            ),
            Err(SecioError::NoCommonAlgorithm("cipher"))
        ));
        assert!(matches!(
            select(
                Ordering::Greater,
                &Offer::default(),
                "P-256",
                "AES-128",
                "SHA1"
            ),
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

        let (k1, k2) = stretch_keys(Cipher::Aes128, Digest::Sha256, secret);
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

        let (k1, k2) = stretch_keys(Cipher::Aes256, Digest::Sha512, secret);
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
        let (unstripped, _) = stretch_keys(Cipher::Aes128, Digest::Sha256, &raw);
        assert_eq!(
            joined(&unstripped),
            "bef3e571301dc04a79ad4ab4310b90a480043e5a719b99aec95ba29a00234beba1999046d5c676ef6b53c490bca9643f14427b5e"
        );
        // Deterministic.
        assert_eq!(
            stretch_keys(Cipher::Aes128, Digest::Sha256, secret),
            stretch_keys(Cipher::Aes128, Digest::Sha256, secret)
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
                stretch_keys(Cipher::Aes128, Digest::Sha256, &sa.1),
                stretch_keys(Cipher::Aes128, Digest::Sha256, &sb)
            );
            return;
        }
        panic!("no secret with a leading zero in 20000 tries");
    }

    /// Every curve: uncompressed SEC1 public keys of the right length, and both sides derive
    /// the same stripped secret.
    #[test]
    fn every_curve_agrees_with_itself() {
        let rng = SystemRandom::new();
        for (&curve, point_len, coord_len) in KeyExchange::ALL
            .iter()
            .zip([65usize, 97, 133])
            .zip([32usize, 48, 66])
            .map(|((c, p), x)| (c, p, x))
        {
            for _ in 0..8 {
                let (a, pa) = curve.generate(&rng).unwrap();
                let (b, pb) = curve.generate(&rng).unwrap();
                assert_eq!((pa.len(), pa[0]), (point_len, 4), "{curve}");
                assert_eq!((pb.len(), pb[0]), (point_len, 4), "{curve}");
                let sa = a.agree(&pb).unwrap();
                let sb = b.agree(&pa).unwrap();
                assert_eq!(sa, sb, "{curve}");
                assert!(sa.len() <= coord_len && sa.len() > coord_len - 8, "{curve}");
                assert_ne!(sa.first(), Some(&0), "{curve}");
            }
        }
    }

    #[test]
    fn p521_refuses_bad_points() {
        let rng = SystemRandom::new();
        let (_, public) = KeyExchange::P521.generate(&rng).unwrap();
        let mut off_curve = public.clone();
        off_curve[132] ^= 1;
        let compressed = {
            let mut c = vec![2 + (public[132] & 1)];
            c.extend_from_slice(&public[1..67]);
            c
        };
        let (_, p256) = KeyExchange::P256.generate(&rng).unwrap();
        for bad in [
            off_curve,
            compressed,
            p256,
            vec![],
            vec![4],
            public[..132].to_vec(),
        ] {
            let (key, _) = KeyExchange::P521.generate(&rng).unwrap();
            assert!(matches!(
                key.agree(&bad),
                Err(SecioError::InvalidEphemeralKey)
            ));
        }
    }

    /// P-521 x-coordinates are 66 bytes whose first byte is at most 1, so a leading zero is
    /// frequent (about half the time): the secret must then be stripped on both sides.
    #[test]
    fn p521_secret_with_a_leading_zero_is_stripped_on_both_sides() {
        let rng = SystemRandom::new();
        for _ in 0..200 {
            let (a, pa) = KeyExchange::P521.generate(&rng).unwrap();
            let (b, pb) = KeyExchange::P521.generate(&rng).unwrap();
            let remote = p521::PublicKey::from_sec1_bytes(&pb).unwrap();
            let EphemeralKey::P521(ref secret) = a else {
                unreachable!()
            };
            let raw = secret.diffie_hellman(&remote);
            let raw = raw.raw_secret_bytes().as_slice().to_vec();
            assert_eq!(raw.len(), 66);
            assert!(raw[0] <= 1);
            if raw[0] != 0 {
                continue;
            }
            let sa = a.agree(&pb).unwrap();
            let sb = b.agree(&pa).unwrap();
            assert_eq!(sa, sb);
            assert_eq!(sa, strip_leading_zeros(&raw));
            assert!(sa.len() < 66);
            return;
        }
        panic!("no P-521 secret with a leading zero in 200 tries");
    }

    #[test]
    fn lists_join_and_parse() {
        assert_eq!(Offer::default().exchanges, "P-256,P-384,P-521");
        assert_eq!(Offer::default().ciphers, "AES-256,AES-128");
        assert_eq!(Offer::default().hashes, "SHA256,SHA512");
        assert_eq!(
            KeyExchange::parse_list("P-384,P-256").unwrap(),
            [KeyExchange::P384, KeyExchange::P256]
        );
        assert!(matches!(
            Cipher::parse_list(""),
            Err(SecioError::InvalidConfig(_))
        ));
        assert!(matches!(
            Digest::parse_list("SHA256,SHA3"),
            Err(SecioError::InvalidConfig(_))
        ));
        // An empty offer of ours selects nothing, whoever wins.
        let empty = Offer {
            exchanges: String::new(),
            ..Offer::default()
        };
        for order in [Ordering::Greater, Ordering::Less] {
            assert!(matches!(
                select(order, &empty, "P-256", "AES-128", "SHA256"),
                Err(SecioError::NoCommonAlgorithm("key exchange"))
            ));
        }
    }
}
