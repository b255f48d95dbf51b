//! Timestamps on the command line (`export --since/--until`): RFC 3339 or integer nanoseconds.

/// Parses `s` as Unix nanoseconds: an integer (`1767225600000000000`, `-5`), or an RFC 3339 date
/// and time with a `Z` or `±HH:MM` offset and up to 9 fraction digits
/// (`2026-01-01T00:00:00Z`, `2026-01-01T00:00:00.123456789+01:00`; `t`/`z` and a space for `T`
/// are accepted). Errors say what is wrong, for a usage error.
pub fn parse_ts(s: &str) -> Result<i64, String> {
    let bad = |why: &str| {
        format!("{s:?} is not a time: {why} (use RFC 3339 like 2026-01-01T00:00:00Z, or integer nanoseconds since the Unix epoch)")
    };
    let digits = s.strip_prefix('-').unwrap_or(s);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<i64>().map_err(|_| bad("out of range of i64 nanoseconds"));
    }
    let b = s.as_bytes();
    if b.len() < 20 {
        return Err(bad("too short"));
    }
    let num = |from: usize, len: usize| -> Result<i64, String> {
        let part = &b[from..from + len];
        if part.iter().all(u8::is_ascii_digit) {
            Ok(part.iter().fold(0i64, |a, d| a * 10 + i64::from(d - b'0')))
        } else {
            Err(bad("digits expected"))
        }
    };
    let sep = |at: usize, ok: &[u8]| if ok.contains(&b[at]) { Ok(()) } else { Err(bad("wrong separator")) };
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    sep(4, b"-")?;
    sep(7, b"-")?;
    sep(10, b"Tt ")?;
    let (hour, min, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    sep(13, b":")?;
    sep(16, b":")?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(bad("no such date"));
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err(bad("no such time of day (leap seconds are not accepted)"));
    }
    let mut at = 19;
    let mut frac_ns = 0i64;
    if b[at] == b'.' {
        let start = at + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let n = end - start;
        if n == 0 || n > 9 {
            return Err(bad("1 to 9 fraction digits"));
        }
        frac_ns = num(start, n)? * 10i64.pow(9 - n as u32);
        at = end;
    }
    let offset_s = match &b[at..] {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return Err(bad("no such offset"));
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return Err(bad("a Z or ±HH:MM offset expected after the seconds")),
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec - offset_s;
    secs.checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_add(frac_ns))
        .ok_or_else(|| bad("out of range of i64 nanoseconds (1677..2262)"))
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_ts;

    #[test]
    fn rfc3339_and_integers() {
        assert_eq!(parse_ts("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_ts("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000_000_000));
        assert_eq!(parse_ts("2026-01-01T00:00:00.123456789+01:00"), Ok(1_767_225_600_000_000_000 - 3_600_000_000_000 + 123_456_789));
        assert_eq!(parse_ts("2026-01-01t00:00:00.5z"), Ok(1_767_225_600_500_000_000));
        assert_eq!(parse_ts("2026-01-01 00:00:00-00:30"), Ok(1_767_225_600_000_000_000 + 1_800_000_000_000));
        assert_eq!(parse_ts("2024-02-29T23:59:59Z"), Ok(1_709_251_199_000_000_000));
        assert_eq!(parse_ts("1969-12-31T23:59:59.999999999Z"), Ok(-1));
        assert_eq!(parse_ts("1767225600000000000"), Ok(1_767_225_600_000_000_000));
        assert_eq!(parse_ts("-42"), Ok(-42));
        for bad in [
            "",
            "-",
            "yesterday",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T23:59:60Z",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00.1234567890Z",
            "2026-01-01T00:00:00+0100",
            "2026-01-01T00:00:00Zjunk",
            "2300-01-01T00:00:00Z",
            "99999999999999999999",
            "1.5",
        ] {
            assert!(parse_ts(bad).is_err(), "{bad:?} parsed");
        }
    }
}
