//! Logging: `tracing` to stdout, as text or JSON lines.
//!
//! Every HTTP request gets a span (method, path, request id) and every
//! Socket.IO connection one (sid, transport, user), so each line can be
//! traced to its request or connection. Secrets never reach a log: they are
//! held in [`crate::config::Secret`], whose `Debug` is redacted, and no
//! handler logs tokens, keys or cookies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default
/// `info`).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
