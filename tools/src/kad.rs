//! The Kademlia part of the `peer` program (`../shared/PEER-CLI-v2.md`): `--kad`,
//! `--bootstrap`, `--provide`, `--find-providers`, `--find-peer`.

use std::io::Write;

use libp2p_host::{split_peer_id, Host, Multiaddr, PeerId};
use libp2p_kad::{sha256_multihash, Config, KadHandle, KadService, ServiceConfig};

/// The Kademlia options of the command line.
#[derive(Debug, Default, Clone)]
pub struct KadOptions {
    /// `--kad`: run the DHT in server mode.
    pub kad: bool,
    /// `--provide KEY`.
    pub provide: Option<String>,
    /// `--find-providers KEY`.
    pub find_providers: Option<String>,
    /// `--find-peer ID`.
    pub find_peer: Option<String>,
}

impl KadOptions {
    /// Takes `flag` if it is one of ours, its value from `value`; `Ok(false)` if it is not.
    pub fn parse(
        &mut self,
        flag: &str,
        value: &mut dyn FnMut() -> Result<String, String>,
    ) -> Result<bool, String> {
        match flag {
            "--kad" => self.kad = true,
            "--provide" => self.provide = Some(value()?),
            "--find-providers" => self.find_providers = Some(value()?),
            "--find-peer" => self.find_peer = Some(value()?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether the DHT runs (`--kad`, implied by the three others).
    pub fn enabled(&self) -> bool {
        self.kad
            || self.provide.is_some()
            || self.find_providers.is_some()
            || self.find_peer.is_some()
    }

    /// Checks the combination: `--provide` needs listen mode, the finds dial mode, and the
    /// three exclude each other.
    pub fn check(&self, listening: bool) -> Result<(), String> {
        let actions = [&self.provide, &self.find_providers, &self.find_peer]
            .iter()
            .filter(|o| o.is_some())
            .count();
        if actions > 1 {
            return Err("--provide, --find-providers and --find-peer exclude each other".into());
        }
        if self.provide.is_some() && !listening {
            return Err("--provide needs --listen (a provider must be reachable)".into());
        }
        if (self.find_providers.is_some() || self.find_peer.is_some()) && listening {
            return Err("--find-providers and --find-peer are dial-mode options".into());
        }
        Ok(())
    }

    /// The service and its handle, when the DHT runs.
    pub fn service(&self) -> Option<(KadService, KadHandle)> {
        self.enabled()
            .then(|| KadService::new(Config::default(), ServiceConfig::default()))
    }
}

/// The DHT key of a command-line KEY: the sha2-256 multihash of its bytes.
pub fn dht_key(key: &str) -> Vec<u8> {
    sha256_multihash(key.as_bytes())
}

fn emit(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Connects to the `--bootstrap` peers (adding them to the routing table and bootstrapping
/// when the DHT runs), then does what the options ask. In listen mode every line is printed
/// here and `None` returned (the node keeps serving); in dial mode the last line is returned
/// for the caller to print before it exits.
pub async fn run(
    host: &Host,
    kad: Option<&KadHandle>,
    options: &KadOptions,
    bootstrap: &[Multiaddr],
    listening: bool,
) -> Result<Option<String>, String> {
    let mut last = None;
    if !bootstrap.is_empty() {
        for addr in bootstrap {
            let peer = host
                .dial(addr.clone())
                .await
                .map_err(|e| format!("bootstrap {addr}: {e}"))?;
            if let Some(kad) = kad {
                let (raw, _) = split_peer_id(addr);
                kad.add_peer(peer, vec![raw]).await;
            }
        }
        let line = match kad {
            Some(kad) => {
                if let Err(e) = kad.bootstrap().await {
                    tracing::warn!(error = %e, "bootstrap lookup failed");
                }
                format!("BOOTSTRAP OK {}", kad.routing_table_size())
            }
            None => format!("BOOTSTRAP OK {}", host.connected_peers().len()),
        };
        last = Some(line);
    }
    let Some(kad) = kad else {
        return Ok(finish(last, listening));
    };
    let result = if let Some(key) = &options.provide {
        kad.start_providing(dht_key(key))
            .await
            .map_err(|e| format!("provide: {e}"))?;
        "PROVIDE OK".to_string()
    } else if let Some(key) = &options.find_providers {
        let found = kad
            .get_providers(dht_key(key), Some(1))
            .await
            .map_err(|e| format!("find providers: {e}"))?;
        let mut ids: Vec<String> = found.iter().map(|p| p.id.to_string()).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Err("no provider found".into());
        }
        format!("PROVIDERS {}", ids.join(","))
    } else if let Some(id) = &options.find_peer {
        let peer: PeerId = id.parse().map_err(|e| format!("--find-peer {id}: {e}"))?;
        kad.find_peer(peer)
            .await
            .map_err(|e| format!("find peer: {e}"))?;
        format!("PEER {peer}")
    } else {
        return Ok(finish(last, listening));
    };
    if let Some(line) = last.take() {
        emit(&line);
    }
    Ok(finish(Some(result), listening))
}

/// In listen mode prints `last`; in dial mode hands it back.
fn finish(last: Option<String>, listening: bool) -> Option<String> {
    if listening {
        if let Some(line) = last {
            emit(&line);
        }
        None
    } else {
        last
    }
}
