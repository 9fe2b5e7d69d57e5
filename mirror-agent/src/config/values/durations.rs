//! Durations: timeouts and intervals (`500ms`, `2s`, `1m`) and the age
//! at which a recording moves to a new file (`30s` to `366d`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::forms::Forms;

/// A duration such as `500ms`, `2s`, `1.5s` or `1m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a duration such as 500ms, 2s or 1m");
        let (number, unit) = super::number_and_unit(text, |c| c.is_ascii_digit() || c == '.');
        let number: f64 = number.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            _ => return Err(bad()),
        };
        if !(0.001..=86_400.0).contains(&seconds) {
            return Err(format!("`{text}` is outside 1ms to 24h"));
        }
        Ok(HumanDuration(Duration::from_secs_f64(seconds)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(Forms {
            text: Some(|v| v.parse()),
            ..Forms::expecting("a duration such as \"500ms\", \"2s\" or \"1m\"")
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The units of an age in seconds, largest first: an age is written back
/// with the largest that divides it.
const AGE_UNITS: [(u64, &str); 4] = [(86_400, "d"), (3600, "h"), (60, "m"), (1, "s")];

/// The age at which a recording moves to a new file: `30s`, `10m`, `1h`,
/// `1d`; from 1 second to 366 days.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateAge(pub Duration);

impl FromStr for RotateAge {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a duration such as 30s, 10m, 1h or 1d");
        let (digits, unit) = super::number_and_unit(text.trim(), |c| c.is_ascii_digit());
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let (unit_secs, _) = AGE_UNITS
            .iter()
            .find(|(_, name)| *name == unit)
            .ok_or_else(bad)?;
        match number.checked_mul(*unit_secs) {
            Some(secs) if (1..=366 * 86_400).contains(&secs) => {
                Ok(RotateAge(Duration::from_secs(secs)))
            }
            _ => Err(format!("`{text}` is outside 1s to 366d")),
        }
    }
}

impl fmt::Display for RotateAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        for (unit, name) in AGE_UNITS {
            if secs.is_multiple_of(unit) {
                return write!(f, "{}{name}", secs / unit);
            }
        }
        unreachable!("every number of seconds is a multiple of 1")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_in_their_units() {
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1500ms"
        );
        assert_eq!(
            "1.5s".parse::<HumanDuration>().unwrap().0,
            Duration::from_millis(1500)
        );
        assert!("0ms".parse::<HumanDuration>().is_err());
    }
}
