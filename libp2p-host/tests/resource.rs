//! The resource manager over real sockets: per-protocol and per-peer stream budgets refuse
//! the extra stream with an event (or an error, outbound), a released stream frees its slot,
//! the memory budget refuses streams and connections, and every release is exact.

use std::time::Duration;

use futures::StreamExt;
use libp2p_host::testkit::{quiet, tcp_host};
use libp2p_host::{
    ConnectionRefusedReason, Event, Events, Host, Incoming, NewStreamError, RefusedReason,
    ResourceKind, ResourceLimitExceeded, ResourceScope, ResourceUsage, ScopeLimits, Stream,
};

const BOUND: Duration = Duration::from_secs(10);
const PROTOCOL: &str = "/budget/1.0.0";

async fn connect(from: &Host, to: &Host) {
    tokio::time::timeout(BOUND, from.dial(to.p2p_addrs()[0].clone()))
        .await
        .expect("dial in time")
        .expect("dial");
}

async fn open(from: &Host, to: &Host) -> Result<Stream, NewStreamError> {
    tokio::time::timeout(BOUND, from.new_stream(to.peer_id(), &[PROTOCOL]))
        .await
        .expect("open in time")
}

async fn accepted(incoming: &mut Incoming) -> Stream {
    tokio::time::timeout(BOUND, incoming.next())
        .await
        .expect("accept in time")
        .expect("a stream")
}

/// The next stream refusal on `events`: (protocol, reason).
async fn next_refusal(events: &mut Events) -> (Option<String>, RefusedReason) {
    tokio::time::timeout(BOUND, async {
        loop {
            match events.next().await {
                Some(Event::InboundStreamRefused {
                    protocol, reason, ..
                }) => return (protocol, reason),
                Some(_) => continue,
                None => panic!("events ended"),
            }
        }
    })
    .await
    .expect("a refusal in time")
}

