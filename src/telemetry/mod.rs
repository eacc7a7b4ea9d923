//! Telemetry: what ringtls tells its operator: the event log on stderr, and the metrics and
//! health endpoint.

pub(crate) mod http;
pub mod log;
pub(crate) mod metrics;
pub(crate) mod readiness;
pub(crate) mod sink;
