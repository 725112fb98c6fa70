//! Number, size, duration and time formatting shared by the tabs.

/// Compact value: scientific for very small or large magnitudes (learning rates), fixed otherwise.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-2..1e4).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

pub use crate::human::{fmt_bytes, fmt_duration};

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC; UTC keeps the view independent of the machine's zone.
pub fn fmt_utc(unix: f64) -> String {
    if !unix.is_finite() || unix < 0.0 {
        return "?".into();
    }
    let secs = unix as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_value(0.0005), "5.00e-4");
        assert_eq!(fmt_value(0.996), "0.9960");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_duration(3725.0), "1h02m");
        assert_eq!(fmt_duration(65.0), "1m05s");
        assert_eq!(fmt_utc(0.0), "1970-01-01 00:00:00");
        assert_eq!(fmt_utc(1_700_000_000.0), "2023-11-14 22:13:20");
    }
}
