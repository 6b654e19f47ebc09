//! Records and provider records: the [`RecordStore`] trait, a bounded [`MemoryStore`], and the
//! [`RecordValidator`] hook that PUT_VALUE and GET_VALUE go through.
//!
//! The store keeps the bookkeeping for expiry (every entry may carry an `expires` instant) and
//! for republishing (entries we published ourselves carry the instant they are next due); the
//! node asks it which entries are due and republishes them.

use std::collections::HashMap;
use std::time::Instant;

use libp2p_core::{Multiaddr, PeerId};

use crate::error::{RecordRejected, StoreError};

/// A record: a value under a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Who published it, when known (ourselves for records we put; `None` for records
    /// received, as the wire format does not carry the publisher).
    pub publisher: Option<PeerId>,
    /// When it expires; `None` for never.
    pub expires: Option<Instant>,
}

impl Record {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
}

/// A provider of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRecord {
    /// The key provided (commonly a multihash).
    pub key: Vec<u8>,
    /// The provider.
    pub provider: PeerId,
    /// Its addresses, as it announced them (empty for ourselves: our listen addresses are
    /// filled in when answering).
    pub addrs: Vec<Multiaddr>,
    /// When it expires; `None` for never.
    pub expires: Option<Instant>,
}

impl ProviderRecord {
    fn is_expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
}

/// An entry due for republishing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Due {
    /// A record we published, under this key.
    Record(Vec<u8>),
    /// A key we provide.
    Provider(Vec<u8>),
}

/// Where records and provider records live. The node owns one; a disk-backed store can
/// implement the same trait.
pub trait RecordStore {
    /// The record under `key`, unless absent or expired at `now`.
    fn get(&self, key: &[u8], now: Instant) -> Option<Record>;
    /// Stores `record`, replacing any under the same key; `republish_at` is when it is next
    /// due for republishing (`Some` only for records we publish ourselves).
    fn put(&mut self, record: Record, republish_at: Option<Instant>) -> Result<(), StoreError>;
    /// Removes the record under `key`.
    fn remove(&mut self, key: &[u8]);
    /// Adds or refreshes a provider of a key; `republish_at` as for [`put`](RecordStore::put)
    /// (`Some` only when we are the provider).
    fn add_provider(
        &mut self,
        record: ProviderRecord,
        republish_at: Option<Instant>,
    ) -> Result<(), StoreError>;
    /// The providers of `key` that have not expired at `now`.
    fn providers(&self, key: &[u8], now: Instant) -> Vec<ProviderRecord>;
    /// Removes `provider` from the providers of `key`.
    fn remove_provider(&mut self, key: &[u8], provider: &PeerId);
    /// Drops every entry expired at `now`; returns how many.
    fn expire(&mut self, now: Instant) -> usize;
    /// Up to `max` entries due for republishing at `now`.
    fn due(&self, now: Instant, max: usize) -> Vec<Due>;
    /// Records that `due` was republished and is next due at `next`.
    fn set_republished(&mut self, due: &Due, next: Instant);
}

/// Checks records before they are stored (PUT_VALUE, ours and others') and picks the best of
/// several values found for one key (GET_VALUE).
pub trait RecordValidator {
    /// Whether `value` is a valid record for `key` (a signature, a namespace, an expiry
    /// inside the value...).
    fn validate(&self, key: &[u8], value: &[u8]) -> Result<(), RecordRejected>;
    /// The index of the best of `values` (all valid) for `key`; decisions must be stable.
    /// The default keeps the first.
    fn select(&self, key: &[u8], values: &[&[u8]]) -> usize {
        let _ = (key, values);
        0
    }
}

/// A validator that accepts every record and keeps the first value found.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcceptAll;

impl RecordValidator for AcceptAll {
    fn validate(&self, _key: &[u8], _value: &[u8]) -> Result<(), RecordRejected> {
        Ok(())
    }
}

