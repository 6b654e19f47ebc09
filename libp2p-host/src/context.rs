//! The host as its services see it: a [`HostContext`] that holds the host weakly, so that a
//! service's task never keeps its host alive.

use std::sync::{Arc, Weak};

use futures::future::BoxFuture;
use futures::FutureExt;
use libp2p_core::{
    AcceptError, ConnectionId, ConnectionInfo, DialError, Events, HostContext, IdentifyInfo,
    Incoming, Keypair, Multiaddr, NewStreamError, PeerId, Peerstore, Stream,
};

use crate::host::{Host, Inner};

pub(crate) struct HostRef {
    inner: Weak<Inner>,
    key: Keypair,
    peer_id: PeerId,
    peerstore: Arc<Peerstore>,
}

impl HostRef {
    pub(crate) fn new(host: &Host) -> Self {
        HostRef {
            inner: Arc::downgrade(&host.inner),
            key: host.keypair().clone(),
            peer_id: host.peer_id(),
            peerstore: host.peerstore_arc(),
        }
    }

    fn host(&self) -> Option<Host> {
        self.inner.upgrade().map(|inner| Host { inner })
    }
}

/// Whether opening a stream may dial.
#[derive(Clone, Copy)]
enum Dial {
    IfNeeded,
    Never,
}

impl HostRef {
    fn open(
        &self,
        peer: PeerId,
        protocols: Vec<String>,
        dial: Dial,
    ) -> BoxFuture<'static, Result<Stream, NewStreamError>> {
        let host = self.host();
        async move {
            let Some(host) = host else {
                return Err(NewStreamError::Closed);
            };
            let names: Vec<&str> = protocols.iter().map(String::as_str).collect();
            match dial {
                Dial::IfNeeded => host.new_stream(peer, &names).await,
                Dial::Never => host.new_stream_connected(peer, &names).await,
            }
        }
        .boxed()
    }
}

impl HostContext for HostRef {
    fn local_peer_id(&self) -> PeerId {
        self.peer_id
    }

    fn keypair(&self) -> &Keypair {
        &self.key
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.host().map(|h| h.listen_addrs()).unwrap_or_default()
    }

    fn protocols(&self) -> Vec<String> {
        self.host().map(|h| h.protocols()).unwrap_or_default()
    }

    fn peerstore(&self) -> &Peerstore {
        &self.peerstore
    }

    fn connected_peers(&self) -> Vec<PeerId> {
        self.host().map(|h| h.connected_peers()).unwrap_or_default()
    }

    fn connections(&self, peer: &PeerId) -> Vec<(ConnectionId, ConnectionInfo)> {
        self.host().map(|h| h.connections(peer)).unwrap_or_default()
    }

    fn dial(&self, addr: Multiaddr) -> BoxFuture<'static, Result<PeerId, DialError>> {
        let host = self.host();
        async move {
            match host {
                Some(host) => host.dial(addr).await,
                None => Err(DialError::Closed),
            }
        }
        .boxed()
    }

    fn connect(&self, peer: PeerId) -> BoxFuture<'static, Result<(), DialError>> {
        let host = self.host();
        async move {
            match host {
                Some(host) => host.connect(peer, Vec::new()).await,
                None => Err(DialError::Closed),
            }
        }
        .boxed()
    }

    fn new_stream(
        &self,
        peer: PeerId,
        protocols: Vec<String>,
    ) -> BoxFuture<'static, Result<Stream, NewStreamError>> {
        self.open(peer, protocols, Dial::IfNeeded)
    }

    fn new_stream_connected(
        &self,
        peer: PeerId,
        protocols: Vec<String>,
    ) -> BoxFuture<'static, Result<Stream, NewStreamError>> {
        self.open(peer, protocols, Dial::Never)
    }

    fn accept(&self, protocol: &str) -> Result<Incoming, AcceptError> {
        self.host()
            .ok_or(AcceptError::Closed)
            .and_then(|h| h.accept(protocol))
    }

    fn events(&self) -> Events {
        match self.host() {
            Some(host) => host.events(),
            None => {
                let (sender, receiver) = tokio::sync::broadcast::channel(1);
                drop(sender);
                Events::from_broadcast(receiver)
            }
        }
    }

    fn report_identify(&self, peer: PeerId, info: IdentifyInfo) {
        if let Some(host) = self.host() {
            host.report_identify(peer, info);
        }
    }

    fn disconnect(&self, peer: PeerId) -> BoxFuture<'static, ()> {
        let host = self.host();
        async move {
            if let Some(host) = host {
                host.disconnect(peer).await;
            }
        }
        .boxed()
    }

    fn protect(&self, peer: PeerId, tag: &str) {
        if let Some(host) = self.host() {
            host.protect(peer, tag);
        }
    }

    fn unprotect(&self, peer: PeerId, tag: &str) -> bool {
        self.host().is_some_and(|host| host.unprotect(peer, tag))
    }

    fn is_protected(&self, peer: &PeerId) -> bool {
        self.host().is_some_and(|host| host.is_protected(peer))
    }
}
