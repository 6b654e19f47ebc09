//! Resolving against a DNS responder of the test's own on 127.0.0.1, and dialing what comes
//! back over real sockets.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::{test_config, Responder, Zone};
use futures::StreamExt;
use libp2p_core::{Classify, Fault, ListenerEvent, Multiaddr, PeerId, Transport};
use libp2p_dns::{Config, Dns, DnsError, HickoryResolver};
use libp2p_transport_tcp::TcpTransport;

fn ma(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

fn strs(addrs: &[Multiaddr]) -> Vec<String> {
    addrs.iter().map(|a| a.to_string()).collect()
}

#[tokio::test]
async fn a_dns4_name_resolves_to_a_listener_that_accepts_the_dial() {
    let tcp = TcpTransport::new();
    let mut listener = tcp.listen(ma("/ip4/127.0.0.1/tcp/0")).unwrap();
    let Some(ListenerEvent::NewAddress(bound)) = listener.next().await else {
        panic!("no address");
    };
    let port = bound.to_string().rsplit('/').next().unwrap().to_string();
    let zone = Zone::default().a("node.test", Ipv4Addr::LOCALHOST);
    let responder = Responder::start(zone).await;
    let dns = responder.dns(test_config());
    let resolved = dns
        .resolve(&ma(&format!("/dns4/node.test/tcp/{port}")))
        .await
        .unwrap();
    assert_eq!(resolved, vec![bound.clone()]);
    let accept = tokio::spawn(async move {
        loop {
            if let Some(ListenerEvent::Incoming { .. }) = listener.next().await {
                return;
            }
        }
    });
    tcp.dial(resolved[0].clone()).await.unwrap();
    accept.await.unwrap();
}

#[tokio::test]
async fn dns6_asks_for_aaaa_and_dns_for_both() {
    let zone = Zone::default()
        .a("both.test", Ipv4Addr::new(127, 0, 0, 7))
        .aaaa("both.test", Ipv6Addr::LOCALHOST);
    let responder = Responder::start(zone).await;
    let dns = responder.dns(test_config());
    let six = dns.resolve(&ma("/dns6/both.test/tcp/5")).await.unwrap();
    assert_eq!(strs(&six), ["/ip6/::1/tcp/5"]);
    let four = dns.resolve(&ma("/dns4/both.test/tcp/5")).await.unwrap();
    assert_eq!(strs(&four), ["/ip4/127.0.0.7/tcp/5"]);
    let any = dns.resolve(&ma("/dns/both.test/tcp/5")).await.unwrap();
    let mut any = strs(&any);
    any.sort();
    assert_eq!(any, ["/ip4/127.0.0.7/tcp/5", "/ip6/::1/tcp/5"]);
}

#[tokio::test]
async fn dnsaddr_is_followed_through_nested_names_and_filtered_by_peer_id() {
    let one = PeerId::random();
    let two = PeerId::random();
    let zone = Zone::default()
        .txt(
            "_dnsaddr.boot.test",
            &format!("dnsaddr=/dnsaddr/a.boot.test/p2p/{one}"),
        )
        .txt(
            "_dnsaddr.boot.test",
            &format!("dnsaddr=/dnsaddr/b.boot.test/p2p/{two}"),
        )
        .txt("_dnsaddr.boot.test", "v=spf1 -all")
        .txt("_dnsaddr.boot.test", "dnsaddr=not a multiaddr")
        .txt(
            "_dnsaddr.a.boot.test",
            &format!("dnsaddr=/ip4/127.0.0.1/tcp/1/p2p/{one}"),
        )
        .txt(
            "_dnsaddr.a.boot.test",
            &format!("dnsaddr=/dns4/n1.test/tcp/2/p2p/{one}"),
        )
        .txt(
            "_dnsaddr.b.boot.test",
            &format!("dnsaddr=/ip4/127.0.0.3/tcp/3/p2p/{two}"),
        )
        .a("n1.test", Ipv4Addr::new(127, 0, 0, 2));
    let responder = Responder::start(zone).await;
    let dns = responder.dns(test_config());

    let all = dns.resolve(&ma("/dnsaddr/boot.test")).await.unwrap();
    assert_eq!(
        strs(&all),
        [
            format!("/ip4/127.0.0.1/tcp/1/p2p/{one}"),
            format!("/ip4/127.0.0.2/tcp/2/p2p/{one}"),
            format!("/ip4/127.0.0.3/tcp/3/p2p/{two}"),
        ]
    );
    let only_two = dns
        .resolve(&ma(&format!("/dnsaddr/boot.test/p2p/{two}")))
        .await
        .unwrap();
    assert_eq!(strs(&only_two), [format!("/ip4/127.0.0.3/tcp/3/p2p/{two}")]);

    let nobody = PeerId::random();
    let err = dns
        .resolve(&ma(&format!("/dnsaddr/boot.test/p2p/{nobody}")))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NoAddresses { .. }), "{err}");
}

