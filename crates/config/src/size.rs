//! Sizes written the way operators write them: `1024`, `64kb`, `16MiB`, `1g`.

use std::fmt;
use std::str::FromStr;

/// A number of bytes. Parses `N`, `Nk`/`Nkb`/`NKiB` (1024), `Nm...`, `Ng...`,
/// case-insensitively; Redis's convention, where `kb`, `mb` and `gb` are
/// powers of 1024.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

/// A size that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {0:?}: expected a number with an optional unit (b, kb, mb, gb, KiB, MiB, GiB)"
)]
pub struct ParseSizeError(String);

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseSizeError(s.chars().take(64).collect());
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: u64 = num.parse().map_err(|_| err())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            "t" | "tb" | "tib" => 1 << 40,
            _ => return Err(err()),
        };
        n.checked_mul(mult).map(ByteSize).ok_or_else(err)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0 % size == 0 {
                return write!(f, "{}{name}", self.0 / size);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("1024".parse(), Ok(ByteSize(1024)));
        assert_eq!("64kb".parse(), Ok(ByteSize(64 << 10)));
        assert_eq!("16MiB".parse(), Ok(ByteSize(16 << 20)));
        assert_eq!(" 2 g".parse(), Ok(ByteSize(2 << 30)));
        assert!("1.5g".parse::<ByteSize>().is_err());
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999999999".parse::<ByteSize>().is_err());
        assert!("18446744073709551615g".parse::<ByteSize>().is_err());
    }

    #[test]
    fn displays_round_trip() {
        for s in ["16MiB", "3GiB", "1000", "7KiB"] {
            assert_eq!(
                s.parse::<ByteSize>().map(|b| b.to_string()),
                Ok(s.to_string())
            );
        }
    }
}
