//! Durations written the way operators write them: `500ms`, `2s`, `30m`,
//! `1h`, `1h30m`, `1.5s`; the command line's flags and the cluster file's
//! `*_us`, `*_ms` and `*_secs` fields take them (a plain number there keeps its
//! old meaning: microseconds, milliseconds or seconds, as the name says).

use std::time::Duration;

/// A duration that does not parse, or does not fit where it goes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    /// Not a number with a unit.
    #[error("{0:?} is not a duration: write a number and a unit, e.g. 500ms, 2s, 30m or 1h")]
    Syntax(String),
    /// Finer than the unit the value is kept in (`1500ms` as seconds).
    #[error("{given:?} is not a whole number of {unit}")]
    Fraction {
        /// The text given.
        given: String,
        /// `seconds`, `milliseconds`...
        unit: &'static str,
    },
    /// Too long to hold.
    #[error("{0:?} is too long")]
    TooLong(String),
}

/// The unit of a plain number (`30`) where a duration is taken, and the
/// unit a duration is kept in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    /// Microseconds (`us`).
    Micros,
    /// Milliseconds (`ms`).
    Millis,
    /// Seconds (`s`).
    Secs,
}

impl TimeUnit {
    fn nanos(self) -> u128 {
        match self {
            TimeUnit::Micros => 1_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Secs => 1_000_000_000,
        }
    }

    /// Its name in messages: `seconds`, `milliseconds`, `microseconds`.
    pub fn name(self) -> &'static str {
        match self {
            TimeUnit::Micros => "microseconds",
            TimeUnit::Millis => "milliseconds",
            TimeUnit::Secs => "seconds",
        }
    }

    /// `d` as a whole number of this unit, or an error naming `given`.
    ///
    /// # Errors
    ///
    /// [`ParseDurationError::Fraction`] if `d` is not a whole number of
    /// this unit, [`ParseDurationError::TooLong`] if it exceeds `u64`.
    pub fn count(self, d: Duration, given: &str) -> Result<u64, ParseDurationError> {
        let n = d.as_nanos();
        if n % self.nanos() != 0 {
            return Err(ParseDurationError::Fraction {
                given: clip(given),
                unit: self.name(),
            });
        }
        u64::try_from(n / self.nanos()).map_err(|_| ParseDurationError::TooLong(clip(given)))
    }
}

fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// Parses a duration with units: one or more `NUMBER UNIT` parts
/// (`1h30m`), the number possibly with a fraction (`1.5s`), the unit one
/// of `us`, `ms`, `s`, `m` (also `min`), `h`, `d`; spaces between parts
/// allowed. A plain number has no unit: see [`parse_duration_or`].
///
/// # Errors
///
/// [`ParseDurationError`] naming the text.
pub fn parse_duration(text: &str) -> Result<Duration, ParseDurationError> {
    let syntax = || ParseDurationError::Syntax(clip(text));
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(syntax());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_end);
        let after = after.trim_start();
        let unit_end = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let nanos_per: u128 = match unit.to_ascii_lowercase().as_str() {
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => 1_000_000_000,
            "m" | "min" | "mins" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => return Err(syntax()),
        };
        total = total
            .checked_add(scaled(number, nanos_per).ok_or_else(syntax)?)
            .ok_or_else(|| ParseDurationError::TooLong(clip(text)))?;
        rest = after.trim_start();
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| ParseDurationError::TooLong(clip(text)))?;
    // Below 10^9: fits.
    let nanos = u32::try_from(total % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// `number` (digits, maybe one `.` and more digits) times `nanos_per`,
/// in nanoseconds; digits beyond the nanosecond are dropped.
fn scaled(number: &str, nanos_per: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut value = whole.checked_mul(nanos_per)?;
    let mut scale = nanos_per;
    for digit in fraction.bytes().map(|b| u128::from(b - b'0')) {
        scale /= 10;
        value = value.checked_add(digit * scale)?;
    }
    Some(value)
}

/// As [`parse_duration`], but a plain number (`30`, `1.5`) is that many
/// `unit`s: the old spelling of flags and fields that took a number.
///
/// # Errors
///
/// [`ParseDurationError`] naming the text.
pub fn parse_duration_or(text: &str, unit: TimeUnit) -> Result<Duration, ParseDurationError> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let nanos =
            scaled(t, unit.nanos()).ok_or_else(|| ParseDurationError::Syntax(clip(text)))?;
        let secs = u64::try_from(nanos / 1_000_000_000)
            .map_err(|_| ParseDurationError::TooLong(clip(text)))?;
        let rest = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
        return Ok(Duration::new(secs, rest));
    }
    parse_duration(text)
}

/// A duration for messages and defaults, in the largest unit that
/// keeps it whole: `30m`, `500ms`, `90s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let n = d.as_nanos();
    for (unit, per) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if n >= per && n % per == 0 {
            return format!("{}{unit}", n / per);
        }
    }
    if n == 0 {
        "0s".into()
    } else {
        format!("{n}ns")
    }
}

/// Serde helpers for cluster-file fields kept as a whole number of a unit
/// (`lease_ms`, `idle_timeout_secs`): they take that number, or a
/// duration with units as a string (`"3s"`), which must be a whole number
/// of the field's unit.
pub(crate) mod field {
    use serde::de::{Deserializer, Error as _};
    use serde::Deserialize;

