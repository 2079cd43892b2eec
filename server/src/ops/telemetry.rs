//! Logging: `tracing` to stdout, as text or JSON lines.
//!
//! Every HTTP request gets a span (method, path, request id) and every
//! Socket.IO connection one (sid, transport, user), so each line can be
//! traced to its request or connection. Secrets never reach a log: they are
//! held in [`crate::config::Secret`], whose `Debug` is redacted, and no
//! handler logs tokens, keys or cookies.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Targets whose debug logs print raw Socket.IO packets, handshake tokens
/// included: held at `info` whatever `RUST_LOG` asks for.
const RAW_PACKET_TARGETS: [&str; 2] = ["socketioxide=info", "engineioxide=info"];

/// Installs the global `tracing` subscriber. `RUST_LOG` filters (default
/// `info`).
pub fn init(format: LogFormat) {
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for directive in RAW_PACKET_TARGETS {
        filter = filter.add_directive(directive.parse().expect("a valid directive"));
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
}
