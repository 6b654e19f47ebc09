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
