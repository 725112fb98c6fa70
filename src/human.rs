//! Sizes and durations as people read them (`14.8 MiB`, `4m05s`), the same in the TUI, headless
//! progress lines, `dino runs` and `dino ctl`.

pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn fmt_duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    let s = secs.round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h >= 24 {
        format!("{}d{:02}h", h / 24, h % 24)
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

/// The longest wait any duration flag or variable takes: a week. Longer ones are typos (`1e19`
/// would overflow `Duration` and panic), not plans.
pub const MAX_WAIT_SECS: f64 = 7.0 * 24.0 * 3600.0;

/// A number of seconds given by a person (`--timeout 3`, `DINO_DIST_TIMEOUT=1800`), refused unless
/// finite, above 0 and at most `MAX_WAIT_SECS`; the error names the setting.
pub fn parse_seconds(setting: &str, text: &str) -> Result<std::time::Duration, String> {
    let secs: f64 = text.trim().parse().map_err(|_| format!("{setting} {text}: not a number of seconds"))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("{setting} {text}: must be a positive number of seconds"));
    }
    if secs > MAX_WAIT_SECS {
        return Err(format!("{setting} {text}: at most {MAX_WAIT_SECS} seconds (a week)"));
    }
    std::time::Duration::try_from_secs_f64(secs).map_err(|e| format!("{setting} {text}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_range_checked_with_the_setting_named() {
        assert_eq!(parse_seconds("--timeout", "2.5"), Ok(std::time::Duration::from_millis(2500)));
        for (bad, needle) in
            [("1e19", "at most"), ("inf", "positive"), ("nan", "positive"), ("-1", "positive"), ("0", "positive"), ("x", "not a number")]
        {
            let e = parse_seconds("--timeout", bad).expect_err(bad);
            assert!(e.starts_with("--timeout") && e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(fmt_duration(12.4), "12s");
        assert_eq!(fmt_duration(245.0), "4m05s");
        assert_eq!(fmt_duration(3720.0), "1h02m");
        assert_eq!(fmt_duration(200_000.0), "2d07h");
        assert_eq!(fmt_duration(f64::NAN), "?");
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(15_518_925), "14.8 MiB");
    }
}