/// Waits until `host`'s whole usage is `expected`.
async fn usage_becomes(host: &Host, expected: ResourceUsage) {
    tokio::time::timeout(BOUND, async {
        while host.resource_usage() != expected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("usage {:?}", host.resource_usage()));
}

fn memory(bytes: usize) -> ResourceUsage {
    let mut usage = ResourceUsage::default();
    usage.memory = bytes;
    usage
}

fn limit(scope: ResourceScope, resource: ResourceKind, limit: usize) -> ResourceLimitExceeded {
    ResourceLimitExceeded::new(scope, resource, limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_budget_refuses_the_extra_stream_until_one_is_released() {
    let a = tcp_host(quiet(|c| {
        c.resources
            .protocols
            .insert(PROTOCOL.into(), ScopeLimits::new(1, 8, 8, usize::MAX));
    }))
    .await;
    let b = tcp_host(quiet(|_| {})).await;
    let mut incoming = a.accept(PROTOCOL).unwrap();
    let mut events = a.events();
    connect(&b, &a).await;
    let _first_out = open(&b, &a).await.unwrap();
    let first_in = accepted(&mut incoming).await;
    assert_eq!(a.protocol_resource_usage(PROTOCOL).streams_inbound, 1);
    // The second is agreed, then reset: the protocol has its one inbound stream.
    let _second = open(&b, &a).await;
    let (protocol, reason) = next_refusal(&mut events).await;
    assert_eq!(protocol.as_deref(), Some(PROTOCOL));
    match reason {
        RefusedReason::Resource(e) => assert_eq!(
            e,
            limit(
                ResourceScope::Protocol(PROTOCOL.into()),
                ResourceKind::InboundStreams,
                1
            )
        ),
        other => panic!("{other:?}"),
    }
    // Released, the slot takes the next stream.
    drop(first_in);
    assert_eq!(
        a.protocol_resource_usage(PROTOCOL),
        ResourceUsage::default()
    );
    let _third_out = open(&b, &a).await.unwrap();
    let _third_in = accepted(&mut incoming).await;
    assert_eq!(a.protocol_resource_usage(PROTOCOL).streams_inbound, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_budget_refuses_the_extra_inbound_stream() {
    let a = tcp_host(quiet(|c| c.resources.peer.streams_inbound = 1)).await;
    let b = tcp_host(quiet(|_| {})).await;
    let mut incoming = a.accept(PROTOCOL).unwrap();
    let mut events = a.events();
    connect(&b, &a).await;
    let first_out = open(&b, &a).await.unwrap();
    let first_in = accepted(&mut incoming).await;
    // Refused before negotiation: the peer's budget is full whatever the protocol.
    let second = open(&b, &a).await;
    assert!(second.is_err(), "{second:?}");
    let (protocol, reason) = next_refusal(&mut events).await;
    assert_eq!(protocol, None);
    match reason {
        RefusedReason::Resource(e) => {
            assert_eq!(
                e,
                limit(ResourceScope::Peer, ResourceKind::InboundStreams, 1)
            )
        }
        other => panic!("{other:?}"),
    }
    drop((first_out, first_in));
    usage_becomes(&a, memory(a.config().resources.memory_per_connection)).await;
    let _again = open(&b, &a).await.unwrap();
    let _again_in = accepted(&mut incoming).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_budget_refuses_the_extra_outbound_stream() {
    let a = tcp_host(quiet(|_| {})).await;
    let b = tcp_host(quiet(|c| c.resources.peer.streams_outbound = 2)).await;
    let mut incoming = a.accept(PROTOCOL).unwrap();
    connect(&b, &a).await;
    let first = open(&b, &a).await.unwrap();
    let _second = open(&b, &a).await.unwrap();
    // The third is refused before anything is sent.
    match open(&b, &a).await {
        Err(NewStreamError::Resource { peer, source }) => {
            assert_eq!(peer, a.peer_id());
            assert_eq!(
                source,
                limit(ResourceScope::Peer, ResourceKind::OutboundStreams, 2)
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.peer_resource_usage(&a.peer_id()).streams_outbound, 2);
    drop(first);
    assert_eq!(b.peer_resource_usage(&a.peer_id()).streams_outbound, 1);
    let _third = open(&b, &a).await.unwrap();
    for _ in 0..3 {
        accepted(&mut incoming).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_budget_refuses_streams_and_connections_and_releases_exactly() {
    let a = tcp_host(quiet(|c| {
        c.resources.memory_per_connection = 1_000;
        c.resources.memory_per_stream = 1_000;
        c.resources.host.memory = 2_500;
    }))
    .await;
    let b = tcp_host(quiet(|_| {})).await;
    let c = tcp_host(quiet(|_| {})).await;
    let mut incoming = a.accept(PROTOCOL).unwrap();
    let mut events = a.events();
    connect(&b, &a).await;
    usage_becomes(&a, memory(1_000)).await;
    let stream_out = open(&b, &a).await.unwrap();
    let stream_in = accepted(&mut incoming).await;
    assert_eq!(a.resource_usage().memory, 2_000);
    // A second stream's 1,000 bytes do not fit in the 500 left.
    let _refused = open(&b, &a).await;
    let (_, reason) = next_refusal(&mut events).await;
    match reason {
        RefusedReason::Resource(e) => {
            assert_eq!(e, limit(ResourceScope::Host, ResourceKind::Memory, 2_500))
        }
        other => panic!("{other:?}"),
    }
    // Nor does a second connection's.
    let _ = tokio::time::timeout(BOUND, c.dial(a.p2p_addrs()[0].clone())).await;
    let reason = tokio::time::timeout(BOUND, async {
        loop {
            if let Some(Event::InboundConnectionRefused { reason, .. }) = events.next().await {
                return reason;
            }
        }
    })
    .await
    .expect("a connection refusal");
    assert_eq!(
        reason,
        ConnectionRefusedReason::Resource(limit(ResourceScope::Host, ResourceKind::Memory, 2_500))
    );
    assert!(!a.is_connected(&c.peer_id()));
    // Everything released: the stream, then the connection.
    drop((stream_out, stream_in));
    usage_becomes(&a, memory(1_000)).await;
    b.disconnect(a.peer_id()).await;
    usage_becomes(&a, ResourceUsage::default()).await;
    assert_eq!(
        a.peer_resource_usage(&b.peer_id()),
        ResourceUsage::default()
    );
}
