//! The event log: one line per event on stderr, `TIME LEVEL event key=value ...`, or one JSON
//! object per line with `--log-format json`.
//!
//! stdout is reserved for machine-readable output (the `{"listening":[...]}` readiness line, the
//! `check` table), so every human-facing line goes through here to stderr. Each line is formatted
//! in full and written with one `write_all` on a locked handle, so lines from different workers
//! never interleave.

use std::fmt::{self, Write as _};
use std::io::Write;
use std::sync::OnceLock;
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

/// How event lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    /// `TIME LEVEL event key=value ...`, strings quoted.
    #[default]
    Text,
    /// One JSON object per line: `{"time":..,"level":..,"event":..,"key":value,...}`.
    Json,
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Chooses the format once, at start; later calls are ignored.
pub fn set_format(format: Format) {
    let _ = FORMAT.set(format);
}

fn format() -> Format {
    FORMAT.get().copied().unwrap_or_default()
}

/// One event line, built field by field in the chosen format and written with `emit`.
pub struct Event {
    line: String,
    json: bool,
}

impl Event {
    pub fn new(level: Level, name: &str) -> Event {
        let json = format() == Format::Json;
        let mut line = String::with_capacity(256);
        // Writing into a String cannot fail; results are ignored throughout.
        if json {
            let _ = write!(
                line,
                "{{\"time\":\"{}\",\"level\":\"{}\",\"event\":{}",
                Utc::now(),
                level.as_str(),
                JsonStr(name)
            );
        } else {
            let _ = write!(line, "{} {} {}", Utc::now(), level.as_str(), name);
        }
        Event { line, json }
    }

    pub fn info(name: &str) -> Event {
        Event::new(Level::Info, name)
    }

    pub fn warn(name: &str) -> Event {
        Event::new(Level::Warn, name)
    }

    pub fn error(name: &str) -> Event {
        Event::new(Level::Error, name)
    }

    /// A number: bare in both formats.
    pub fn num(mut self, key: &str, value: impl Into<u128>) -> Event {
        let value: u128 = value.into();
        if self.json {
            let _ = write!(self.line, ",\"{key}\":{value}");
        } else {
            let _ = write!(self.line, " {key}={value}");
        }
        self
    }

    /// A token without spaces (an address, a reason word): bare in text, a string in JSON.
    pub fn word(mut self, key: &str, value: impl fmt::Display) -> Event {
        if self.json {
            let _ = write!(self.line, ",\"{key}\":{}", JsonStr(&value.to_string()));
        } else {
            let _ = write!(self.line, " {key}={value}");
        }
        self
    }

    /// Free text, possibly from a client (a certificate subject): quoted in text, so it cannot
    /// forge fields or lines; a JSON string.
    pub fn text(mut self, key: &str, value: &str) -> Event {
        if self.json {
            let _ = write!(self.line, ",\"{key}\":{}", JsonStr(value));
        } else {
            let _ = write!(self.line, " {key}={}", Quoted(value));
        }
        self
    }

    /// Writes the line to stderr with one `write_all` on a locked handle.
    pub fn emit(mut self) {
        if self.json {
            self.line.push('}');
        }
        self.line.push('\n');
        // A closed stderr must not take a worker down: the event is dropped.
        let _ = std::io::stderr().lock().write_all(self.line.as_bytes());
    }
}

/// A JSON string literal, escaped per RFC 8259.
struct JsonStr<'a>(&'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                c if (c as u32) < 0x20 => write!(f, "\\u{:04x}", c as u32)?,
                c => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
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
    fn escapes_json_strings() {
        assert_eq!(JsonStr("a\"b\\c\n").to_string(), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn quotes_control_characters() {
        assert_eq!(Quoted("a\"b\nc").to_string(), "\"a\\\"b\\u{a}c\"");
    }
}
