//! The connection manager: keeps the number of established connections between two
//! watermarks, protects the peers services ask it to, and closes connections that stay
//! idle. A plain table with the clock passed in; the host feeds it snapshots of its pool and
//! closes what it picks.
//!
//! The rule for trimming: when more than [`high_watermark`] connections are established,
//! close connections until [`low_watermark`] remain, choosing only among connections that
//! are past their [`grace_period`] and whose peer is not protected. The least valuable go
//! first: fewest open streams; among equals, the one that became idle longest ago (a
//! connection becomes idle when its last stream ends, or when it is established); among
//! equals again, the oldest. Trims run at most once per [`silence_period`].
//!
//! [`high_watermark`]: ConnectionManagerConfig::high_watermark
//! [`low_watermark`]: ConnectionManagerConfig::low_watermark
//! [`grace_period`]: ConnectionManagerConfig::grace_period
//! [`silence_period`]: ConnectionManagerConfig::silence_period

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p_core::duration::{opt_secs, secs};
use libp2p_core::{ConnectionId, PeerId};
use serde::{Deserialize, Serialize};

/// Settings of the connection manager (`Config::connection_manager`). The shape is
/// go-libp2p's basic connection manager: watermarks, a grace period for new connections and
/// a silence period between trims; plus an idle timeout (off by default) and a bound on dials
/// in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ConnectionManagerConfig {
    /// How many connections a trim leaves. Default 160: a trim frees room for a burst of 32
    /// new connections before the high watermark is crossed again, so trims stay rare. (At
    /// or above `high_watermark`, trims begin only above it and go down to it.)
    pub low_watermark: usize,
    /// Established connections above which a trim begins. Default 192, three quarters of the
    /// default `max_connections` (256): the host trims before it starts refusing, so a new
    /// peer can still connect while old, unused connections make way. A value at or above
    /// `max_connections` turns trimming off in effect.
    pub high_watermark: usize,
    /// How long a new connection is safe from trimming. Default 20 s (go-libp2p's and Kubo's
    /// figure): long enough for identify and a service's first exchange, so a connection is
    /// not trimmed before it could show any use.
    #[serde(with = "secs")]
    pub grace_period: Duration,
    /// The shortest time between two trims, and how often the manager looks again when a
    /// trim could not reach the low watermark (connections still in their grace period).
    /// Default 10 s, go-libp2p's figure: a flood of connections costs one trim per period,
    /// not one per connection.
    #[serde(with = "secs")]
    pub silence_period: Duration,
    /// Close a connection that has had no stream open for this long (its peer unprotected),
    /// or `null` for never. Default never, as go-libp2p: identify and ping open no lasting
    /// stream, so a timeout would close connections that services (Kademlia, gossipsub
    /// between messages) still count on; rust-libp2p closes a connection once nothing keeps
    /// it alive, which suits apps whose protocols all hold streams. Checked every
    /// `silence_period` (or a quarter of the timeout, if shorter), so a connection may live
    /// up to that much longer.
    #[serde(with = "opt_secs")]
    pub idle_timeout: Option<Duration>,
    /// Most outbound connections in their upgrade at once (dials in progress, all
    /// transports); a further dial fails at once with `DialError::PendingLimit`. Default 128,
    /// the same as `max_pending_incoming`: each costs a socket and a handshake for at most the
    /// handshake timeout, and a burst of dials by services (a Kademlia lookup dials tens)
    /// fits easily.
    pub max_pending_outgoing: usize,
}

impl Default for ConnectionManagerConfig {
    fn default() -> Self {
        ConnectionManagerConfig {
            low_watermark: 160,
            high_watermark: 192,
            grace_period: Duration::from_secs(20),
            silence_period: Duration::from_secs(10),
            idle_timeout: None,
            max_pending_outgoing: 128,
        }
    }
}

impl ConnectionManagerConfig {
    /// How often the host's manager task looks at the pool.
    pub(crate) fn tick(&self) -> Duration {
        let mut tick = self.silence_period;
        if let Some(idle) = self.idle_timeout {
            tick = tick.min(idle / 4);
        }
        tick.max(Duration::from_millis(10))
    }
}

