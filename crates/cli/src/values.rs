//! The command line's value parsers and error text: numbers, fractions
//! and durations refused in plain words (clap then names the flag:
//! `invalid value 'abc' for '--web <N>': "abc" is not a whole number`),
//! and an error chain printed with each cause once.

use std::time::Duration;

use sticky_config::{parse_duration_or, TimeUnit};

/// A whole number from `min` to `max` (`max` = the type's largest: no
/// upper bound is named).
pub(crate) fn whole<T>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: TryFrom<u64> + Clone + Send + Sync + 'static,
{
    move |text: &str| {
        let t = text.trim();
        let range = if max == u64::MAX {
            format!("{min} or more")
        } else {
            format!("from {min} to {max}")
        };
        let n: u64 = match t.parse() {
            Ok(n) => n,
            Err(_) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(format!("{t} is too large: give a whole number {range}"));
            }
            Err(_) => return Err(format!("{t:?} is not a whole number: give one {range}")),
        };
        if n < min || n > max {
            return Err(format!("{n} is out of range: give a whole number {range}"));
        }
        T::try_from(n).map_err(|_| format!("{n} is too large: give a whole number {range}"))
    }
}

/// A size in bytes: a number, or one with a unit (`64KiB`, `16mb`).
pub(crate) fn size(text: &str) -> Result<usize, String> {
    let n = text
        .parse::<sticky_config::ByteSize>()
        .map_err(|e| e.to_string())?
        .0;
    usize::try_from(n).map_err(|_| format!("{} is too large", text.trim()))
}

/// An address: an IP address and a port (`127.0.0.1:8081`, `[::1]:7379`).
pub(crate) fn addr(text: &str) -> Result<std::net::SocketAddr, String> {
    let t = text.trim();
    t.parse().map_err(|_| {
        format!("{t:?} is not an address: give IP:PORT, e.g. 127.0.0.1:8081 or [::1]:8081")
    })
}

/// A number from 0 to 1 (a fraction of requests).
pub(crate) fn fraction(text: &str) -> Result<f64, String> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        Ok(_) => Err(format!(
            "{t} is out of range: give a number from 0 to 1, e.g. 0.1"
        )),
        Err(_) => Err(format!(
            "{t:?} is not a number: give one from 0 to 1, e.g. 0.1"
        )),
    }
}

/// A number above 0 (a rate per second).
pub(crate) fn positive(text: &str) -> Result<f64, String> {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        Ok(_) => Err(format!(
            "{t} is not above 0: give a positive number, e.g. 500"
        )),
        Err(_) => Err(format!(
            "{t:?} is not a number: give a positive one, e.g. 500"
        )),
    }
}

/// A duration with its unit, or a plain number of seconds (the old
/// spelling of flags that took seconds).
pub(crate) fn duration_or_secs(text: &str) -> Result<Duration, String> {
    parse_duration_or(text, TimeUnit::Secs).map_err(|e| format!("{e}, or a number of seconds"))
}

/// A duration with its unit, or a plain number of milliseconds.
pub(crate) fn duration_or_millis(text: &str) -> Result<Duration, String> {
    parse_duration_or(text, TimeUnit::Millis)
        .map_err(|e| format!("{e}, or a number of milliseconds"))
}

/// A duration with its unit, or a plain number of microseconds.
pub(crate) fn duration_or_micros(text: &str) -> Result<Duration, String> {
    parse_duration_or(text, TimeUnit::Micros)
        .map_err(|e| format!("{e}, or a number of microseconds"))
}

/// An error and its causes on one line, `: `-separated, leaving out a
/// cause whose text the message before it already holds (an error that
/// prints its source in its own message and also returns it as its
/// source would otherwise say it twice).
pub(crate) fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        let part = part.trim();
        if part.is_empty() || text.contains(part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(part);
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_refused_in_plain_words() {
        let web = whole::<u16>(1, 32);
        assert_eq!(web("3"), Ok(3));
        assert_eq!(web(" 32 "), Ok(32));
        for (bad, says) in [
            (
                "abc",
                "\"abc\" is not a whole number: give one from 1 to 32",
            ),
            ("0", "0 is out of range: give a whole number from 1 to 32"),
            ("33", "33 is out of range"),
            ("-1", "\"-1\" is not a whole number"),
            ("1.5", "\"1.5\" is not a whole number"),
            ("99999999999999999999", "is too large"),
        ] {
            let e = web(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(!e.contains("digit") && !e.contains("u16"), "{e}");
        }
        let users = whole::<usize>(1, u64::MAX);
        assert_eq!(
            users("0").unwrap_err(),
            "0 is out of range: give a whole number 1 or more"
        );
        let port = whole::<u16>(0, u64::from(u16::MAX));
        assert!(port("70000").unwrap_err().contains("from 0 to 65535"));
    }

    #[test]
    fn fractions_rates_and_durations() {
        assert_eq!(fraction("0.25"), Ok(0.25));
        assert!(fraction("2").unwrap_err().contains("from 0 to 1"));
        assert!(fraction("half").unwrap_err().contains("not a number"));
        assert_eq!(addr("127.0.0.1:1").map(|a| a.port()), Ok(1));
        assert!(addr("localhost").unwrap_err().contains("give IP:PORT"));
        assert_eq!(positive("100"), Ok(100.0));
        assert!(positive("0").is_err() && positive("inf").is_err());
        assert_eq!(duration_or_secs("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration_or_secs("5 parsecs").unwrap_err().contains("500ms"));
        assert_eq!(duration_or_secs("300"), Ok(Duration::from_secs(300)));
        assert_eq!(duration_or_secs("5m"), Ok(Duration::from_secs(300)));
        assert!(duration_or_secs("soon")
            .unwrap_err()
            .contains("number of seconds"));
        assert_eq!(duration_or_millis("30000"), Ok(Duration::from_secs(30)));
        assert_eq!(duration_or_micros("50"), Ok(Duration::from_micros(50)));
    }

    #[test]
    fn an_error_chain_says_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        #[derive(Debug)]
        struct Read {
            source: std::io::Error,
        }
        impl std::fmt::Display for Read {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "cannot read f: {}", self.source)
            }
        }
        impl std::error::Error for Read {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.source)
            }
        }
        let e = anyhow::Error::new(Read { source: io }).context("starting");
        assert_eq!(error_text(&e), "starting: cannot read f: No such file");
    }
}