impl<F> RecordValidator for F
where
    F: Fn(&[u8], &[u8]) -> Result<(), RecordRejected>,
{
    fn validate(&self, key: &[u8], value: &[u8]) -> Result<(), RecordRejected> {
        self(key, value)
    }
}

/// The limits of a [`MemoryStore`].
#[derive(Clone, Debug)]
pub struct MemoryStoreConfig {
    /// Records held at most. Default 1,024, rust-libp2p's value.
    pub max_records: usize,
    /// The largest value of one record, in bytes. Default 14 KiB: a record must fit in one
    /// message of the default 16 KiB, with its key and twenty closer peers beside it.
    pub max_value_bytes: usize,
    /// The largest key, in bytes, of a record or provider record. Default 1 KiB: keys are
    /// multihashes or short namespaced names (`/ipns/<id>` is under 50 bytes).
    pub max_key_bytes: usize,
    /// The bytes of all records' keys and values together. Default 8 MiB: the memory a DHT
    /// server gives strangers' records, under the 14 MiB that `max_records` full-size records
    /// would need.
    pub max_total_bytes: usize,
    /// Keys for which providers are held at most. Default 4,096: a provider record is small
    /// (a key, a peer id, a few addresses), and provider keys outnumber records by far.
    pub max_provider_keys: usize,
    /// Providers held per key. Default 20 (`k`, rust-libp2p's value): a lookup wants a few
    /// providers, not all of them. A full key takes no more providers from others; our own
    /// provider record always gets in, in place of another.
    pub max_providers_per_key: usize,
}

impl Default for MemoryStoreConfig {
    fn default() -> Self {
        MemoryStoreConfig {
            max_records: 1024,
            max_value_bytes: 14 * 1024,
            max_key_bytes: 1024,
            max_total_bytes: 8 << 20,
            max_provider_keys: 4096,
            max_providers_per_key: 20,
        }
    }
}

/// A [`RecordStore`] in memory, bounded by a [`MemoryStoreConfig`].
#[derive(Clone, Debug)]
pub struct MemoryStore {
    local: PeerId,
    config: MemoryStoreConfig,
    records: HashMap<Vec<u8>, (Record, Option<Instant>)>,
    total_bytes: usize,
    providers: HashMap<Vec<u8>, Vec<ProviderRecord>>,
    /// Keys we provide ourselves, with their next republish time.
    provided: HashMap<Vec<u8>, Instant>,
}

impl MemoryStore {
    /// An empty store for the node `local` (its own provider records are treated apart).
    pub fn new(local: PeerId, config: MemoryStoreConfig) -> MemoryStore {
        MemoryStore {
            local,
            config,
            records: HashMap::new(),
            total_bytes: 0,
            providers: HashMap::new(),
            provided: HashMap::new(),
        }
    }

    /// The number of records held.
    pub fn num_records(&self) -> usize {
        self.records.len()
    }

    /// The bytes of all records' keys and values.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// The number of keys with providers.
    pub fn num_provider_keys(&self) -> usize {
        self.providers.len()
    }

    fn check_key(&self, key: &[u8]) -> Result<(), StoreError> {
        if key.len() > self.config.max_key_bytes {
            return Err(StoreError::KeyTooLarge {
                len: key.len(),
                max: self.config.max_key_bytes,
            });
        }
        Ok(())
    }
}

impl RecordStore for MemoryStore {
    fn get(&self, key: &[u8], now: Instant) -> Option<Record> {
        let (r, _) = self.records.get(key)?;
        (!r.is_expired(now)).then(|| r.clone())
    }