    use super::{parse_duration, TimeUnit};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(u64),
        Text(String),
        Other(toml::Value),
    }

    fn read<'de, D: Deserializer<'de>>(d: D, unit: TimeUnit) -> Result<u64, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(n),
            Raw::Text(s) => parse_duration(&s)
                .and_then(|d| unit.count(d, &s))
                .map_err(D::Error::custom),
            Raw::Other(v) => Err(D::Error::custom(format!(
                "expected a number of {} or a duration such as \"500ms\", \"2s\" or \"30m\", not {}",
                unit.name(),
                match v {
                    toml::Value::Integer(i) if i < 0 => "a negative number",
                    toml::Value::Float(_) => "a fraction (write it with a smaller unit, e.g. \"1500ms\")",
                    toml::Value::Boolean(_) => "true or false",
                    _ => "this",
                }
            ))),
        }
    }

    /// A `*_ms` field.
    pub(crate) fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read(d, TimeUnit::Millis)
    }

    /// A `*_us` field.
    pub(crate) fn micros<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read(d, TimeUnit::Micros)
    }

    /// A `*_secs` field.
    pub(crate) fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        read(d, TimeUnit::Secs)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let ms = |t: &str| parse_duration(t).map(|d| d.as_millis());
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("2s"), Ok(2000));
        assert_eq!(ms("30m"), Ok(1_800_000));
        assert_eq!(ms("1h"), Ok(3_600_000));
        assert_eq!(ms("1d"), Ok(86_400_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms(" 1m 30s "), Ok(90_000));
        assert_eq!(ms("1.5s"), Ok(1500));
        assert_eq!(ms(".5s"), Ok(500));
        assert_eq!(ms("2 min"), Ok(120_000));
        assert_eq!(ms("10S"), Ok(10_000));
        assert_eq!(parse_duration("250us").map(|d| d.as_micros()), Ok(250));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration_in_plain_words() {
        for bad in [
            "",
            "5",
            "abc",
            "5 parsecs",
            "s",
            "1..5s",
            "-1s",
            "5s x",
            "1e3ms",
        ] {
            let e = parse_duration(bad).expect_err(bad).to_string();
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
            assert!(e.contains("500ms"), "{e}");
        }
        let e = parse_duration("99999999999999999999999h").expect_err("too long");
        assert!(matches!(
            e,
            ParseDurationError::Syntax(_) | ParseDurationError::TooLong(_)
        ));
    }

    #[test]
    fn a_plain_number_keeps_its_old_unit() {
        assert_eq!(
            parse_duration_or("300", TimeUnit::Secs),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration_or("30000", TimeUnit::Millis),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration_or("5m", TimeUnit::Secs),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration_or("1.5", TimeUnit::Secs),
            Ok(Duration::from_millis(1500))
        );
        assert!(parse_duration_or("1.5.5", TimeUnit::Secs).is_err());
    }

    #[test]
    fn counts_whole_units_only() {
        assert_eq!(TimeUnit::Secs.count(Duration::from_secs(90), "90s"), Ok(90));
        assert_eq!(
            TimeUnit::Millis.count(Duration::from_millis(1500), "1.5s"),
            Ok(1500)
        );
        let e = TimeUnit::Secs
            .count(Duration::from_millis(1500), "1500ms")
            .expect_err("not whole seconds")
            .to_string();
        assert_eq!(e, "\"1500ms\" is not a whole number of seconds");
    }

    #[test]
    fn formats_in_the_largest_whole_unit() {
        assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        for d in ["30m", "500ms", "90s", "2h", "250us"] {
            assert_eq!(parse_duration(d).map(format_duration).as_deref(), Ok(d));
        }
    }

    #[test]
    fn fields_take_numbers_or_durations() {
        #[derive(Debug, serde::Deserialize)]
        struct F {
            #[serde(deserialize_with = "field::millis")]
            lease_ms: u64,
            #[serde(deserialize_with = "field::secs")]
            idle_timeout_secs: u64,
        }
        let f: F = toml::from_str("lease_ms = 3000\nidle_timeout_secs = 1800\n").expect("numbers");
        assert_eq!((f.lease_ms, f.idle_timeout_secs), (3000, 1800));
        let f: F =
            toml::from_str("lease_ms = \"3s\"\nidle_timeout_secs = \"30m\"\n").expect("units");
        assert_eq!((f.lease_ms, f.idle_timeout_secs), (3000, 1800));
        for (bad, says) in [
            (
                "lease_ms = \"soon\"\nidle_timeout_secs = 1\n",
                "is not a duration",
            ),
            (
                "lease_ms = 1\nidle_timeout_secs = \"1500ms\"\n",
                "whole number of seconds",
            ),
            (
                "lease_ms = -1\nidle_timeout_secs = 1\n",
                "a negative number",
            ),
            ("lease_ms = 1.5\nidle_timeout_secs = 1\n", "a fraction"),
        ] {
            let e = toml::from_str::<F>(bad).expect_err(bad).to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains("u64"), "{e}");
        }
    }
}
