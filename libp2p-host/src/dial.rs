//! Ranked, concurrent dialing.
//!
//! A peer often has several addresses: loopback, private and public, IPv4 and IPv6, QUIC and
//! TCP. Trying them one after another costs a whole timeout for each dead one; trying all at
//! once costs a handshake for each live one. The dialer takes the middle road that go-libp2p
//! takes: [`rank`] (a pure function) turns the addresses into a schedule of start delays,
//! and the race runs that schedule, keeps the first connection made and drops the attempts
//! still running. Addresses that failed are left alone for a while ([`Backoff`]).
//!
//! The ranking, per group of addresses (loopback, private, public, others; the groups start
//! side by side, at once):
//! - QUIC before TCP: QUIC addresses start first, the first at once; when the group holds
//!   QUIC addresses of both IP families, the first of the other family follows one step
//!   later and the rest one step after that (Happy Eyeballs, RFC 8305), else the rest follow
//!   one step later.
//! - TCP addresses (then WebSocket ones) follow the same pattern, starting one step after
//!   the last QUIC attempt of the group (at once when it has none).
//! - IPv6 before IPv4, lower ports before higher ones (listen ports tend to be low; ephemeral
//!   ports seen by others are high).
//! - The step is the group's delay of [`DialConfig`]: loopback, private or public.
//!
//! The race starts each attempt at its time, at most `max_parallel` at once; when an attempt
//! fails and nothing else is in flight, the next one starts at once (its successors keep their
//! spacing behind it), since waiting could only delay the dial.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use libp2p_core::{Multiaddr, Protocol, TransportError};

use crate::config::DialConfig;

/// One address of a dial schedule and when its attempt starts, counted from the start of
/// the dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledDial {
    /// The address.
    pub addr: Multiaddr,
    /// How long after the dial's start its attempt begins.
    pub delay: Duration,
}

/// The group of an address, which sets the step between its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AddrGroup {
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918, CGNAT (`100.64.0.0/10`), link-local, IPv6 unique local (`fc00::/7`), and
    /// the unspecified address.
    Private,
    /// Any other IP address.
    Public,
    /// An address that does not start with an IP (a name, a memory address).
    Other,
}

impl AddrGroup {
    /// The group of `addr`.
    pub fn of(addr: &Multiaddr) -> AddrGroup {
        match addr.iter().next() {
            Some(Protocol::Ip4(ip)) => group_of_ip(IpAddr::V4(ip)),
            Some(Protocol::Ip6(ip)) => group_of_ip(IpAddr::V6(ip)),
            _ => AddrGroup::Other,
        }
    }
}

fn group_of_ip(ip: IpAddr) -> AddrGroup {
    match ip {
        IpAddr::V4(ip) => group_of_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => group_of_v4(v4),
            None => group_of_v6(ip),
        },
    }
}

fn group_of_v4(ip: Ipv4Addr) -> AddrGroup {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        AddrGroup::Loopback
    } else if ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || (a == 100 && (64..128).contains(&b))
    {
        AddrGroup::Private
    } else {
        AddrGroup::Public
    }
}

fn group_of_v6(ip: Ipv6Addr) -> AddrGroup {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        AddrGroup::Loopback
    } else if ip.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        AddrGroup::Private
    } else {
        AddrGroup::Public
    }
}

/// The kind of transport an address asks for, in the order they are preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Quic,
    Tcp,
    WebSocket,
    Other,
}

/// What the ranking looks at in one address.
#[derive(Debug, Clone, Copy)]
struct Traits {
    group: AddrGroup,
    kind: Kind,
    ipv6: bool,
    port: u16,
}

