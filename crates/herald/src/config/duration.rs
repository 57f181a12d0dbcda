//! Go-style durations (`"25s"`, `"1m30s"`, `"720h"`), as Centrifugo writes them: parsing,
//! formatting, and the serde adapter the schema's `Duration` fields use.

use std::fmt;
use std::time::Duration;

use serde::{Deserializer, Serializer};

/// Why a text is not a Go-style duration; each message says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A leading `-`.
    #[error("a negative duration is not allowed")]
    Negative,
    /// Nothing (or only spaces).
    #[error("empty duration")]
    Empty,
    /// A unit or other text where a number should be; holds the rest of the text.
    #[error("expected a number at \"{0}\"")]
    ExpectedNumber(String),
    /// A number with no unit after it.
    #[error("missing unit (use ns, us, ms, s, m or h)")]
    MissingUnit,
    /// A unit Go does not know (such as `d`); holds the rest of the text.
    #[error("unknown unit at \"{0}\" (use ns, us, ms, s, m or h)")]
    UnknownUnit(String),
    /// More than `Duration` holds.
    #[error("duration is too large")]
    TooLarge,
}

/// Parses a Go-style duration as used in Centrifugo configs: a sequence of decimal numbers, each
/// with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `"25s"`, `"1m30s"`, `"1.5h"`,
/// `"500ms"`; `"0"` alone means zero. Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("µs", 1_000),
        ("μs", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let mut rest = s;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac_part = "";
        if let Some(after_dot) = rest.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            frac_part = &after_dot[..frac_len];
            rest = &after_dot[frac_len..];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::ExpectedNumber(rest.to_owned()));
        }
        // Longest unit first: "ms" before "m", "ns"/"us" before nothing else clashes.
        let unit = UNITS
            .iter()
            .filter(|(name, _)| rest.starts_with(name))
            .max_by_key(|(name, _)| name.len());
        let Some(&(name, nanos_per_unit)) = unit else {
            return Err(if rest.is_empty() {
                DurationError::MissingUnit
            } else {
                DurationError::UnknownUnit(rest.to_owned())
            });
        };
        rest = &rest[name.len()..];
        let overflow = || DurationError::TooLarge;
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut nanos = int.checked_mul(nanos_per_unit).ok_or_else(overflow)?;
        if !frac_part.is_empty() {
            // Keep at most 18 fractional digits: more cannot change a nanosecond count.
            let digits = &frac_part[..frac_part.len().min(18)];
            let frac: u128 = digits.parse().map_err(|_| overflow())?;
            let scale = 10u128.pow(digits.len() as u32);
            nanos = nanos
                .checked_add(frac * nanos_per_unit / scale)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(nanos).ok_or_else(overflow)?;
    }
    let secs = u64::try_from(total / 1_000_000_000).map_err(|_| DurationError::TooLarge)?;
    Ok(Duration::new(secs, (total % 1_000_000_000) as u32))
}

/// Formats a duration the way [`parse_duration`] reads it, compactly: `"25s"`, `"720h"`,
/// `"1m30s"`, `"500ms"`, `"0s"`.
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    let parts = [
        (secs / 3600, "h"),
        ((secs / 60) % 60, "m"),
        (secs % 60, "s"),
        (u64::from(nanos / 1_000_000), "ms"),
        (u64::from((nanos / 1_000) % 1_000), "us"),
        (u64::from(nanos % 1_000), "ns"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n != 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}
/// Serde adapter for `Duration` fields written as Go-style strings.
pub(super) mod go_duration {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        d.deserialize_any(DurationVisitor)
    }

    struct DurationVisitor;

    const EXPECTED: &str = "expected a duration like \"25s\"";

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a duration like \"25s\"")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Duration, E> {
            parse_duration(v).map_err(|why| E::custom(format!("{EXPECTED}, got \"{v}\" ({why})")))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }

        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Duration, E> {
            Err(E::custom(format!("{EXPECTED}, got {v}")))
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn durations_parse_like_go() {
        let ok = [
            ("25s", Duration::from_secs(25)),
            ("720h", Duration::from_secs(720 * 3600)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("2us", Duration::from_micros(2)),
            ("3µs", Duration::from_micros(3)),
            ("7ns", Duration::from_nanos(7)),
            ("1h2m3s4ms", Duration::from_millis(3_723_004)),
            (".5s", Duration::from_millis(500)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            assert_eq!(parse_duration(&format_duration(want)), Ok(want), "{text}");
        }
        for bad in [
            "",
            "25",
            "s",
            "-1s",
            "1d",
            "1.s.",
            "5 s",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} should fail");
        }
        assert_eq!(format_duration(Duration::from_secs(720 * 3600)), "720h");
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
