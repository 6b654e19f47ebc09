//! What the example programs share: their logging.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The log filter of the examples: `RUST_LOG` when set, else `warn`. The `yamux` crate logs one
/// line per bad frame a remote sends (at error level); those stay out unless `RUST_LOG` asks for
/// them, so a misbehaving peer cannot flood the log.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,yamux=off"))
}

/// Logs to stderr (stdout is the programs' output) through [`log_filter`].
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .init();
}

/// The error of the small samples' `run`.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The `main` of a small sample called `name`: sets up logging, hands `run` the command-line
/// arguments (after the program's name) and, if it fails, prints `name: error` and exits
/// with status 1.
pub async fn sample_main<F, Fut>(name: &str, run: F)
where
    F: FnOnce(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    init_logging();
    if let Err(e) = run(std::env::args().skip(1).collect()).await {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// A host of a fresh Ed25519 identity listening on `addr`.
pub async fn listening_host(addr: libp2p_host::Multiaddr) -> Result<libp2p_host::Host, Error> {
    Ok(
        libp2p_host::Host::builder(libp2p_host::Keypair::generate_ed25519())
            .listen_on(addr)
            .build()
            .await?,
    )
}

/// Prints `host`'s addresses, serves until Ctrl-C, then closes it.
pub async fn serve_until_ctrl_c(host: libp2p_host::Host) -> Result<(), Error> {
    for addr in host.p2p_addrs() {
        println!("listening on {addr}");
    }
    tokio::signal::ctrl_c().await?;
    host.close().await;
    Ok(())
}