    fn put(&mut self, record: Record, republish_at: Option<Instant>) -> Result<(), StoreError> {
        self.check_key(&record.key)?;
        if record.value.len() > self.config.max_value_bytes {
            return Err(StoreError::ValueTooLarge {
                len: record.value.len(),
                max: self.config.max_value_bytes,
            });
        }
        let size = record.key.len() + record.value.len();
        let old = self
            .records
            .get(&record.key)
            .map_or(0, |(r, _)| r.key.len() + r.value.len());
        if old == 0 && self.records.len() >= self.config.max_records {
            return Err(StoreError::MaxRecords {
                max: self.config.max_records,
            });
        }
        if self.total_bytes - old + size > self.config.max_total_bytes {
            return Err(StoreError::MaxTotalBytes {
                max: self.config.max_total_bytes,
            });
        }
        self.total_bytes = self.total_bytes - old + size;
        self.records
            .insert(record.key.clone(), (record, republish_at));
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some((r, _)) = self.records.remove(key) {
            self.total_bytes -= r.key.len() + r.value.len();
        }
    }

    fn add_provider(
        &mut self,
        record: ProviderRecord,
        republish_at: Option<Instant>,
    ) -> Result<(), StoreError> {
        self.check_key(&record.key)?;
        let local = record.provider == self.local;
        if !self.providers.contains_key(&record.key)
            && self.providers.len() >= self.config.max_provider_keys
        {
            return Err(StoreError::MaxProviderKeys {
                max: self.config.max_provider_keys,
            });
        }
        let max_per_key = self.config.max_providers_per_key.max(1);
        let key = record.key.clone();
        let list = self.providers.entry(key.clone()).or_default();
        if let Some(existing) = list.iter_mut().find(|p| p.provider == record.provider) {
            *existing = record;
        } else if list.len() < max_per_key {
            list.push(record);
        } else if local {
            // Our own record displaces the last-added foreign one.
            if let Some(pos) = list.iter().rposition(|p| p.provider != self.local) {
                list[pos] = record;
            }
        }
        // A full key quietly takes no more foreign providers: the announcer is not at fault.
        if local {
            if let Some(at) = republish_at {
                self.provided.insert(key, at);
            }
        }
        Ok(())
    }

    fn providers(&self, key: &[u8], now: Instant) -> Vec<ProviderRecord> {
        self.providers
            .get(key)
            .map(|l| l.iter().filter(|p| !p.is_expired(now)).cloned().collect())
            .unwrap_or_default()
    }

    fn remove_provider(&mut self, key: &[u8], provider: &PeerId) {
        if let Some(list) = self.providers.get_mut(key) {
            list.retain(|p| p.provider != *provider);
            if list.is_empty() {
                self.providers.remove(key);
            }
        }
        if *provider == self.local {
            self.provided.remove(key);
        }
    }

    fn expire(&mut self, now: Instant) -> usize {
        let mut removed = 0;
        let before = self.records.len();
        let mut freed = 0;
        self.records.retain(|_, (r, _)| {
            let keep = !r.is_expired(now);
            if !keep {
                freed += r.key.len() + r.value.len();
            }
            keep
        });
        self.total_bytes -= freed;
        removed += before - self.records.len();
        let local = self.local;
        let provided = &mut self.provided;
        self.providers.retain(|key, list| {
            let before = list.len();
            list.retain(|p| {
                let keep = !p.is_expired(now);
                if !keep && p.provider == local {
                    provided.remove(key);
                }
                keep
            });
            removed += before - list.len();
            !list.is_empty()
        });
        removed
    }

    fn due(&self, now: Instant, max: usize) -> Vec<Due> {
        let records = self
            .records
            .iter()
            .filter(|(_, (_, at))| at.is_some_and(|t| t <= now))
            .map(|(k, _)| Due::Record(k.clone()));
        let provided = self
            .provided
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| Due::Provider(k.clone()));
        records.chain(provided).take(max).collect()
    }

    fn set_republished(&mut self, due: &Due, next: Instant) {
        match due {
            Due::Record(key) => {
                if let Some((_, at)) = self.records.get_mut(key) {
                    *at = Some(next);
                }
            }
            Due::Provider(key) => {
                if let Some(at) = self.provided.get_mut(key) {
                    *at = next;
                }
            }
        }
    }
}
