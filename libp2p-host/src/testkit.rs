//! Host builders the workspace's tests share (the `testkit` feature): test helpers, so they
//! panic when a host cannot be built.

use crate::{Config, Host, Keypair};

/// The default config changed by `f`.
pub fn config(f: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    f(&mut config);
    config
}

/// A config without identify and ping, changed by `f`: no stream opens unless a test opens it.
pub fn quiet(f: impl FnOnce(&mut Config)) -> Config {
    config(|config| {
        config.identify = false;
        config.ping = false;
        f(config);
    })
}

/// A host with a fresh Ed25519 key and `config`, listening on the default stack at
/// `/ip4/127.0.0.1/tcp/0`.
pub async fn tcp_host(config: Config) -> Host {
    Host::builder(Keypair::generate_ed25519())
        .config(config)
        .listen_on(
            "/ip4/127.0.0.1/tcp/0"
                .parse()
                .expect("a valid listen address"),
        )
        .build()
        .await
        .expect("host")
}

/// A host of `key` and `config` listening on `/memory/0` over `transport` (a memory stack
/// built for that key).
pub async fn memory_host_over<T>(key: Keypair, config: Config, transport: T) -> Host
where
    T: libp2p_core::Transport,
    T::Output: libp2p_core::IntoConnection,
{
    Host::builder(key)
        .config(config)
        .listen_on("/memory/0".parse().expect("a valid listen address"))
        .build_with_transport(transport)
        .await
        .expect("host")
}
