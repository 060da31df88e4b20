//! Go's duration syntax, as the reference's settings and messages use it: `90s`, `1m30s`,
//! `1h0m0s`. Parsed for configuration, rendered for errors that must match the reference's.

use std::time::Duration;

/// Parses Go's `time.ParseDuration` syntax (`90s`, `1m30s`, `1.5h`, `300ms`, `0`); negative
/// durations parse to `None` because no knob of ours accepts them.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() || rest.starts_with('-') {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds_per_unit;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).ok()
}

/// Renders a duration the way Go's `time.Duration.String()` does (`1h0m0s`, `1m30s`, `1.5s`,
/// `300ms`), for messages that must match the reference's.
pub fn format_go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000_000_000 {
        let (value, unit) = match nanos {
            n if n < 1_000 => (n as f64, "ns"),
            n if n < 1_000_000 => (n as f64 / 1e3, "µs"),
            n => (n as f64 / 1e6, "ms"),
        };
        return format!("{}{unit}", trim_float(value));
    }
    let total_seconds = d.as_secs();
    let (hours, minutes) = (total_seconds / 3600, total_seconds % 3600 / 60);
    let seconds = (total_seconds % 60) as f64 + f64::from(d.subsec_nanos()) / 1e9;
    let seconds = format!("{}s", trim_float(seconds));
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

fn trim_float(value: f64) -> String {
    let text = format!("{value:.9}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_duration_rendering() {
        let f = |s| format_go_duration(Duration::from_secs_f64(s));
        assert_eq!(f(3600.0), "1h0m0s");
        assert_eq!(f(10_800.0), "3h0m0s");
        assert_eq!(f(90.0), "1m30s");
        assert_eq!(f(600.0), "10m0s");
        assert_eq!(f(1.5), "1.5s");
        assert_eq!(f(0.3), "300ms");
        assert_eq!(f(3661.25), "1h1m1.25s");
        assert_eq!(f(0.0), "0s");
    }

    #[test]
    fn go_durations() {
        let secs = |s| parse_go_duration(s).map(|d| d.as_secs_f64());
        assert_eq!(secs("10s"), Some(10.0));
        assert_eq!(secs("1m30s"), Some(90.0));
        assert_eq!(secs("5m"), Some(300.0));
        assert_eq!(secs("1.5h"), Some(5400.0));
        assert_eq!(secs("300ms"), Some(0.3));
        assert_eq!(secs("0"), Some(0.0));
        assert_eq!(secs("0s"), Some(0.0));
        for bad in ["", "garbage", "-5m", "5", "1x", "m", "1m30"] {
            assert_eq!(secs(bad), None, "{bad:?}");
        }
    }
}
