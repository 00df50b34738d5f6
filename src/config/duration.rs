//! Durations in the configuration: every `*_ms` key takes either a bare number of
//! milliseconds (what configuration files have always held) or a human duration such as
//! `300ms`, `30s`, `5m` or `1h 30m` (the `humantime` syntax), in the file, in `LICD_*`
//! variables and in flags alike. Values are kept as milliseconds in memory and written back
//! as numbers, so a configuration printed by `licd serve --print-config` reads back as it was.

use serde::Deserializer;
use serde::de::{self, Visitor};

/// Parses a duration as the configuration accepts it: digits alone are milliseconds,
/// anything else must be a `humantime` duration. Sub-millisecond parts are refused rather
/// than rounded away.
pub fn parse_millis(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map_err(|_| format!("{text:?} is too large a number of milliseconds"));
    }
    let duration = humantime::parse_duration(text).map_err(|e| {
        format!("{text:?} is not a duration ({e}); write e.g. 300ms, 30s, 5m or a number of milliseconds")
    })?;
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(format!("{text:?} is not a whole number of milliseconds"));
    }
    u64::try_from(duration.as_millis()).map_err(|_| format!("{text:?} is too long"))
}

/// `#[serde(deserialize_with = "crate::config::duration::millis")]` for a `u64` of
/// milliseconds: accepts an integer or a duration string.
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(MillisVisitor)
}

struct MillisVisitor;

impl Visitor<'_> for MillisVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration: a number of milliseconds or a string such as \"30s\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::custom(format!("a duration cannot be negative ({v})")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_millis(v).map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_millis;

    #[test]
    fn numbers_are_milliseconds_and_human_durations_are_converted() {
        assert_eq!(parse_millis("250"), Ok(250));
        assert_eq!(parse_millis("300ms"), Ok(300));
        assert_eq!(parse_millis("30s"), Ok(30_000));
        assert_eq!(parse_millis("5m"), Ok(300_000));
        assert_eq!(parse_millis("1m 30s"), Ok(90_000));
        for bad in ["", "fast", "-5", "10 parsecs", "1500us", "30 s s"] {
            let err = parse_millis(bad).expect_err(bad);
            assert!(err.contains(&format!("{:?}", bad.trim())), "{bad}: {err}");
        }
    }

    #[test]
    fn files_take_both_forms() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "super::millis")]
            a: u64,
            #[serde(deserialize_with = "super::millis")]
            b: u64,
        }
        let t: T = toml::from_str("a = 1500\nb = \"2s\"").unwrap();
        assert_eq!((t.a, t.b), (1500, 2000));
        let err = toml::from_str::<T>("a = -1\nb = \"2s\"").err().unwrap();
        assert!(err.to_string().contains("negative"), "{err}");
        let err = toml::from_str::<T>("a = 1\nb = \"soon\"").err().unwrap();
        assert!(err.to_string().contains("not a duration"), "{err}");
    }
}