fn traits(addr: &Multiaddr) -> Traits {
    let mut kind = Kind::Other;
    let mut port = u16::MAX;
    let mut ipv6 = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip6(_) | Protocol::Dns6(_) => ipv6 = true,
            Protocol::Tcp(p) => {
                kind = Kind::Tcp;
                port = p;
            }
            Protocol::Udp(p) => port = p,
            Protocol::QuicV1 | Protocol::Quic if kind == Kind::Other => kind = Kind::Quic,
            Protocol::Ws(_) | Protocol::Wss(_) if kind == Kind::Tcp => kind = Kind::WebSocket,
            _ => {}
        }
    }
    Traits {
        group: AddrGroup::of(addr),
        kind,
        ipv6,
        port,
    }
}

/// The step between attempts in `group`.
fn step(group: AddrGroup, config: &DialConfig) -> Duration {
    match group {
        AddrGroup::Loopback => config.loopback_delay,
        AddrGroup::Private => config.private_delay,
        AddrGroup::Public | AddrGroup::Other => config.public_delay,
    }
}

/// Ranks `addrs` into a dial schedule (see the [module documentation](self) for the rules),
/// sorted by start delay; among equal delays, the preferred address comes first. Duplicate
/// addresses are dialed once. A pure function: the same addresses and config give the same
/// schedule.
pub fn rank(addrs: Vec<Multiaddr>, config: &DialConfig) -> Vec<ScheduledDial> {
    let mut seen = std::collections::HashSet::new();
    let mut addrs: Vec<(Traits, Multiaddr)> = addrs
        .into_iter()
        .filter(|a| seen.insert(a.clone()))
        .map(|a| (traits(&a), a))
        .collect();
    // Stable: equal addresses keep the order they were given in.
    addrs.sort_by_key(|(t, _)| (t.group, t.kind, !t.ipv6, t.port));
    let mut schedule = Vec::with_capacity(addrs.len());
    let mut rest = addrs.as_slice();
    while let Some((first, _)) = rest.first() {
        let group = first.group;
        let end = rest
            .iter()
            .position(|(t, _)| t.group != group)
            .unwrap_or(rest.len());
        let (members, tail) = rest.split_at(end);
        rest = tail;
        let step = step(group, config);
        if group == AddrGroup::Other {
            // Names and memory addresses: nothing to rank them by, so all at once.
            schedule.extend(members.iter().map(|(_, a)| ScheduledDial {
                addr: a.clone(),
                delay: Duration::ZERO,
            }));
            continue;
        }
        let mut base = Duration::ZERO;
        let mut last: Option<Duration> = None;
        for kind in [Kind::Quic, Kind::Tcp, Kind::WebSocket, Kind::Other] {
            let of_kind: Vec<&(Traits, Multiaddr)> =
                members.iter().filter(|(t, _)| t.kind == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            if let Some(last) = last {
                base = last + step;
            }
            let start = schedule.len();
            let delays = eyeballs(&of_kind, base, step);
            for ((_, addr), delay) in of_kind.into_iter().zip(delays) {
                schedule.push(ScheduledDial {
                    addr: addr.clone(),
                    delay,
                });
            }
            last = schedule[start..].iter().map(|d| d.delay).max();
        }
    }
    schedule.sort_by_key(|d| d.delay);
    schedule
}

/// The start delays of one kind's addresses (sorted IPv6 first, then by port), Happy Eyeballs
/// style: the first at `base`; with both families present, the first of the other family at
/// `base + step` and the rest at `base + 2 * step`; else the rest at `base + step`.
fn eyeballs(addrs: &[&(Traits, Multiaddr)], base: Duration, step: Duration) -> Vec<Duration> {
    let first_family = addrs[0].0.ipv6;
    let other = addrs.iter().position(|(t, _)| t.ipv6 != first_family);
    (0..addrs.len())
        .map(|i| match (i, other) {
            (0, _) => base,
            (i, Some(o)) if i == o => base + step,
            (_, Some(_)) => base + 2 * step,
            (_, None) => base + step,
        })
        .collect()
}

/// An address that failed, and until when it is left alone.
#[derive(Debug, Clone)]
struct Entry {
    until: Instant,
    /// Failures in a row.
    failures: u32,
    error: Arc<TransportError>,
}

/// The table of addresses backed off after failing: a plain state machine, time given in.
/// Holds at most its capacity of entries; when full, expired entries go first, then the one
/// closest to expiring.
#[derive(Debug)]
pub(crate) struct Backoff {
    entries: HashMap<Multiaddr, Entry>,
    base: Duration,
    max: Duration,
    capacity: usize,
}

impl Backoff {
    pub(crate) fn new(config: &DialConfig) -> Backoff {
        Backoff {
            entries: HashMap::new(),
            base: config.backoff,
            max: config.backoff_max.max(config.backoff),
            capacity: config.backoff_entries,
        }
    }

    /// The error that put `addr` in back-off, if it still is at `now`.
    pub(crate) fn check(&mut self, addr: &Multiaddr, now: Instant) -> Option<Arc<TransportError>> {
        let entry = self.entries.get(addr)?;
        if entry.until > now {
            return Some(entry.error.clone());
        }
        // Expired: the address is dialed again, and its count of failures is kept until
        // that dial tells whether it works now.
        None
    }

    /// Records that dialing `addr` failed at `now`.
    pub(crate) fn failed(&mut self, addr: &Multiaddr, error: Arc<TransportError>, now: Instant) {
        if self.base.is_zero() || self.capacity == 0 {
            return;
        }
        let failures = self.entries.get(addr).map_or(0, |e| e.failures) + 1;
        let factor = 1u32 << (failures - 1).min(16);
        let wait = self.base.saturating_mul(factor).min(self.max);
        if !self.entries.contains_key(addr) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, e| e.until > now);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.until)
                    .map(|(a, _)| a.clone());
                if let Some(a) = soonest {
                    self.entries.remove(&a);
                }
            }
        }
        self.entries.insert(
            addr.clone(),
            Entry {
                until: now + wait,
                failures,
                error,
            },
        );
    }

    /// Records that dialing `addr` worked: it is no longer backed off.
    pub(crate) fn succeeded(&mut self, addr: &Multiaddr) {
        self.entries.remove(addr);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// How one attempt of a race ended, as the race needs to know it.
pub(crate) enum Outcome<T, E> {
    /// Connected: the race is won.
    Won(T),
    /// This address failed; the race goes on.
    Failed(E),
    /// The dial cannot succeed at all (the host closed, ...): the race stops with this.
    Abort(E),
}

/// Runs `schedule`: starts each attempt (`attempt(addr)`) at its delay, at most
/// `max_parallel` at once, and returns the first that wins, dropping (cancelling) the
/// others. Fails with every attempt's error, in the order they came, when all failed, or
/// with the first abort.
pub(crate) async fn race<T, E, F, Fut>(
    schedule: Vec<ScheduledDial>,
    max_parallel: usize,
    mut attempt: F,
) -> Result<T, RaceError<E>>
where
    F: FnMut(Multiaddr) -> Fut,
    Fut: Future<Output = Outcome<T, E>>,
{
    let max_parallel = max_parallel.max(1);
    let start = tokio::time::Instant::now();
    // Time by which the schedule was brought forward (an attempt failed with nothing else
    // in flight, so the next one started early).
    let mut advance = Duration::ZERO;
    let mut pending = schedule.into_iter().peekable();
    let mut running = FuturesUnordered::new();
    let mut errors = Vec::new();
    loop {
        let elapsed = start.elapsed() + advance;
        while running.len() < max_parallel {
            match pending.next_if(|d| d.delay <= elapsed) {
                Some(d) => running.push(attempt(d.addr)),
                None => break,
            }
        }
        if running.is_empty() {
            match pending.peek() {
                Some(next) => {
                    // Nothing in flight: waiting could only delay the dial.
                    advance += next.delay.saturating_sub(elapsed);
                    continue;
                }
                None => return Err(RaceError::AllFailed(errors)),
            }
        }
        let next_start = pending
            .peek()
            .filter(|_| running.len() < max_parallel)
            .map(|d| start + d.delay.saturating_sub(advance));
        let wake = async {
            match next_start {
                Some(at) => tokio::time::sleep_until(at).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            outcome = running.next() => match outcome {
                Some(Outcome::Won(t)) => return Ok(t),
                Some(Outcome::Failed(e)) => errors.push(e),
                Some(Outcome::Abort(e)) => return Err(RaceError::Aborted(e)),
                None => {}
            },
            () = wake => {}
        }
    }
}

/// Why a race was lost.
#[derive(Debug)]
pub(crate) enum RaceError<E> {
    /// Every attempt failed (empty when the schedule was).
    AllFailed(Vec<E>),
    /// An attempt said the dial cannot succeed.
    Aborted(E),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn plan(addrs: &[&str]) -> Vec<(String, u64)> {
        rank(
            addrs.iter().map(|a| ma(a)).collect(),
            &DialConfig::default(),
        )
        .into_iter()
        .map(|d| (d.addr.to_string(), d.delay.as_millis() as u64))
        .collect()
    }

    #[test]
    fn groups() {
        assert_eq!(
            AddrGroup::of(&ma("/ip4/127.0.0.1/tcp/1")),
            AddrGroup::Loopback
        );
        assert_eq!(AddrGroup::of(&ma("/ip6/::1/tcp/1")), AddrGroup::Loopback);
        for private in [
            "/ip4/10.1.2.3/tcp/1",
            "/ip4/172.16.0.1/tcp/1",
            "/ip4/192.168.1.1/tcp/1",
            "/ip4/100.64.0.1/tcp/1",
            "/ip4/169.254.1.1/tcp/1",
            "/ip6/fd00::1/tcp/1",
            "/ip6/fe80::1/tcp/1",
            "/ip6/::ffff:192.168.1.1/tcp/1",
        ] {
            assert_eq!(AddrGroup::of(&ma(private)), AddrGroup::Private, "{private}");
        }
        for public in [
            "/ip4/1.2.3.4/tcp/1",
            "/ip4/100.128.0.1/tcp/1",
            "/ip6/2001:db8::1/tcp/1",
        ] {
            assert_eq!(AddrGroup::of(&ma(public)), AddrGroup::Public, "{public}");
        }
        assert_eq!(
            AddrGroup::of(&ma("/dns4/example.com/tcp/1")),
            AddrGroup::Other
        );
        assert_eq!(AddrGroup::of(&ma("/memory/5")), AddrGroup::Other);
    }

    #[test]
    fn quic_first_then_tcp_one_step_later_per_group() {
        let p = plan(&[
            "/ip4/1.2.3.4/tcp/4001",
            "/ip4/1.2.3.4/udp/4001/quic-v1",
            "/ip4/192.168.1.2/tcp/4001",
            "/ip4/192.168.1.2/udp/4001/quic-v1",
        ]);
        assert_eq!(
            p,
            vec![
                ("/ip4/192.168.1.2/udp/4001/quic-v1".into(), 0),
                ("/ip4/1.2.3.4/udp/4001/quic-v1".into(), 0),
                ("/ip4/192.168.1.2/tcp/4001".into(), 30),
                ("/ip4/1.2.3.4/tcp/4001".into(), 250),
            ]
        );
    }

    #[test]
    fn loopback_at_once_by_default() {
        let p = plan(&["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]);
        // Both at once, QUIC started first.
        assert_eq!(
            p,
            vec![
                ("/ip4/127.0.0.1/udp/4001/quic-v1".into(), 0),
                ("/ip4/127.0.0.1/tcp/4001".into(), 0),
            ]
        );
        let config = DialConfig {
            loopback_delay: ms(100),
            ..DialConfig::default()
        };
        let r = rank(
            vec![
                ma("/ip4/127.0.0.1/tcp/4001"),
                ma("/ip4/127.0.0.1/udp/4001/quic-v1"),
            ],
            &config,
        );
        assert_eq!(r[1].delay, ms(100));
    }

    #[test]
    fn happy_eyeballs_within_a_kind() {
        let p = plan(&[
            "/ip4/1.2.3.4/udp/5000/quic-v1",
            "/ip4/1.2.3.4/udp/4001/quic-v1",
            "/ip6/2001:db8::1/udp/4001/quic-v1",
            "/ip6/2001:db8::1/udp/4002/quic-v1",
            "/ip4/1.2.3.4/tcp/4001",
            "/ip6/2001:db8::1/tcp/4001",
        ]);
        assert_eq!(
            p,
            vec![
                // IPv6 first, the lowest port; then IPv4's lowest one step later; the rest
                // two steps later.
                ("/ip6/2001:db8::1/udp/4001/quic-v1".into(), 0),
                ("/ip4/1.2.3.4/udp/4001/quic-v1".into(), 250),
                ("/ip6/2001:db8::1/udp/4002/quic-v1".into(), 500),
                ("/ip4/1.2.3.4/udp/5000/quic-v1".into(), 500),
                // TCP one step after the last QUIC, the same pattern.
                ("/ip6/2001:db8::1/tcp/4001".into(), 750),
                ("/ip4/1.2.3.4/tcp/4001".into(), 1000),
            ]
        );
    }

    #[test]
    fn one_family_spaces_the_rest_one_step() {
        let p = plan(&[
            "/ip4/10.0.0.1/tcp/4003",
            "/ip4/10.0.0.1/tcp/4001",
            "/ip4/10.0.0.2/tcp/4002",
        ]);
        assert_eq!(
            p,
            vec![
                ("/ip4/10.0.0.1/tcp/4001".into(), 0),
                ("/ip4/10.0.0.2/tcp/4002".into(), 30),
                ("/ip4/10.0.0.1/tcp/4003".into(), 30),
            ]
        );
    }

    #[test]
    fn websocket_after_tcp_names_at_once_duplicates_once() {
        let p = plan(&[
            "/ip4/1.2.3.4/tcp/443/ws",
            "/dns4/example.com/tcp/4001",
            "/ip4/1.2.3.4/tcp/4001",
            "/ip4/1.2.3.4/tcp/4001",
        ]);
        assert_eq!(
            p,
            vec![
                ("/ip4/1.2.3.4/tcp/4001".into(), 0),
                ("/dns4/example.com/tcp/4001".into(), 0),
                ("/ip4/1.2.3.4/tcp/443/ws".into(), 250),
            ]
        );
        assert!(plan(&[]).is_empty());
    }

    #[test]
    fn backoff_grows_expires_is_bounded() {
        let config = DialConfig {
            backoff: Duration::from_secs(5),
            backoff_max: Duration::from_secs(12),
            backoff_entries: 2,
            ..DialConfig::default()
        };
        let mut b = Backoff::new(&config);
        let now = Instant::now();
        let a = ma("/ip4/1.2.3.4/tcp/1");
        let err = Arc::new(TransportError::ConnectionRefused(a.clone()));
        assert!(b.check(&a, now).is_none());
        b.failed(&a, err.clone(), now);
        assert!(b.check(&a, now + Duration::from_secs(4)).is_some());
        assert!(b.check(&a, now + Duration::from_secs(5)).is_none());
        // A second failure in a row doubles it, a third is capped.
        let t2 = now + Duration::from_secs(5);
        b.failed(&a, err.clone(), t2);
        assert!(b.check(&a, t2 + Duration::from_secs(9)).is_some());
        assert!(b.check(&a, t2 + Duration::from_secs(10)).is_none());
        let t3 = t2 + Duration::from_secs(10);
        b.failed(&a, err.clone(), t3);
        assert!(b.check(&a, t3 + Duration::from_secs(11)).is_some());
        assert!(b.check(&a, t3 + Duration::from_secs(12)).is_none());
        // Success forgets it.
        b.succeeded(&a);
        b.failed(&a, err.clone(), t3);
        assert!(b.check(&a, t3 + Duration::from_secs(6)).is_none());
        // Full: the entry closest to expiring makes room.
        let c = ma("/ip4/1.2.3.4/tcp/2");
        let d = ma("/ip4/1.2.3.4/tcp/3");
        b.failed(&c, err.clone(), t3 + Duration::from_secs(1));
        b.failed(&d, err.clone(), t3 + Duration::from_secs(2));
        assert_eq!(b.len(), 2);
        assert!(b.check(&a, t3).is_none());
        assert!(b.check(&c, t3 + Duration::from_secs(2)).is_some());
        assert!(b.check(&d, t3 + Duration::from_secs(2)).is_some());
        // Off when the base is zero.
        let mut off = Backoff::new(&DialConfig {
            backoff: Duration::ZERO,
            ..DialConfig::default()
        });
        off.failed(&a, err, now);
        assert!(off.check(&a, now).is_none());
    }

    fn sched(items: &[(&str, u64)]) -> Vec<ScheduledDial> {
        items
            .iter()
            .map(|(a, d)| ScheduledDial {
                addr: ma(a),
                delay: ms(*d),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn race_first_win_cancels_the_rest() {
        let started = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = started.clone();
        let result = race(
            sched(&[("/memory/1", 0), ("/memory/2", 100), ("/memory/3", 5_000)]),
            8,
            move |addr: Multiaddr| {
                log.lock().unwrap().push(addr.to_string());
                async move {
                    match addr.to_string().as_str() {
                        // The first hangs; the second wins after 10 ms.
                        "/memory/1" => futures::future::pending().await,
                        _ => {
                            tokio::time::sleep(ms(10)).await;
                            Outcome::<_, ()>::Won(addr)
                        }
                    }
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), ma("/memory/2"));
        // The third never started.
        assert_eq!(*started.lock().unwrap(), vec!["/memory/1", "/memory/2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn race_failure_brings_the_next_forward() {
        let begin = tokio::time::Instant::now();
        let result = race(
            sched(&[
                ("/memory/1", 0),
                ("/memory/2", 60_000),
                ("/memory/3", 60_001),
            ]),
            8,
            |addr: Multiaddr| async move {
                if addr == ma("/memory/3") {
                    Outcome::Won(addr)
                } else {
                    Outcome::Failed(addr.to_string())
                }
            },
        )
        .await;
        assert_eq!(result.unwrap(), ma("/memory/3"));
        // Every failure was immediate, so nothing waited for its slot.
        assert!(begin.elapsed() < ms(5));

        let all = race(
            sched(&[("/memory/1", 0), ("/memory/2", 10)]),
            8,
            |addr: Multiaddr| async move { Outcome::<(), _>::Failed(addr.to_string()) },
        )
        .await;
        match all {
            Err(RaceError::AllFailed(e)) => assert_eq!(e, vec!["/memory/1", "/memory/2"]),
            _ => panic!("expected every attempt to fail"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn race_respects_max_parallel_and_abort() {
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (r, m) = (running.clone(), most.clone());
        let result = race(
            sched(&[("/memory/1", 0), ("/memory/2", 0), ("/memory/3", 0)]),
            2,
            move |addr: Multiaddr| {
                let (r, m) = (r.clone(), m.clone());
                async move {
                    use std::sync::atomic::Ordering::SeqCst;
                    let now = r.fetch_add(1, SeqCst) + 1;
                    m.fetch_max(now, SeqCst);
                    tokio::time::sleep(ms(10)).await;
                    r.fetch_sub(1, SeqCst);
                    Outcome::<(), _>::Failed(addr.to_string())
                }
            },
        )
        .await;
        assert!(matches!(result, Err(RaceError::AllFailed(ref e)) if e.len() == 3));
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);

        let aborted = race(
            sched(&[("/memory/1", 0), ("/memory/2", 0)]),
            8,
            |addr: Multiaddr| async move {
                if addr == ma("/memory/1") {
                    Outcome::<(), _>::Abort("closed")
                } else {
                    futures::future::pending().await
                }
            },
        )
        .await;
        assert!(matches!(aborted, Err(RaceError::Aborted("closed"))));
    }
}
