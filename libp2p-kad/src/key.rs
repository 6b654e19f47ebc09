//! Keys in the Kademlia key space and the XOR distance between them.
//!
//! Every key, whether a peer id or a record or provider key, is placed in the key space by the
//! sha2-256 of its bytes; the distance between two keys is the XOR of their hashes, compared as
//! a 256-bit big-endian number.

use libp2p_core::PeerId;
use sha2::{Digest, Sha256};

/// The sha2-256 multihash of `data` (`0x12 0x20 || sha256(data)`): the DHT key a content
/// identifier of `data` is provided under (a CID's multihash).
pub fn sha256_multihash(data: &[u8]) -> Vec<u8> {
    let mut mh = vec![0x12, 0x20];
    mh.extend_from_slice(&Sha256::digest(data));
    mh
}

/// A key: its original bytes (what goes on the wire) and its place in the key space.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    preimage: Vec<u8>,
    hash: [u8; 32],
}

impl Key {
    /// The key of arbitrary bytes (a record key, a provider key such as a multihash).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Key {
        let preimage = bytes.into();
        let hash = Sha256::digest(&preimage).into();
        Key { preimage, hash }
    }

    /// The key of a peer: its id's bytes, hashed like any other key.
    pub fn from_peer(peer: &PeerId) -> Key {
        Key::new(peer.to_bytes())
    }

    /// The bytes the key was made from.
    pub fn preimage(&self) -> &[u8] {
        &self.preimage
    }

    /// The key's place in the key space: the sha2-256 of its bytes.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }

    /// The XOR distance to another key.
    pub fn distance(&self, other: &Key) -> Distance {
        Distance::between(&self.hash, &other.hash)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key(")?;
        for b in &self.hash[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "..)")
    }
}

impl From<PeerId> for Key {
    fn from(peer: PeerId) -> Key {
        Key::from_peer(&peer)
    }
}

impl From<&PeerId> for Key {
    fn from(peer: &PeerId) -> Key {
        Key::from_peer(peer)
    }
}

/// The XOR of two key hashes, ordered as a big-endian 256-bit number (smaller is closer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    /// The distance between two key hashes.
    pub fn between(a: &[u8; 32], b: &[u8; 32]) -> Distance {
        let mut d = [0u8; 32];
        for (i, out) in d.iter_mut().enumerate() {
            *out = a[i] ^ b[i];
        }
        Distance(d)
    }

    /// The index of the k-bucket a key at this distance from us belongs to: 255 minus the
    /// length of the prefix the two keys share, so bucket 255 holds the farthest half of the
    /// key space and bucket 0 the single closest key. `None` for distance zero (our own key).
    pub fn bucket_index(&self) -> Option<usize> {
        let mut zeros = 0usize;
        for b in &self.0 {
            if *b == 0 {
                zeros += 8;
            } else {
                zeros += b.leading_zeros() as usize;
                return Some(255 - zeros);
            }
        }
        None
    }
}

impl std::fmt::Debug for Distance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.bucket_index() {
            Some(i) => write!(f, "Distance(~2^{i})"),
            None => write!(f, "Distance(0)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_is_xor_of_hashes_and_orders_big_endian() {
        let a = Key::new(b"a".to_vec());
        let b = Key::new(b"b".to_vec());
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a), Distance::default());
        assert_eq!(a.distance(&a).bucket_index(), None);
        // sha256("a") = ca978112..., known vector.
        assert_eq!(&a.hash()[..4], &[0xca, 0x97, 0x81, 0x12]);
        let mut near = [0u8; 32];
        near[31] = 1;
        let mut far = [0u8; 32];
        far[0] = 0x80;
        assert!(Distance(near) < Distance(far));
        assert_eq!(Distance(near).bucket_index(), Some(0));
        assert_eq!(Distance(far).bucket_index(), Some(255));
        let mut mid = [0u8; 32];
        mid[1] = 0x10;
        assert_eq!(Distance(mid).bucket_index(), Some(255 - 11));
    }
}
