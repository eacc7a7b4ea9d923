//! The event log: one line per event on stderr, `TIME LEVEL event key=value ...`, or one JSON
//! object per line with `--log-format json`.
//!
//! stdout is reserved for machine-readable output (the `{"listening":[...]}` readiness line, the
//! `check` table), so every human-facing line goes through here to stderr. Each line is formatted
//! in full by the thread that emits it and handed to `sink`, whose one writer thread writes whole
//! lines, so lines from different workers never interleave and no worker waits on stderr.
//!
//! What is logged is chosen once at start: `--log-level` drops events below a severity and
//! `--log-connections` drops the per-connection ones; a dropped event is never formatted.

use std::fmt::{self, Write as _};
use std::sync::OnceLock;

use super::sink::{self, Sink};
use crate::time_format::Utc;

/// Severity of an event line, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Level {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARNING",
            Level::Error => "ERROR",
        }
    }

    /// The `--log-level` spelling.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
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

/// Which per-connection events are logged (`--log-connections`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Connections {
    /// `conn.closed` and `conn.rejected`, one line per connection.
    #[default]
    All,
    /// Refusals (`conn.rejected`) and connections that ended in a failure logged at WARN or
    /// above; not the normal closes.
    Rejected,
    /// None (the metrics still count them).
    None,
}

impl Connections {
    /// The `--log-connections` spelling.
    pub fn parse(s: &str) -> Option<Connections> {
        match s {
            "all" => Some(Connections::All),
            "rejected" => Some(Connections::Rejected),
            "none" => Some(Connections::None),
            _ => None,
        }
    }
}

/// What the event log writes: format and filters, chosen once at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LogSettings {
    pub format: Format,
    /// Events below this level are not logged.
    pub level: Level,
    pub connections: Connections,
}

static SETTINGS: OnceLock<LogSettings> = OnceLock::new();

/// Chooses the settings once, at start; later calls are ignored.
pub fn configure(settings: LogSettings) {
    let _ = SETTINGS.set(settings);
}

fn settings() -> LogSettings {
    SETTINGS.get().copied().unwrap_or_default()
}

/// The queue to stderr, started with the first event.
static SINK: OnceLock<Option<Sink>> = OnceLock::new();

fn sink() -> Option<&'static Sink> {
    SINK.get_or_init(|| Sink::start(dropped_line)).as_ref()
}

/// The line the writer adds once stderr takes lines again after dropping `n`.
fn dropped_line(n: u64) -> String {
    Event::warn("log.dropped")
        .num("count", n)
        .text(
            "message",
            "stderr did not take event lines in time; they were dropped, not waited for",
        )
        .into_line()
}

/// Waits (at most `limit`) until the lines emitted so far are written; see `Sink::flush`.
pub fn flush(limit: std::time::Duration) -> bool {
    SINK.get()
        .and_then(Option::as_ref)
        .is_none_or(|sink| sink.flush(limit))
}

/// Event lines dropped because stderr did not take them in time.
pub fn dropped_total() -> u64 {
    sink::dropped_total()
}

/// One event line, built field by field in the chosen format and written with `emit`. An
/// event the settings filter out is disabled: its builders do nothing and it costs no
/// formatting.
pub struct Event {
    line: String,
    json: bool,
    enabled: bool,
}

impl Event {
    pub fn new(level: Level, name: &str) -> Event {
        let settings = settings();
        if level < settings.level {
            return Event::disabled();
        }
        let json = settings.format == Format::Json;
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
        Event {
            line,
            json,
            enabled: true,
        }
    }

    /// A per-connection event (`conn.closed`, `conn.rejected`), also subject to
    /// `--log-connections`; errors are always logged.
    pub fn connection(level: Level, name: &str) -> Event {
        let keep = match settings().connections {
            Connections::All => true,
            Connections::Rejected => name == "conn.rejected" || level >= Level::Warn,
            Connections::None => level >= Level::Error,
        };
        if keep {
            Event::new(level, name)
        } else {
            Event::disabled()
        }
    }

    fn disabled() -> Event {
        Event {
            line: String::new(),
            json: false,
            enabled: false,
        }
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

    pub fn debug(name: &str) -> Event {
        Event::new(Level::Debug, name)
    }

    /// A number: bare in both formats.
    pub fn num(mut self, key: &str, value: impl Into<u128>) -> Event {
        if !self.enabled {
            return self;
        }
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
        if !self.enabled {
            return self;
        }
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
        if !self.enabled {
            return self;
        }
        if self.json {
            let _ = write!(self.line, ",\"{key}\":{}", JsonStr(value));
        } else {
            let _ = write!(self.line, " {key}={}", Quoted(value));
        }
        self
    }

    /// Queues the line for stderr (see `sink`): never blocks, never fails.
    pub fn emit(self) {
        if !self.enabled {
            return;
        }
        match sink() {
            Some(sink) => sink.push(self.into_line()),
            None => sink::count_dropped(1),
        }
    }

    /// The finished line, newline included, without queueing it (the `log.dropped` line; the
    /// log benchmark).
    pub fn into_line(mut self) -> String {
        if self.json {
            self.line.push('}');
        }
        self.line.push('\n');
        self.line
    }
}

/// A JSON string literal, escaped per RFC 8259.
struct JsonStr<'a>(&'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        quote(
            f,
            self.0,
            |c| (c as u32) < 0x20,
            |f, c| write!(f, "\\u{:04x}", c as u32),
        )
    }
}

/// Writes `s` in double quotes, escaping `"`, `\` and the characters `special` picks with
/// `escape`; runs of plain characters go out in one piece (per-character formatting made an
/// event line cost microseconds).
fn quote(
    f: &mut fmt::Formatter<'_>,
    s: &str,
    special: impl Fn(char) -> bool,
    escape: impl Fn(&mut fmt::Formatter<'_>, char) -> fmt::Result,
) -> fmt::Result {
    f.write_str("\"")?;
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        if c != '"' && c != '\\' && !special(c) {
            continue;
        }
        f.write_str(&s[plain..i])?;
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            c => escape(f, c)?,
        }
        plain = i + c.len_utf8();
    }
    f.write_str(&s[plain..])?;
    f.write_str("\"")
}

/// Quotes a value for a `key="value"` field when it holds spaces, quotes or control characters,
/// so a hostile certificate subject cannot forge extra fields or lines.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        quote(f, self.0, char::is_control, |f, c| {
            write!(f, "\\u{{{:x}}}", c as u32)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_json_strings() {
        assert_eq!(JsonStr("a\"b\\c\n").to_string(), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn quotes_control_characters() {
        assert_eq!(Quoted("a\"b\nc").to_string(), "\"a\\\"b\\u{a}c\"");
    }
}
