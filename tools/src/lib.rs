//! Pieces shared by the tool programs: deterministic keys and the node logic of the
//! `peer` program (serve echo, ping, identify and perf; dial and check).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod gossip;
pub mod kad;
pub mod mdns;
pub mod node;

/// The services the `peer` program adds to its host, by option.
#[derive(Debug, Default)]
pub struct Services {
    /// `--kad` and the options that imply it.
    pub kad: Option<libp2p_kad::KadService>,
    /// `--mdns`.
    pub mdns: Option<libp2p_mdns::MdnsService>,
}

impl Services {
    /// Adds them to `builder`.
    pub fn add_to(self, mut builder: libp2p_host::HostBuilder) -> libp2p_host::HostBuilder {
        if let Some(kad) = self.kad {
            builder = builder.service(kad);
        }
        if let Some(mdns) = self.mdns {
            builder = builder.service(mdns);
        }
        builder
    }
}

use libp2p_core::identity::{self, Keypair};

/// The log filter of our programs: `RUST_LOG` when set, else `warn`. The `yamux` crate logs one line per bad frame a remote sends (at error
/// level); those stay out unless `RUST_LOG` asks for them, so a misbehaving peer cannot
/// flood our log.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,yamux=off"))
}

/// The key types the `peer` program takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// Ed25519 (the default).
    Ed25519,
    /// RSA (one fixed test key).
    Rsa,
    /// secp256k1.
    Secp256k1,
    /// ECDSA on P-256.
    Ecdsa,
}

impl std::str::FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ed25519" => KeyType::Ed25519,
            "rsa" => KeyType::Rsa,
            "secp256k1" => KeyType::Secp256k1,
            "ecdsa" => KeyType::Ecdsa,
            other => return Err(format!("unknown key type {other}")),
        })
    }
}

/// The 32 secret bytes for seed `n`: `n` little-endian in the first 8 bytes, the rest zero
/// (the same rule the foreign test peers use, so a seed names the same identity everywhere).
fn seed_bytes(n: u64) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

/// A key of the given type: deterministic from `seed` when given, random otherwise.
/// For secp256k1 and ECDSA a seed of 0 (not a valid scalar) becomes 1.
pub fn make_key(kind: KeyType, seed: Option<u64>) -> Result<Keypair, String> {
    let bytes = seed.map(|n| seed_bytes(n.max(1)));
    let ed_bytes = seed.map(seed_bytes);
    let err = |e: &dyn std::fmt::Display| format!("cannot make key: {e}");
    match (kind, bytes) {
        (KeyType::Ed25519, None) => Ok(Keypair::generate_ed25519()),
        (KeyType::Ed25519, Some(_)) => {
            Keypair::ed25519_from_bytes(ed_bytes.expect("seeded")).map_err(|e| err(&e))
        }
        (KeyType::Secp256k1, None) => Ok(Keypair::generate_secp256k1()),
        (KeyType::Secp256k1, Some(b)) => {
            let secret = identity::secp256k1::SecretKey::try_from_bytes(b).map_err(|e| err(&e))?;
            Ok(identity::secp256k1::Keypair::from(secret).into())
        }
        (KeyType::Ecdsa, None) => Ok(Keypair::generate_ecdsa()),
        (KeyType::Ecdsa, Some(b)) => {
            let secret = identity::ecdsa::SecretKey::try_from_bytes(b).map_err(|e| err(&e))?;
            Ok(identity::ecdsa::Keypair::from(secret).into())
        }
        (KeyType::Rsa, _) => {
            // libp2p-identity cannot generate RSA keys: `--key rsa` is the workspace's test key.
            let mut der = libp2p_core::testkit::RSA_TEST_KEY_PKCS8.to_vec();
            Keypair::rsa_from_pkcs8(&mut der).map_err(|e| err(&e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_keys_are_deterministic_for_every_type() {
        for kind in [
            KeyType::Ed25519,
            KeyType::Rsa,
            KeyType::Secp256k1,
            KeyType::Ecdsa,
        ] {
            let a = make_key(kind, Some(7)).unwrap();
            let b = make_key(kind, Some(7)).unwrap();
            assert_eq!(a.public(), b.public(), "{kind:?}");
        }
        let a = make_key(KeyType::Ed25519, Some(1)).unwrap();
        let b = make_key(KeyType::Ed25519, Some(2)).unwrap();
        assert_ne!(a.public(), b.public());
    }
}
