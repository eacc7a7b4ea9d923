//! The event log: one line per event on stderr, `TIME LEVEL event key=value ...`.
//!
//! stdout is reserved for machine-readable output (the `{"listening":[...]}` readiness line, the
//! `check` table), so every human-facing line goes through here to stderr. Each line is formatted
//! in full and written with one `write_all` on a locked handle, so lines from different workers
//! never interleave.

use std::fmt;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity of an event line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// Writes one event line: `2026-11-29T14:00:00.123Z INFO name fields`.
pub fn event(level: Level, name: &str, fields: fmt::Arguments<'_>) {
    let mut line = String::with_capacity(160);
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(
        line,
        "{} {} {} {}",
        Utc::now(),
        level.as_str(),
        name,
        fields
    );
    line.push('\n');
    // A closed stderr must not take a worker down: the event is dropped.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Logs an informational event: `info!("conn.closed", "peer={} up={}", peer, up)`.
#[macro_export]
macro_rules! info {
    ($name:expr, $($arg:tt)*) => {
        $crate::telemetry::log::event($crate::telemetry::log::Level::Info, $name, format_args!($($arg)*))
    };
}

/// Logs a warning event.
#[macro_export]
macro_rules! warn {
    ($name:expr, $($arg:tt)*) => {
        $crate::telemetry::log::event($crate::telemetry::log::Level::Warn, $name, format_args!($($arg)*))
    };
}

/// Logs an error event.
#[macro_export]
macro_rules! error {
    ($name:expr, $($arg:tt)*) => {
        $crate::telemetry::log::event($crate::telemetry::log::Level::Error, $name, format_args!($($arg)*))
    };
}

/// A wall-clock instant formatted as RFC 3339 UTC with milliseconds.
pub struct Utc(SystemTime);

impl Utc {
    pub fn now() -> Self {
        Utc(SystemTime::now())
    }
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let rem = secs.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            since.subsec_millis()
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Quotes a value for a `key="value"` field when it holds spaces, quotes or control characters,
/// so a hostile certificate subject cannot forge extra fields or lines.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_epoch_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn quotes_control_characters() {
        assert_eq!(Quoted("a\"b\nc").to_string(), "\"a\\\"b\\u{a}c\"");
    }
}
