//! Sizes in bytes: the ring, memory limits and the size at which a
//! recording moves to a new file. All units are binary (K = 1024), and a
//! size renders back with the largest unit that divides it.

use std::fmt;
use std::str::FromStr;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

use super::forms::Forms;

/// `64M`, `4096`, `1G`: a number of bytes with an optional K, M or G
/// (binary) suffix.
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, unit) = super::number_and_unit(text, |c| c.is_ascii_digit());
    let base: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 65536, 64K or 64M"))?;
    let multiplier: u64 = match unit {
        "" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "m" | "MiB" => 1 << 20,
        "G" | "g" | "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` (use K, M or G)")),
    };
    base.checked_mul(multiplier)
        .filter(|b| *b <= 1 << 40)
        .ok_or_else(|| format!("{text} is too large"))
}

/// The binary units by their shifts, largest first: sizes are written
/// back with the largest that divides them, and a recording's size reads
/// them in any case.
const UNITS: [(u32, &str); 3] = [(30, "G"), (20, "M"), (10, "K")];

/// Bytes with the largest unit that divides them exactly.
fn format_size(bytes: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (shift, unit) in UNITS {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return write!(f, "{}{unit}", bytes >> shift);
        }
    }
    write!(f, "{bytes}")
}

/// A size of the ring buffer: a power of two from 4K to 2G.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingSize(pub u32);

impl FromStr for RingSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bytes = parse_size(text)?;
        if bytes > 1 << 31 {
            return Err(format!("{text} is larger than the 2G a ring can hold"));
        }
        if !bytes.is_power_of_two() || bytes < 4096 {
            return Err(format!("{text} must be a power of two of at least 4K"));
        }
        Ok(RingSize(bytes as u32))
    }
}

impl fmt::Display for RingSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(u64::from(self.0), f)
    }
}

/// A memory limit in bytes: 1 to 1T, with an optional K, M or G suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match parse_size(text)? {
            0 => Err("a limit of 0 bytes lets nothing through".to_owned()),
            bytes => Ok(ByteSize(bytes)),
        }
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(self.0, f)
    }
}

/// Sizes are strings (`"64M"`) or plain numbers of bytes in the file.
macro_rules! serde_size {
    ($($ty:ty),*) => {$(
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(Forms {
                    text: Some(|v| v.parse()),
                    whole: Some(|v| v.to_string().parse()),
                    ..Forms::expecting("a size such as \"64M\" or a number of bytes")
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    )*};
}

serde_size!(RingSize, ByteSize);

/// The size at which a recording moves to a new file: a number of bytes
/// with an optional unit, case-insensitive, every unit binary as the
/// agent's other sizes (`32M` = `32MB` = `32MiB` = 33554432 bytes; K, M,
/// G, each optionally followed by B or iB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RotateSize(pub u64);

impl FromStr for RotateSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a size such as 32M, 512KB or 1GiB");
        let (digits, unit) = super::number_and_unit(text.trim(), |c| c.is_ascii_digit());
        let number: u64 = digits.parse().map_err(|_| bad())?;
        let unit = unit.trim().to_ascii_lowercase();
        let unit = unit
            .strip_suffix("ib")
            .or_else(|| unit.strip_suffix('b'))
            .unwrap_or(&unit);
        let shift = match UNITS
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(unit))
        {
            Some((shift, _)) => *shift,
            None if unit.is_empty() => 0,
            None => return Err(bad()),
        };
        match number.checked_mul(1 << shift) {
            Some(0) => Err(format!("`{text}`: a file of 0 bytes holds nothing")),
            Some(bytes) if bytes <= 1 << 40 => Ok(RotateSize(bytes)),
            _ => Err(format!("`{text}` is larger than 1T")),
        }
    }
}

impl fmt::Display for RotateSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        format_size(self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_take_units_and_need_powers_of_two() {
        let ring = |text: &str| text.parse::<RingSize>().map(|r| r.0);
        assert_eq!(ring("64M"), Ok(64 << 20));
        assert_eq!(ring("4096"), Ok(4096));
        assert!(ring("3M").is_err());
        assert!(ring("1K").is_err());
        assert!(ring("4T").is_err());
        assert!(ring("4G").is_err());
        assert_eq!(RingSize(64 << 20).to_string(), "64M");
        assert_eq!("1536K".parse::<ByteSize>().unwrap().to_string(), "1536K");
        assert!("0".parse::<ByteSize>().is_err());
    }
}
