//! How ringtls writes times, in one place, with the `time` crate's formatter: RFC 3339 UTC for
//! the event log and machine-read fields, and a spelled-out form for `check` and warnings.
//! A leaf module: the log, the certificate code and `check` all use it, and it uses none of them.

use std::fmt;
use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;

const RFC3339_MILLIS: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
const RFC3339: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
const SPELLED: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");

/// A wall-clock instant as RFC 3339 UTC with milliseconds: `2026-11-29T16:10:59.102Z`.
pub(crate) struct Utc(SystemTime);

impl Utc {
    pub(crate) fn now() -> Self {
        Utc(SystemTime::now())
    }
}

impl fmt::Display for Utc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = OffsetDateTime::from(self.0);
        match at.format(RFC3339_MILLIS) {
            Ok(text) => f.write_str(&text),
            Err(_) => write!(f, "{at}"),
        }
    }
}

/// A Unix timestamp as RFC 3339: `2026-11-29T14:00:00Z`.
pub(crate) fn rfc3339(unix: i64) -> String {
    format_unix(unix, RFC3339)
}

/// A Unix timestamp spelled out: `2026-11-29 14:00:00 UTC`.
pub(crate) fn spelled(unix: i64) -> String {
    format_unix(unix, SPELLED)
}

/// Outside the years the formatter covers (a certificate may say anything), the number itself.
fn format_unix(unix: i64, format: &[FormatItem<'_>]) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|at| at.format(format).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn formats_as_before() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_910_400), "2026-11-29T00:00:00Z");
        assert_eq!(spelled(951_782_400 + 3_723), "2000-02-29 01:02:03 UTC");
        let at = UNIX_EPOCH + Duration::from_millis(1_795_910_400_102) + Duration::from_micros(999);
        assert_eq!(Utc(at).to_string(), "2026-11-29T00:00:00.102Z");
    }

    #[test]
    fn out_of_range_is_the_number() {
        assert_eq!(rfc3339(i64::MAX), format!("@{}", i64::MAX));
    }
}
