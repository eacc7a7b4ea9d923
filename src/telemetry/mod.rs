//! Telemetry: what ringtls tells its operator. Today that is the event log on stderr; metrics and
//! health endpoints join here when they land.

pub mod log;
