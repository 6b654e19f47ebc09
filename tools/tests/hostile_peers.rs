//! The hostile-peer suite (issue 14): a misbehaving peer on 127.0.0.2 attacks a spawned
//! `peer --listen` whose bounds are set to a second, while a well-behaved peer on 127.0.0.1
//! keeps dialing it and echoing. For each attack: the target ends the connection within the
//! bound (or, where the attack is absorbed by design, stays bounded and keeps serving), says
//! why in its log, its peak resident set stays under [`hostile::MAX_RSS_KIB`], and every
//! well-behaved echo works.
//!
//! All cases run at once (each against its own target process, so that each one's peak RSS is
//! its own), so the suite takes a few seconds; `cargo test --release -p libp2p-tools --test
//! hostile_peers -- --nocapture` prints a table of what each case saw.

mod hostile;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::AsyncWriteExt;
use hostile::{
    attacker, good_host, keep_checking, mplex, ms_message, muxed, propose, read_mplex_frame,
    read_yamux_frame, secured, until_closed, varint, yamux, BoxIo, Ended, Mux, Sec, Target, BOUND,
    MAX_RSS_KIB, PENDING_PER_IP, RATE_PER_IP, SLACK,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::compat::TokioAsyncReadCompatExt;

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attack {
    /// 64 KiB of noise instead of multistream-select.
    Garbage,
    /// A length prefix of eleven continuation bytes.
    OverlongVarint,
    /// A length prefix of 2^40.
    HugeLength,
    /// The header, then proposal after unsupported proposal.
    EndlessNa,
    /// The header, then `ls` after `ls`.
    EndlessLs,
    /// Connects and says nothing.
    Silent,
    /// Sends the multistream header one byte at a time, slowly, for ever.
    Trickle,
    /// Agrees the security protocol, then says nothing.
    NegotiatedSilent,
    /// Agrees the security protocol, sends part of its first handshake message, stops.
    PartialHandshake,
    /// Completes the security handshake, never agrees a muxer.
    SecuredSilent,
    /// On an mplex stream: proposal after unsupported proposal.
    StreamNa,
    /// On an mplex stream: `ls` after `ls`.
    StreamLs,
    /// 5,000 mplex NewStream frames that never negotiate anything.
    MplexNewStreamFlood,
    /// mplex Message, Close and Reset frames for streams never opened, then a real stream.
    MplexUnknownIds,
    /// The same mplex stream id opened twice.
    MplexReusedId,
    /// An mplex frame announcing 2^31 bytes.
    MplexHugeLength,
    /// An mplex frame that starts and never finishes.
    MplexPartialFrame,
    /// An echo stream flooded with data while the echo is never read.
    MplexNeverReads,
    /// yamux window updates that overflow a stream's send window.
    YamuxWindowOverflow,
    /// 5,000 yamux SYNs.
    YamuxSynFlood,
    /// 300 KiB of yamux data on a fresh stream (its window is 256 KiB).
    YamuxDataPastWindow,
    /// yamux pings without end, their pongs never read.
    YamuxPingFlood,
    /// 40 silent connections at once from one source.
    PendingPerIp,
    /// Connections one after another from one source, as fast as it can.
    RatePerIp,
}

/// What an attack saw.
struct Outcome {
    /// The attacker's port, for the target's log line about it.
    port: Option<u16>,
    /// How the connection ended, when the target ended it.
    ended: Option<Ended>,
    /// Anything else to report.
    note: String,
}

impl Outcome {
    fn ended(port: u16, ended: Ended) -> Self {
        Outcome {
            port: Some(port),
            ended: Some(ended),
            note: String::new(),
        }
    }

    /// The target kept the connection; `note` says what it did instead.
    fn kept(port: u16, note: String) -> Self {
        Outcome {
            port: Some(port),
            ended: None,
            note,
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Pseudo-random bytes.
fn noise_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

const HEADER: &str = "/multistream/1.0.0";

/// Writes `bytes` raw and waits for the target to end the connection.
async fn raw_then_wait(t: &Target, bytes: &[u8]) -> Result<Outcome, String> {
    let mut tcp = attacker(t).await.map_err(err)?;
    let port = tcp.local_addr().map_err(err)?.port();
    let start = Instant::now();
    // The target may close before it has read everything: a failed write is fine.
    let _ = tcp.write_all(bytes).await;
    let ended = until_closed(tcp.compat(), start, SLACK).await?;
    Ok(Outcome::ended(port, ended))
}

/// The first bytes of each security protocol's first message, cut short.
fn partial_first_message(sec: Sec) -> Vec<u8> {
    match sec {
        // A uvarint length of 200, then 5 of the 200 bytes.
        Sec::Plaintext => vec![0xc8, 0x01, 8, 1, 2, 3, 4],
        // A 4-byte length of 4,096, then 5 bytes.
        Sec::Secio => vec![0, 0, 0x10, 0, 1, 2, 3, 4, 5],
        // A 2-byte length of 32, then 10 of the ephemeral key's bytes.
        Sec::Noise => vec![0, 32, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        // A TLS handshake record header announcing 512 bytes, then 5.
        Sec::Tls => vec![0x16, 3, 1, 2, 0, 1, 0, 1, 0xfc, 3],
    }
}

/// Opens mplex stream `id`, proposes each of `messages` on it, and waits for the target to
/// reset it.
async fn mplex_stream_abuse(t: &Target, messages: Vec<Vec<u8>>) -> Result<Outcome, String> {
    let (port, mut io, start) = muxed_attacker(t).await?;
    let mut out = Vec::new();
    mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
    let mut body = ms_message(HEADER);
    for m in &messages {
        body.extend_from_slice(m);
    }
    for chunk in body.chunks(16 * 1024) {
        mplex::frame(1, mplex::MESSAGE_INITIATOR, chunk, &mut out);
    }
    io.write_all(&out).await.map_err(err)?;
    io.flush().await.map_err(err)?;
    let reset = async {
        loop {
            let (id, flag, _) = read_mplex_frame(&mut io).await?;
            if id == 1 && flag == mplex::RESET_RECEIVER {
                return Ok::<_, std::io::Error>(());
            }
        }
    };
    match tokio::time::timeout(SLACK, reset).await {
        Ok(Ok(())) => Ok(Outcome::kept(
            port,
            format!(
                "stream reset after {} ms, connection kept",
                start.elapsed().as_millis()
            ),
        )),
        Ok(Err(e)) => Err(format!("connection failed instead of a stream reset: {e}")),
        Err(_) => Err("the stream was not reset in time".into()),
    }
}

async fn attack(kind: Attack, t: &Target) -> Result<Outcome, String> {
    match kind {
        Attack::Garbage => raw_then_wait(t, &noise_bytes(64 * 1024)).await,
        Attack::OverlongVarint => raw_then_wait(t, &[0xff; 11]).await,
        Attack::HugeLength => {
            let mut bytes = Vec::new();
            varint(1 << 40, &mut bytes);
            raw_then_wait(t, &bytes).await
        }
        Attack::EndlessNa => {
            let mut bytes = ms_message(HEADER);
            for i in 0..1_000 {
                bytes.extend(ms_message(&format!("/nope/{i}")));
            }
            raw_then_wait(t, &bytes).await
        }
        Attack::EndlessLs => {
            let mut bytes = ms_message(HEADER);
            for _ in 0..1_000 {
                bytes.extend(ms_message("ls"));
            }
            raw_then_wait(t, &bytes).await
        }
        Attack::Silent => raw_then_wait(t, &[]).await,
        Attack::Trickle => {
            let tcp = attacker(t).await.map_err(err)?;
            let port = tcp.local_addr().map_err(err)?.port();
            let start = Instant::now();
            let (read, mut write) = tcp.into_split();
            let trickle = tokio::spawn(async move {
                let mut bytes = ms_message(HEADER);
                bytes.extend(std::iter::repeat_n(b'x', 10_000));
                for b in bytes {
                    if write.write_all(&[b]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
            let ended = until_closed(read.compat(), start, SLACK).await;
            trickle.abort();
            Ok(Outcome::ended(port, ended?))
        }
        Attack::NegotiatedSilent => {
            let tcp = attacker(t).await.map_err(err)?;
            let port = tcp.local_addr().map_err(err)?.port();
            let start = Instant::now();
            let io = propose(tcp.compat(), t.sec.protocol()).await.map_err(err)?;
            Ok(Outcome::ended(port, until_closed(io, start, SLACK).await?))
        }
        Attack::PartialHandshake => {
            let tcp = attacker(t).await.map_err(err)?;
            let port = tcp.local_addr().map_err(err)?.port();
            let start = Instant::now();
            let mut io = propose(tcp.compat(), t.sec.protocol()).await.map_err(err)?;
            io.write_all(&partial_first_message(t.sec))
                .await
                .map_err(err)?;
            io.flush().await.map_err(err)?;
            Ok(Outcome::ended(port, until_closed(io, start, SLACK).await?))
        }
        Attack::SecuredSilent => {
            let tcp = attacker(t).await.map_err(err)?;
            let port = tcp.local_addr().map_err(err)?.port();
            let start = Instant::now();
            let io = secured(t, tcp).await.map_err(err)?;
            Ok(Outcome::ended(port, until_closed(io, start, SLACK).await?))
        }
        Attack::StreamNa => {
            let proposals = (0..200)
                .map(|i| ms_message(&format!("/nope/{i}")))
                .collect();
            mplex_stream_abuse(t, proposals).await
        }
        Attack::StreamLs => {
            mplex_stream_abuse(t, (0..200).map(|_| ms_message("ls")).collect()).await
        }
        Attack::MplexNewStreamFlood => {
            const STREAMS: u64 = 5_000;
            let mut out = Vec::new();
            for id in 0..STREAMS {
                mplex::frame(id, mplex::NEW_STREAM, b"", &mut out);
            }
            stream_flood(t, STREAMS as usize, &out).await
        }
        Attack::MplexUnknownIds => {
            let (port, mut io, start) = muxed_attacker(t).await?;
            let mut out = Vec::new();
            let kib = vec![7u8; 1024];
            for id in 1_000..3_000 {
                mplex::frame(id, mplex::MESSAGE_INITIATOR, &kib, &mut out);
                mplex::frame(id + 5_000, mplex::CLOSE_INITIATOR, b"", &mut out);
                mplex::frame(id + 10_000, mplex::RESET_INITIATOR, b"", &mut out);
                mplex::frame(id + 15_000, mplex::MESSAGE_RECEIVER, b"x", &mut out);
            }
            // Then a real echo stream on the same connection.
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            let mut body = ms_message(HEADER);
            body.extend(ms_message(libp2p_tools::node::ECHO));
            body.extend_from_slice(b"still here");
            mplex::frame(1, mplex::MESSAGE_INITIATOR, &body, &mut out);
            io.write_all(&out).await.map_err(err)?;
            io.flush().await.map_err(err)?;
            let echoed = async {
                let mut seen = Vec::new();
                loop {
                    let (id, flag, data) = read_mplex_frame(&mut io).await?;
                    if id == 1 && flag == mplex::MESSAGE_RECEIVER {
                        seen.extend_from_slice(&data);
                        if seen.windows(10).any(|w| w == b"still here") {
                            return Ok::<_, std::io::Error>(());
                        }
                    }
                }
            };
            match tokio::time::timeout(SLACK, echoed).await {
                Ok(Ok(())) => Ok(Outcome::kept(
                    port,
                    format!(
                        "8,000 frames for unknown streams ignored; a new stream echoed after {} ms",
                        start.elapsed().as_millis()
                    ),
                )),
                Ok(Err(e)) => Err(format!("connection failed: {e}")),
                Err(_) => Err("no echo on the new stream".into()),
            }
        }
        Attack::MplexReusedId => {
            let mut out = Vec::new();
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            muxed_then_wait(t, &out).await
        }
        Attack::MplexHugeLength => {
            let mut out = Vec::new();
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            varint((1 << 3) | mplex::MESSAGE_INITIATOR, &mut out);
            varint(1 << 31, &mut out);
            out.extend_from_slice(&[0; 64]);
            muxed_then_wait(t, &out).await
        }
        Attack::MplexPartialFrame => {
            let mut out = Vec::new();
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            varint((1 << 3) | mplex::MESSAGE_INITIATOR, &mut out);
            varint(1_000, &mut out);
            out.extend_from_slice(&[0; 10]);
            muxed_then_wait(t, &out).await
        }
        Attack::MplexNeverReads => {
            let (port, mut io, start) = muxed_attacker(t).await?;
            let mut out = Vec::new();
            mplex::frame(1, mplex::NEW_STREAM, b"1", &mut out);
            let mut body = ms_message(HEADER);
            body.extend(ms_message(libp2p_tools::node::ECHO));
            mplex::frame(1, mplex::MESSAGE_INITIATOR, &body, &mut out);
            io.write_all(&out).await.map_err(err)?;
            let mut flood = Vec::new();
            mplex::frame(
                1,
                mplex::MESSAGE_INITIATOR,
                &[1u8; 16 * 1024 - 8],
                &mut flood,
            );
            let writes = async {
                loop {
                    io.write_all(&flood).await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), std::io::Error>(())
            };
            until_a_write_fails(port, start, writes).await
        }
        Attack::YamuxWindowOverflow => {
            let mut out = Vec::new();
            yamux::header(yamux::WINDOW_UPDATE, yamux::SYN, 1, 0, &mut out);
            yamux::header(yamux::WINDOW_UPDATE, 0, 1, u32::MAX, &mut out);
            yamux::header(yamux::WINDOW_UPDATE, 0, 1, u32::MAX, &mut out);
            muxed_then_wait(t, &out).await
        }
        Attack::YamuxSynFlood => {
            const STREAMS: u32 = 5_000;
            let mut out = Vec::new();
            for i in 0..STREAMS {
                yamux::header(yamux::WINDOW_UPDATE, yamux::SYN, 1 + 2 * i, 0, &mut out);
            }
            stream_flood(t, STREAMS as usize, &out).await
        }
        Attack::YamuxDataPastWindow => {
            let mut out = Vec::new();
            yamux::header(yamux::WINDOW_UPDATE, yamux::SYN, 1, 0, &mut out);
            yamux::header(yamux::DATA, 0, 1, 300 * 1024, &mut out);
            out.extend(std::iter::repeat_n(0u8, 300 * 1024));
            muxed_then_wait(t, &out).await
        }
        Attack::YamuxPingFlood => {
            let (port, mut io, start) = muxed_attacker(t).await?;
            let writes = async {
                let mut n = 0u32;
                loop {
                    let mut out = Vec::with_capacity(12 * 1024);
                    for _ in 0..1024 {
                        yamux::header(yamux::PING, yamux::SYN, 0, n, &mut out);
                        n = n.wrapping_add(1);
                    }
                    io.write_all(&out).await?;
                    io.flush().await?;
                }
                #[allow(unreachable_code)]
                Ok::<(), std::io::Error>(())
            };
            until_a_write_fails(port, start, writes).await
        }
        Attack::PendingPerIp => {
            const SOCKETS: usize = 40;
            let mut sockets = Vec::new();
            for _ in 0..SOCKETS {
                sockets.push(attacker(t).await.map_err(err)?);
            }
            // Refusals close at once; admitted sockets wait for the handshake timeout.
            tokio::time::sleep(BOUND / 2).await;
            let mut open = 0;
            for s in &sockets {
                let mut buf = [0u8; 1];
                match s.try_read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
                    _ => {}
                }
            }
            if open > PENDING_PER_IP {
                return Err(format!(
                    "{open} silent connections from one source still held (limit {PENDING_PER_IP})"
                ));
            }
            if t.lines_with("PendingPerIp").is_empty() {
                return Err("no refusal in the target's log".into());
            }
            Ok(Outcome {
                port: None,
                ended: None,
                note: format!(
                    "{SOCKETS} silent sockets: {open} held for the handshake, {} refused at once",
                    SOCKETS - open
                ),
            })
        }
        Attack::RatePerIp => {
            let attempts = 3 * RATE_PER_IP as usize;
            let (mut admitted, mut refused) = (0, 0);
            let start = Instant::now();
            for _ in 0..attempts {
                let mut tcp = attacker(t).await.map_err(err)?;
                let _ = tcp.write_all(&ms_message(HEADER)).await;
                let mut buf = [0u8; 1];
                match tokio::time::timeout(SLACK, tcp.read(&mut buf)).await {
                    Ok(Ok(1)) => admitted += 1,
                    Ok(_) => refused += 1,
                    Err(_) => return Err("no answer and no close".into()),
                }
            }
            let took = start.elapsed();
            if refused == 0 {
                return Err(format!("{attempts} connections in {took:?}, none refused"));
            }
            if t.lines_with("RatePerIp").is_empty() {
                return Err("no rate refusal in the target's log".into());
            }
            Ok(Outcome {
                port: None,
                ended: None,
                note: format!(
                    "{attempts} connections in {} ms: {admitted} admitted, {refused} refused",
                    took.as_millis()
                ),
            })
        }
    }
}

/// A secured and muxed attacker connection: its port, the muxed stream, and when it was
/// ready.
async fn muxed_attacker(t: &Target) -> Result<(u16, BoxIo, Instant), String> {
    let tcp = attacker(t).await.map_err(err)?;
    let port = tcp.local_addr().map_err(err)?.port();
    let io = muxed(t, tcp).await.map_err(err)?;
    Ok((port, io, Instant::now()))
}

/// Writes `out`, which opens `streams` streams at once, on a muxed connection and waits
/// until the target has reset every one of them (beyond its stream limit at once, the rest
/// at the negotiation timeout) while keeping the connection.
async fn stream_flood(t: &Target, streams: usize, out: &[u8]) -> Result<Outcome, String> {
    let (port, mut io, start) = muxed_attacker(t).await?;
    io.write_all(out).await.map_err(err)?;
    io.flush().await.map_err(err)?;
    let mut resets = std::collections::HashSet::new();
    let read = async {
        while resets.len() < streams {
            let reset = match t.mux {
                Mux::Mplex => {
                    let (id, flag, _) = read_mplex_frame(&mut io).await?;
                    (flag == mplex::RESET_RECEIVER).then_some(id)
                }
                Mux::Yamux => {
                    let (_, flags, id) = read_yamux_frame(&mut io).await?;
                    (flags & yamux::RST != 0 && id % 2 == 1).then_some(u64::from(id))
                }
            };
            if let Some(id) = reset {
                resets.insert(id);
            }
        }
        Ok::<_, std::io::Error>(())
    };
    match tokio::time::timeout(BOUND + SLACK, read).await {
        Ok(Ok(())) => Ok(Outcome::kept(
            port,
            format!(
                "all {streams} streams reset after {} ms (beyond the stream limit at once, the \
                 rest at the negotiation timeout), connection kept",
                start.elapsed().as_millis()
            ),
        )),
        Ok(Err(e)) => Ok(Outcome::ended(
            port,
            Ended {
                after: start.elapsed(),
                how: e.kind().to_string(),
            },
        )),
        Err(_) => Err(format!(
            "only {} of {streams} streams reset in time",
            resets.len()
        )),
    }
}

/// Runs `writes`, a flood that only ends when a write fails, and expects the target to end
/// the connection within the bound.
async fn until_a_write_fails(
    port: u16,
    start: Instant,
    writes: impl std::future::Future<Output = std::io::Result<()>>,
) -> Result<Outcome, String> {
    let limit = BOUND + SLACK;
    match tokio::time::timeout(limit, writes).await {
        Ok(Err(e)) => Ok(Outcome::ended(
            port,
            Ended {
                after: start.elapsed(),
                how: format!("{:?}", e.kind()),
            },
        )),
        Ok(Ok(())) => unreachable!("the flood loop only ends with an error"),
        Err(_) => Err(format!("connection still open after {limit:?}")),
    }
}

/// Secures, agrees the muxer, writes `bytes` and waits for the target to end the connection.
async fn muxed_then_wait(t: &Target, bytes: &[u8]) -> Result<Outcome, String> {
    let (port, mut io, start) = muxed_attacker(t).await?;
    let _ = io.write_all(bytes).await;
    let _ = io.flush().await;
    Ok(Outcome::ended(
        port,
        until_closed(io, start, BOUND + SLACK).await?,
    ))
}

/// Runs one case against its own target; returns the line to report or why it failed.
async fn run_case(name: String, attack_kind: Attack, sec: Sec, mux: Mux) -> Result<String, String> {
    let target = tokio::task::spawn_blocking(move || Target::spawn(sec, mux))
        .await
        .map_err(err)?;
    let target = Arc::new(target);
    let host = good_host(sec, mux).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let checker = tokio::spawn(keep_checking(host.clone(), target.multiaddr(), stopped));
    let outcome = attack(attack_kind, &target).await;
    let _ = stop.send(true);
    let checks = checker.await.map_err(err)?;
    host.close().await;
    let outcome = outcome.map_err(|e| format!("{name}: {e}"))?;
    let why = match (outcome.port, &outcome.ended) {
        (Some(port), Some(_)) => Some(
            target
                .ending_of(port, SLACK)
                .await
                .ok_or_else(|| format!("{name}: the target logged no reason for the end"))?,
        ),
        _ => None,
    };
    let rss = target.peak_rss_kib();
    if rss > MAX_RSS_KIB {
        return Err(format!(
            "{name}: peak RSS {} MiB over the bound {} MiB",
            rss / 1024,
            MAX_RSS_KIB / 1024
        ));
    }
    if !checks.failed.is_empty() || checks.ok == 0 {
        return Err(format!(
            "{name}: the well-behaved peer failed {} of {} echoes: {:?}",
            checks.failed.len(),
            checks.failed.len() + checks.ok,
            checks.failed
        ));
    }
    let what = match (&outcome.ended, why) {
        (Some(e), Some(why)) => {
            let why = why
                .split_once("libp2p_host::host: ")
                .map(|(_, rest)| rest.to_string())
                .unwrap_or(why);
            format!(
                "ended after {} ms ({}); target: {}",
                e.after.as_millis(),
                e.how,
                why.trim()
            )
        }
        _ => outcome.note,
    };
    Ok(format!(
        "{name:<40} rss {:>3} MiB  echoes ok {:>2}  {what}",
        rss / 1024,
        checks.ok
    ))
}

fn cases() -> Vec<(String, Attack, Sec, Mux)> {
    let mut cases = Vec::new();
    let mut add = |attack: Attack, sec: Sec, mux: Mux| {
        cases.push((
            format!("{attack:?} {}/{}", sec.flag(), mux.flag()),
            attack,
            sec,
            mux,
        ));
    };
    for attack in [
        Attack::Garbage,
        Attack::OverlongVarint,
        Attack::HugeLength,
        Attack::EndlessNa,
        Attack::EndlessLs,
    ] {
        add(attack, Sec::Noise, Mux::Yamux);
    }
    for sec in [Sec::Plaintext, Sec::Secio, Sec::Noise, Sec::Tls] {
        for attack in [
            Attack::Silent,
            Attack::Trickle,
            Attack::NegotiatedSilent,
            Attack::PartialHandshake,
            Attack::SecuredSilent,
        ] {
            add(attack, sec, Mux::Yamux);
        }
    }
    for attack in [
        Attack::StreamNa,
        Attack::StreamLs,
        Attack::MplexNewStreamFlood,
        Attack::MplexUnknownIds,
        Attack::MplexReusedId,
        Attack::MplexHugeLength,
        Attack::MplexPartialFrame,
        Attack::MplexNeverReads,
    ] {
        add(attack, Sec::Noise, Mux::Mplex);
    }
    for attack in [
        Attack::YamuxWindowOverflow,
        Attack::YamuxSynFlood,
        Attack::YamuxDataPastWindow,
        Attack::YamuxPingFlood,
    ] {
        add(attack, Sec::Noise, Mux::Yamux);
    }
    add(Attack::PendingPerIp, Sec::Plaintext, Mux::Yamux);
    add(Attack::RatePerIp, Sec::Plaintext, Mux::Yamux);
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_peers_cost_only_their_own_connection() {
    let start = Instant::now();
    let runs = cases()
        .into_iter()
        .map(|(name, attack, sec, mux)| tokio::spawn(run_case(name, attack, sec, mux)));
    let results = futures::future::join_all(runs).await;
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(Ok(line)) => println!("{line}"),
            Ok(Err(e)) => {
                println!("FAILED {e}");
                failures.push(e);
            }
            Err(e) => failures.push(format!("case panicked: {e}")),
        }
    }
    println!("{} cases in {:?}", cases().len(), start.elapsed());
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
