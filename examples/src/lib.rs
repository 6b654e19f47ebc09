//! What the example programs share: their log filter.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The log filter of the examples: `RUST_LOG` when set, else `warn`. The `yamux` crate logs one
/// line per bad frame a remote sends (at error level); those stay out unless `RUST_LOG` asks for
/// them, so a misbehaving peer cannot flood the log.
pub fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,yamux=off"))
}
