//! Owns: parsing the human units operators write in the config: durations ("250ms", "5s",
//! "1m30s") and sizes ("512", "16KiB", "1MiB").
//! Must not: know about config keys or files; callers attach the location to errors.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("empty value")]
    Empty,
    #[error(
        "`{0}` is not a duration: write a number with a unit, e.g. \"250ms\", \"5s\", \"2m\", \"1h\" or \"1m30s\""
    )]
    BadDuration(String),
    #[error("`{0}` is not a size: write bytes or a number with B, KiB, MiB or GiB, e.g. \"16KiB\"")]
    BadSize(String),
    #[error("`{0}` is too large")]
    Overflow(String),
}

/// Parses a duration made of one or more `<integer><unit>` parts, unit one of ms, s, m, h.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    let bad = || UnitError::BadDuration(text.to_string());
    let mut total_ms: u64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let (number, after) = rest.split_at(digits);
        let value: u64 = number
            .parse()
            .map_err(|_| UnitError::Overflow(text.to_string()))?;
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        let factor_ms: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return Err(bad()),
        };
        let part = value
            .checked_mul(factor_ms)
            .ok_or_else(|| UnitError::Overflow(text.to_string()))?;
        total_ms = total_ms
            .checked_add(part)
            .ok_or_else(|| UnitError::Overflow(text.to_string()))?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a size: a bare integer (bytes) or an integer with B, KiB, MiB or GiB.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    if t.is_empty() {
        return Err(UnitError::Empty);
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(UnitError::BadSize(text.to_string()));
    }
    let (number, unit) = t.split_at(digits);
    let value: u64 = number
        .parse()
        .map_err(|_| UnitError::Overflow(text.to_string()))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(UnitError::BadSize(text.to_string())),
    };
    value
        .checked_mul(factor)
        .ok_or_else(|| UnitError::Overflow(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_every_unit() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 0s "), Ok(Duration::ZERO));
    }

    #[test]
    fn durations_rejected() {
        for bad in ["5", "s", "5 s", "-5s", "5sec", "1.5s", "5s5", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(parse_duration(""), Err(UnitError::Empty));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(UnitError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("18446744073709551615h"),
            Err(UnitError::Overflow(_))
        ));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        for bad in ["", "KiB", "16kb", "16 KB", "1.5MiB", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad} should fail");
        }
        assert!(matches!(
            parse_size("99999999999GiB"),
            Err(UnitError::Overflow(_))
        ));
    }
}