#[tokio::test]
async fn a_dnsaddr_loop_stops_at_the_depth_limit() {
    let zone = Zone::default()
        .txt("_dnsaddr.loop.test", "dnsaddr=/dnsaddr/loop2.test")
        .txt("_dnsaddr.loop2.test", "dnsaddr=/dnsaddr/loop.test");
    let responder = Responder::start(zone).await;
    let mut config = test_config();
    config.max_depth = 5;
    let dns = responder.dns(config);
    let err = dns.resolve(&ma("/dnsaddr/loop.test")).await.unwrap_err();
    assert!(matches!(err, DnsError::TooDeep { limit: 5 }), "{err}");
    assert_eq!(err.fault(), Fault::Remote);
    assert!(responder.queries() <= 5, "{} queries", responder.queries());
}

#[tokio::test]
async fn a_wide_dnsaddr_tree_stops_at_the_lookup_limit() {
    // Every name lists 16 further names: 16^depth lookups if nothing stopped it.
    let mut zone = Zone::default();
    for parent in ["root"].into_iter().chain(["c0", "c1", "c2", "c3"]) {
        for child in 0..16 {
            zone = zone.txt(
                &format!("_dnsaddr.{parent}.test"),
                &format!("dnsaddr=/dnsaddr/c{}.test", child % 4),
            );
        }
    }
    let responder = Responder::start(zone).await;
    let mut config = test_config();
    config.max_lookups = 20;
    config.max_depth = 100;
    let dns = responder.dns(config);
    let err = dns.resolve(&ma("/dnsaddr/root.test")).await.unwrap_err();
    assert!(
        matches!(err, DnsError::TooManyLookups { limit: 20 }),
        "{err}"
    );
    // The resolver caches, so repeated names cost no query; never more than the limit.
    assert!(responder.queries() <= 20, "{} queries", responder.queries());
}

#[tokio::test]
async fn an_unknown_name_is_not_found_and_the_network_is_to_blame() {
    let responder = Responder::start(Zone::default()).await;
    let dns = responder.dns(test_config());
    let err = dns
        .resolve(&ma("/dns4/nowhere.test/tcp/1"))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::NotFound { .. }), "{err}");
    assert_eq!(err.fault(), Fault::Network);
    let err = dns.resolve(&ma("/dnsaddr/nowhere.test")).await.unwrap_err();
    assert!(matches!(err, DnsError::NotFound { .. }), "{err}");
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let responder = Responder::start(Zone::default().a("x.test", Ipv4Addr::LOCALHOST)).await;
    responder
        .silent
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dns = responder.dns(test_config());
    let err = dns.resolve(&ma("/dns4/x.test/tcp/1")).await.unwrap_err();
    assert_eq!(err.fault(), Fault::Timeout, "{err}");
}

#[tokio::test]
async fn localhost_and_ip_addresses_need_no_server() {
    // No server at all: a resolver pointed at a port where nothing answers.
    let dns = Dns::new(
        HickoryResolver::with_servers(
            vec!["127.0.0.1:9".parse().unwrap()],
            test_config().lookup_timeout,
        ),
        Config::default(),
    );
    let local = dns.resolve(&ma("/dns4/localhost/tcp/7")).await.unwrap();
    assert_eq!(strs(&local), ["/ip4/127.0.0.1/tcp/7"]);
    let plain = dns.resolve(&ma("/ip4/10.0.0.1/tcp/7")).await.unwrap();
    assert_eq!(strs(&plain), ["/ip4/10.0.0.1/tcp/7"]);
}
