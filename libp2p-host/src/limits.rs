//! Per-source limits on inbound connections: how many may be in their upgrade at once from
//! one IP, and how many one IP may open per second. A plain table with the clock passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libp2p_core::{ConnectionRefusedReason, Multiaddr, Protocol};

use crate::config::{MAX_RATE_SOURCES, RATE_WINDOW};

/// The source IP of a remote address, when it has one (memory transports do not).
pub(crate) fn source_ip(addr: &Multiaddr) -> Option<IpAddr> {
    match addr.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

#[derive(Debug, Default)]
struct Table {
    /// Upgrades in progress per source; an entry goes when its count reaches zero, so there
    /// are at most `max_pending_incoming` entries (the host-wide limit, checked first).
    pending: HashMap<IpAddr, usize>,
    /// Connections opened per source in the current window: (window start, count).
    rate: HashMap<IpAddr, (Instant, u32)>,
    /// When `rate` was last swept of windows that have ended.
    swept: Option<Instant>,
}

/// The per-source limits of one host.
#[derive(Debug)]
pub(crate) struct SourceLimits {
    max_pending: usize,
    max_per_second: u32,
    table: Arc<Mutex<Table>>,
}

/// A connection's place in the per-source pending count; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct PendingSlot {
    ip: IpAddr,
    table: Arc<Mutex<Table>>,
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut table = self.table.lock().expect("lock");
        if let Some(n) = table.pending.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.pending.remove(&self.ip);
            }
        }
    }
}

impl SourceLimits {
    /// Limits of `max_pending` upgrades at once and `max_per_second` new connections per
    /// source IP.
    pub(crate) fn new(max_pending: usize, max_per_second: u32) -> Self {
        SourceLimits {
            max_pending,
            max_per_second,
            table: Arc::default(),
        }
    }

    /// Admits a new inbound connection from `ip` at `now`, or says which limit refuses it.
    /// A refused connection does not count against the rate (a flood of refused attempts
    /// must not keep the source's window full for ever: the window ends a second after it
    /// began in any case).
    pub(crate) fn admit(
        &self,
        ip: IpAddr,
        now: Instant,
    ) -> Result<PendingSlot, ConnectionRefusedReason> {
        let mut table = self.table.lock().expect("lock");
        if table
            .swept
            .is_none_or(|at| now.saturating_duration_since(at) >= RATE_WINDOW)
        {
            table
                .rate
                .retain(|_, (start, _)| now.saturating_duration_since(*start) < RATE_WINDOW);
            table.swept = Some(now);
        }
        if table.pending.get(&ip).copied().unwrap_or(0) >= self.max_pending {
            return Err(ConnectionRefusedReason::PendingPerIp {
                limit: self.max_pending,
            });
        }
        let full = table.rate.len() >= MAX_RATE_SOURCES;
        match table.rate.get_mut(&ip) {
            Some((start, count)) if now.saturating_duration_since(*start) < RATE_WINDOW => {
                if *count >= self.max_per_second {
                    return Err(ConnectionRefusedReason::RatePerIp {
                        limit: self.max_per_second,
                    });
                }
                *count += 1;
            }
            Some(entry) => *entry = (now, 1),
            None if self.max_per_second == 0 => {
                return Err(ConnectionRefusedReason::RatePerIp { limit: 0 });
            }
            None if full => {}
            None => {
                table.rate.insert(ip, (now, 1));
            }
        }
        *table.pending.entry(ip).or_insert(0) += 1;
        Ok(PendingSlot {
            ip,
            table: self.table.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn pending_per_source_is_capped_and_freed() {
        let limits = SourceLimits::new(2, 100);
        let now = Instant::now();
        let a = limits.admit(ip(2), now).unwrap();
        let _b = limits.admit(ip(2), now).unwrap();
        assert_eq!(
            limits.admit(ip(2), now).unwrap_err(),
            ConnectionRefusedReason::PendingPerIp { limit: 2 }
        );
        // Another source is not affected.
        let _c = limits.admit(ip(1), now).unwrap();
        drop(a);
        let _d = limits.admit(ip(2), now).unwrap();
    }

    #[test]
    fn rate_per_source_resets_after_a_second() {
        let limits = SourceLimits::new(100, 3);
        let start = Instant::now();
        for _ in 0..3 {
            drop(limits.admit(ip(2), start).unwrap());
        }
        let later = start + Duration::from_millis(900);
        assert_eq!(
            limits.admit(ip(2), later).unwrap_err(),
            ConnectionRefusedReason::RatePerIp { limit: 3 }
        );
        drop(limits.admit(ip(1), later).unwrap());
        let next = start + Duration::from_millis(1_000);
        drop(limits.admit(ip(2), next).unwrap());
        // The sweep drops ended windows.
        let much_later = start + Duration::from_secs(5);
        drop(limits.admit(ip(3), much_later).unwrap());
        assert_eq!(limits.table.lock().unwrap().rate.len(), 1);
        assert!(limits.table.lock().unwrap().pending.is_empty());
    }

    #[test]
    fn only_ip_addresses_have_a_source() {
        assert_eq!(
            source_ip(&"/ip4/127.0.0.2/tcp/1".parse().unwrap()),
            Some(ip(2))
        );
        assert_eq!(source_ip(&"/memory/5".parse().unwrap()), None);
    }
}
