//! Telemetry: what ringtls tells its operator: the event log on stderr, and the metrics and
//! health endpoint.

pub mod http;
pub mod log;
pub mod metrics;
pub mod sink;
