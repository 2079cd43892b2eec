//! Running Herald as a service: counters for operators, logging, draining
//! for a graceful shutdown.
//!
//! - [`metrics`]: counters and the Prometheus text of `GET /metrics`.
//! - [`telemetry`]: logging setup (text or JSON).
//! - [`lifecycle`]: draining in-flight work for a graceful shutdown.

pub mod lifecycle;
pub mod metrics;
pub mod telemetry;
