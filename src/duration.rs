//! Durations as people type them in flags (`250ms`, `5s`, `30m`, `2h`, `7d`) and read them in messages.
//! Shared by the server's flags and the CLI's, so both accept exactly the same spellings.

use std::time::Duration;

/// Parses a duration flag: a number and a unit, `ms`, `s`, `m`, `h` or `d` (`250ms`, `5s`, `24h`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration (try `250ms`, `5s`, `30m`, `2h`, `7d`)")
    })?;
    let millis = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        // Zero is zero in any unit.
        "" if value == 0 => 1,
        "" => return Err(format!("`{text}` needs a unit: ms, s, m, h or d")),
        other => {
            return Err(format!(
                "`{other}` is not a duration unit; use ms, s, m, h or d"
            ))
        }
    };
    value
        .checked_mul(millis)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{text}` is too long"))
}

/// Parses a comma-separated list of durations (`5s,5m,30m`).
pub fn parse_durations(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',').map(parse_duration).collect()
}

/// A duration for people: the largest unit that fits (`5d`, `3h`, `12m`, `40s`, `250ms`).
pub fn human_duration(duration: Duration) -> String {
    let ms = duration.as_millis() as u64;
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A duration flag: parsed as [`parse_duration`] does, shown exactly (`--help`'s defaults) in the largest
/// unit that divides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationArg(pub Duration);

impl std::str::FromStr for DurationArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(DurationArg)
    }
}

impl std::fmt::Display for DurationArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        let unit = [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
        ]
        .into_iter()
        .find(|(_, size)| ms >= *size && ms % size == 0);
        match unit {
            Some((unit, size)) => write!(f, "{}{unit}", ms / size),
            None => write!(f, "{ms}ms"),
        }
    }
}

/// A comma-separated list of durations as one flag (`5s,5m,30m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationList(pub Vec<Duration>);

impl std::str::FromStr for DurationList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        parse_durations(text).map(DurationList)
    }
}

impl std::fmt::Display for DurationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, duration) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}", DurationArg(*duration))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(parse_durations("5s,5m").map(|v| v.len()), Ok(2));
        assert_eq!(human_duration(Duration::from_secs(5 * 86_400)), "5d");
    }

    #[test]
    fn flags_show_their_value_exactly() {
        for text in ["250ms", "90s", "15s", "5m", "36h", "7d", "1500ms"] {
            let parsed: DurationArg = text.parse().expect("parses");
            assert_eq!(parsed.to_string(), text);
        }
        let list: DurationList = "5s,5m,30m,2h".parse().expect("parses");
        assert_eq!(list.to_string(), "5s,5m,30m,2h");
    }
}
