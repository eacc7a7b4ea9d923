//! What a load run measured: counts, failures by label, a latency histogram (HdrHistogram, µs)
//! and bytes; merged across load threads and printed as text or one JSON object.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use hdrhistogram::Histogram;

/// One thread's (or the merged) measurements.
pub struct Stats {
    pub ok: u64,
    pub resumed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Microseconds, 1 µs to 100 s, 3 significant digits.
    pub latency: Histogram<u64>,
    pub bytes: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            ok: 0,
            resumed: 0,
            failures: BTreeMap::new(),
            // Constant bounds that HdrHistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
            latency: Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid constant bounds"),
            bytes: 0,
        }
    }
}

impl Stats {
    pub fn record_ok(&mut self, latency: Duration) {
        self.ok += 1;
        // Values above the bound are clamped rather than dropped.
        let _ = self
            .latency
            .record(latency.as_micros().clamp(1, 100_000_000) as u64);
    }

    pub fn record_failure(&mut self, label: String) {
        *self.failures.entry(label).or_insert(0) += 1;
    }

    pub fn merge(&mut self, other: &Stats) {
        self.ok += other.ok;
        self.resumed += other.resumed;
        for (k, v) in &other.failures {
            *self.failures.entry(k.clone()).or_insert(0) += v;
        }
        let _ = self.latency.add(&other.latency);
        self.bytes += other.bytes;
    }

    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// `--max-failures`: how many failed operations a run may have and still exit 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FailureLimit {
    /// No flag: only a run in which every operation failed is an error.
    AllFailed,
    /// `N`: more than N failed operations is an error.
    Count(u64),
    /// `P%`: failures above P percent of all operations (ok + failed) are an error.
    Percent(f64),
}

impl FailureLimit {
    /// Parses `N` or `P%` (P from 0 to 100, decimals allowed).
    pub fn parse(s: &str) -> Option<FailureLimit> {
        match s.strip_suffix('%') {
            Some(p) => p
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(FailureLimit::Percent),
            None => s.parse().ok().map(FailureLimit::Count),
        }
    }

    /// Why the run counts as failed, or `None` when it is within the limit.
    pub fn exceeded(self, s: &Stats) -> Option<String> {
        let failed = s.failed();
        let total = s.ok + failed;
        match self {
            FailureLimit::AllFailed if failed > 0 && s.ok == 0 => Some(format!(
                "every operation failed ({failed} of {failed}); pass --max-failures 100% if that is expected"
            )),
            FailureLimit::Count(n) if failed > n => Some(format!(
                "{failed} of {total} operations failed, more than --max-failures {n}"
            )),
            // Compared as counts, so that 0% means no failure at all and 100% never fails.
            FailureLimit::Percent(p) if failed as f64 > p / 100.0 * total as f64 => Some(format!(
                "{failed} of {total} operations failed ({:.1}%), more than --max-failures {p}%",
                100.0 * failed as f64 / total as f64
            )),
            _ => None,
        }
    }
}

/// The run's settings echoed in the report.
pub struct RunInfo<'a> {
    pub mode: &'a str,
    pub concurrency: usize,
    pub threads: usize,
    pub elapsed: Duration,
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One JSON object for scripts.
pub fn to_json(info: &RunInfo<'_>, s: &Stats) -> String {
    let secs = info.elapsed.as_secs_f64().max(1e-9);
    let failures: Vec<String> = s
        .failures
        .iter()
        .map(|(k, v)| format!("{}:{v}", json_str(k)))
        .collect();
    let resumed_fraction = if s.ok > 0 {
        s.resumed as f64 / s.ok as f64
    } else {
        0.0
    };
    format!(
        concat!(
            "{{\"mode\":{},\"concurrency\":{},\"threads\":{},\"seconds\":{:.3},\"ok\":{},\"failed\":{},",
            "\"failures\":{{{}}},\"per_second\":{:.1},\"resumed_fraction\":{:.4},",
            "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},\"bytes\":{},\"mib_per_s\":{:.1}}}"
        ),
        json_str(info.mode),
        info.concurrency,
        info.threads,
        secs,
        s.ok,
        s.failed(),
        failures.join(","),
        s.ok as f64 / secs,
        resumed_fraction,
        s.latency.value_at_quantile(0.5),
        s.latency.value_at_quantile(0.9),
        s.latency.value_at_quantile(0.99),
        s.latency.max(),
        s.bytes,
        s.bytes as f64 / secs / (1024.0 * 1024.0),
    )
}

/// A few lines for people.
pub fn to_text(info: &RunInfo<'_>, s: &Stats) -> String {
    let secs = info.elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "mode {} · {} connection(s) on {} thread(s) · {:.2} s",
        info.mode, info.concurrency, info.threads, secs
    );
    let _ = writeln!(
        out,
        "ok {} ({:.1}/s), failed {}",
        s.ok,
        s.ok as f64 / secs,
        s.failed()
    );
    for (label, n) in &s.failures {
        let _ = writeln!(out, "  {n} × {label}");
    }
    if s.resumed > 0 {
        let _ = writeln!(
            out,
            "resumed {:.1}%",
            100.0 * s.resumed as f64 / s.ok.max(1) as f64
        );
    }
    if s.ok > 0 {
        let _ = writeln!(
            out,
            "latency µs: p50 {} · p90 {} · p99 {} · max {}",
            s.latency.value_at_quantile(0.5),
            s.latency.value_at_quantile(0.9),
            s.latency.value_at_quantile(0.99),
            s.latency.max()
        );
    }
    if s.bytes > 0 {
        let _ = writeln!(
            out,
            "bytes {} ({:.1} MiB/s)",
            s.bytes,
            s.bytes as f64 / secs / (1024.0 * 1024.0)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(ok: u64, failed: u64) -> Stats {
        let mut s = Stats {
            ok,
            ..Stats::default()
        };
        if failed > 0 {
            s.failures.insert("refused".into(), failed);
        }
        s
    }

    #[test]
    fn parses_counts_and_percentages() {
        assert_eq!(FailureLimit::parse("0"), Some(FailureLimit::Count(0)));
        assert_eq!(FailureLimit::parse("12"), Some(FailureLimit::Count(12)));
        assert_eq!(FailureLimit::parse("5%"), Some(FailureLimit::Percent(5.0)));
        assert_eq!(
            FailureLimit::parse("0.5%"),
            Some(FailureLimit::Percent(0.5))
        );
        for bad in ["", "-1", "x", "101%", "%", "-1%", "NaN%", "5 %", "1e3"] {
            assert_eq!(FailureLimit::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn default_fails_only_when_every_operation_failed() {
        assert!(FailureLimit::AllFailed.exceeded(&stats(0, 3)).is_some());
        assert!(FailureLimit::AllFailed.exceeded(&stats(1, 3)).is_none());
        assert!(FailureLimit::AllFailed.exceeded(&stats(0, 0)).is_none());
    }

    #[test]
    fn limits_compare_failures_with_the_threshold() {
        assert!(FailureLimit::Count(2).exceeded(&stats(5, 2)).is_none());
        assert!(FailureLimit::Count(2).exceeded(&stats(5, 3)).is_some());
        assert!(FailureLimit::Percent(10.0).exceeded(&stats(9, 1)).is_none());
        assert!(FailureLimit::Percent(10.0).exceeded(&stats(8, 2)).is_some());
        assert!(FailureLimit::Percent(0.0).exceeded(&stats(9, 1)).is_some());
        assert!(
            FailureLimit::Percent(100.0)
                .exceeded(&stats(0, 9))
                .is_none()
        );
    }
}