/// How busy one connection is: its open streams (both directions), and since when it has
/// had none. Shared by the connection and its streams' guards.
#[derive(Debug)]
pub(crate) struct Activity {
    streams: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl Activity {
    pub(crate) fn new(now: Instant) -> Arc<Self> {
        Arc::new(Activity {
            streams: AtomicUsize::new(0),
            idle_since: Mutex::new(now),
        })
    }

    /// Counts one more open stream until the guard is dropped.
    pub(crate) fn stream(self: &Arc<Self>) -> ActivityGuard {
        self.streams.fetch_add(1, Ordering::SeqCst);
        ActivityGuard(self.clone())
    }

    /// Open streams now.
    pub(crate) fn streams(&self) -> usize {
        self.streams.load(Ordering::SeqCst)
    }

    /// When the last stream ended (or the connection began).
    pub(crate) fn idle_since(&self) -> Instant {
        *self.idle_since.lock().expect("lock")
    }
}

/// One open stream in its connection's [`Activity`].
#[derive(Debug)]
pub(crate) struct ActivityGuard(Arc<Activity>);

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        // Hold the lock across the count, so a snapshot never sees zero streams with an
        // older idle time.
        let mut since = self.0.idle_since.lock().expect("lock");
        if self.0.streams.fetch_sub(1, Ordering::SeqCst) == 1 {
            *since = Instant::now();
        }
    }
}

/// What the manager knows of one established connection.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) id: ConnectionId,
    pub(crate) peer: PeerId,
    pub(crate) opened_at: Instant,
    pub(crate) streams: usize,
    pub(crate) idle_since: Instant,
}

/// The connection manager of one host: protection tags and the time of the last trim.
#[derive(Debug)]
pub(crate) struct ConnManager {
    config: ConnectionManagerConfig,
    /// Protection tags per peer. Only the application and its services write it (never a
    /// remote), so its size is theirs to bound; a peer's entry goes with its last tag.
    protected: Mutex<HashMap<PeerId, HashSet<String>>>,
    last_trim: Mutex<Option<Instant>>,
}

impl ConnManager {
    pub(crate) fn new(config: ConnectionManagerConfig) -> Self {
        ConnManager {
            config,
            protected: Mutex::default(),
            last_trim: Mutex::default(),
        }
    }

    pub(crate) fn config(&self) -> &ConnectionManagerConfig {
        &self.config
    }

    pub(crate) fn protect(&self, peer: PeerId, tag: &str) {
        self.protected
            .lock()
            .expect("lock")
            .entry(peer)
            .or_default()
            .insert(tag.to_string());
    }

    /// Removes `tag`; whether `peer` is still protected.
    pub(crate) fn unprotect(&self, peer: PeerId, tag: &str) -> bool {
        let mut table = self.protected.lock().expect("lock");
        let Some(tags) = table.get_mut(&peer) else {
            return false;
        };
        tags.remove(tag);
        if tags.is_empty() {
            table.remove(&peer);
            false
        } else {
            true
        }
    }

    pub(crate) fn is_protected(&self, peer: &PeerId) -> bool {
        self.protected.lock().expect("lock").contains_key(peer)
    }

    /// Whether the pool is over the high watermark.
    fn over(&self, established: usize) -> bool {
        established > self.config.high_watermark
    }

    /// Whether a trim at `now` would run: the pool is over the high watermark and the last
    /// trim was at least the silence period ago. The host asks this, which costs two
    /// comparisons, on every new connection, and lists the pool for [`trim`](Self::trim)
    /// only when it holds: above the high watermark, within the silence period, every new
    /// connection would otherwise list the whole pool for nothing.
    pub(crate) fn due(&self, established: usize, now: Instant) -> bool {
        self.over(established)
            && self
                .last_trim
                .lock()
                .expect("lock")
                .is_none_or(|at| now.saturating_duration_since(at) >= self.config.silence_period)
    }

    /// The connections a trim at `now` closes, least valuable first (see the module
    /// documentation for the rule); none when the pool is within the high watermark or the
    /// last trim was less than the silence period ago.
    pub(crate) fn trim(&self, candidates: &[Candidate], now: Instant) -> Vec<ConnectionId> {
        if !self.over(candidates.len()) {
            return Vec::new();
        }
        {
            let mut last = self.last_trim.lock().expect("lock");
            if last.is_some_and(|at| now.saturating_duration_since(at) < self.config.silence_period)
            {
                return Vec::new();
            }
            *last = Some(now);
        }
        let excess = candidates.len() - self.config.low_watermark.min(candidates.len());
        let protected = self.protected.lock().expect("lock");
        let mut eligible: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| now.saturating_duration_since(c.opened_at) >= self.config.grace_period)
            .filter(|c| !protected.contains_key(&c.peer))
            .collect();
        eligible.sort_by_key(|c| (c.streams, c.idle_since, c.opened_at));
        eligible.iter().take(excess).map(|c| c.id).collect()
    }

    /// The connections the idle timeout closes at `now`: no stream for the timeout, peer
    /// unprotected.
    pub(crate) fn idle(&self, candidates: &[Candidate], now: Instant) -> Vec<ConnectionId> {
        let Some(timeout) = self.config.idle_timeout else {
            return Vec::new();
        };
        let protected = self.protected.lock().expect("lock");
        candidates
            .iter()
            .filter(|c| c.streams == 0)
            .filter(|c| now.saturating_duration_since(c.idle_since) >= timeout)
            .filter(|c| !protected.contains_key(&c.peer))
            .map(|c| c.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ConnectionManagerConfig {
        ConnectionManagerConfig {
            low_watermark: 2,
            high_watermark: 3,
            grace_period: Duration::from_secs(10),
            silence_period: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(30)),
            max_pending_outgoing: 4,
        }
    }

    fn candidate(id: u64, opened: Instant, streams: usize, idle_since: Instant) -> Candidate {
        Candidate {
            id: ConnectionId::new(id),
            peer: PeerId::random(),
            opened_at: opened,
            streams,
            idle_since,
        }
    }

    #[test]
    fn trims_least_valuable_to_low_and_keeps_protected_and_young() {
        let manager = ConnManager::new(config());
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(100);
        let list = vec![
            candidate(1, t0, 2, t0),                           // busy
            candidate(2, t0, 0, t0 + Duration::from_secs(50)), // idle since 50
            candidate(3, t0, 0, t0 + Duration::from_secs(10)), // idle since 10: first
            candidate(4, t0, 0, t0),                           // protected
            candidate(5, now, 0, now),                         // in its grace period
        ];
        manager.protect(list[3].peer, "kad");
        assert!(manager.due(list.len(), now));
        let ids = manager.trim(&list, now);
        assert_eq!(
            ids,
            vec![
                ConnectionId::new(3),
                ConnectionId::new(2),
                ConnectionId::new(1)
            ]
        );
        // The silence period holds off the next trim.
        assert!(!manager.due(list.len(), now + Duration::from_secs(1)));
        assert!(manager.trim(&list, now + Duration::from_secs(1)).is_empty());
        assert!(manager.due(list.len(), now + Duration::from_secs(5)));
        assert_eq!(manager.trim(&list, now + Duration::from_secs(5)).len(), 3);
        // Within the high watermark: nothing.
        assert!(!manager.due(3, now + Duration::from_secs(60)));
        assert!(manager
            .trim(&list[..3], now + Duration::from_secs(60))
            .is_empty());
    }

    #[test]
    fn protection_tags_are_counted() {
        let manager = ConnManager::new(config());
        let peer = PeerId::random();
        manager.protect(peer, "kad");
        manager.protect(peer, "gossipsub");
        assert!(manager.unprotect(peer, "kad"));
        assert!(manager.is_protected(&peer));
        assert!(!manager.unprotect(peer, "gossipsub"));
        assert!(!manager.is_protected(&peer));
        assert!(!manager.unprotect(peer, "gossipsub"));
        assert!(manager.protected.lock().unwrap().is_empty());
    }

    #[test]
    fn idle_needs_no_stream_for_the_timeout() {
        let manager = ConnManager::new(config());
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(31);
        let list = vec![
            candidate(1, t0, 0, t0),
            candidate(2, t0, 1, t0),
            candidate(3, t0, 0, t0 + Duration::from_secs(2)),
        ];
        assert_eq!(manager.idle(&list, now), vec![ConnectionId::new(1)]);
        manager.protect(list[0].peer, "app");
        assert!(manager.idle(&list, now).is_empty());
        let off = ConnManager::new(ConnectionManagerConfig::default());
        assert!(off.idle(&list, now + Duration::from_secs(3600)).is_empty());
    }

    #[test]
    fn activity_counts_streams_and_idle_time() {
        let t0 = Instant::now();
        let activity = Activity::new(t0);
        let a = activity.stream();
        let b = activity.stream();
        assert_eq!(activity.streams(), 2);
        drop(a);
        assert_eq!(activity.idle_since(), t0);
        drop(b);
        assert_eq!(activity.streams(), 0);
        assert!(activity.idle_since() >= t0);
    }
}
