//! Command line: every flag, its checks and the examples of `--help`.

use clap::{Parser, ValueEnum};
use mirror_common::SAMPLE_ALL;

use crate::capture::AttachMode;

const EXAMPLES: &str = "\
Examples:
  Capture HTTP on port 80 of eth0 (debug shows each connection):
    sudo mirror-agent --iface eth0 --port 80 --log-level debug
  Two service ports, a quarter of the connections, netlink attach:
    sudo mirror-agent --iface ens5 --port 80 --port 8080 --sample 25 --attach netlink
  A bigger ring for bursty traffic, JSON logs:
    sudo mirror-agent --iface eth0 --port 80 --ring-size 256M --log-format json";

/// Mirror the HTTP requests a service receives to shadow targets.
///
/// A TC ingress eBPF program copies the TCP payload arriving on the service
/// ports; production packets pass untouched.
#[derive(Debug, Parser)]
#[command(name = "mirror-agent", version, after_help = EXAMPLES)]
pub struct Cli {
    /// Interface whose ingress traffic is captured, e.g. eth0.
    #[arg(long, value_name = "IFACE")]
    pub iface: String,

    /// Service port to capture (destination port of the requests); repeat
    /// the flag for more, up to 16. Example: --port 80 --port 8080
    #[arg(long, value_name = "PORT", required = true,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Vec<u16>,

    /// Share of connections to capture, in percent (0 to 100, two decimals).
    /// A connection is captured whole or not at all. Example: --sample 12.5
    #[arg(long, value_name = "PERCENT", default_value = "100", value_parser = parse_percent)]
    pub sample: f64,

    /// Ring buffer between kernel and agent, in bytes; a power of two, with
    /// an optional K, M or G suffix. Default 64M. Example: --ring-size 256M
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    pub ring_size: Option<u32>,

    /// How to attach: tcx (Linux >= 6.6), netlink (clsact filter, older
    /// kernels) or auto. Example: --attach netlink
    #[arg(long, value_enum, default_value_t = AttachMode::Auto, value_name = "MODE")]
    pub attach: AttachMode,

    /// Log format on stderr; JSON when stderr is not a terminal unless set.
    /// Example: --log-format text
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,

    /// Log level or filter (RUST_LOG syntax); RUST_LOG overrides it.
    /// Example: --log-level debug
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    pub log_level: String,
}

impl Cli {
    pub fn sample_basis_points(&self) -> u32 {
        (self.sample * 100.0).round() as u32
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

fn parse_percent(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of percent"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("{value} is outside 0 to 100"));
    }
    if ((value * 100.0).round() as u32) > SAMPLE_ALL {
        return Err(format!("{value} is above 100"));
    }
    Ok(value)
}

fn parse_ring_size(text: &str) -> Result<u32, String> {
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
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
    let bytes = base
        .checked_mul(multiplier)
        .filter(|b| *b <= (1u64 << 31))
        .ok_or_else(|| format!("{text} is larger than the 2G a ring can hold"))?;
    if !bytes.is_power_of_two() || bytes < 4096 {
        return Err(format!("{text} must be a power of two of at least 4K"));
    }
    Ok(bytes as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_take_units_and_need_powers_of_two() {
        assert_eq!(parse_ring_size("64M"), Ok(64 << 20));
        assert_eq!(parse_ring_size("4096"), Ok(4096));
        assert!(parse_ring_size("3M").is_err());
        assert!(parse_ring_size("1K").is_err());
        assert!(parse_ring_size("4T").is_err());
        assert!(parse_ring_size("4G").is_err());
    }

    #[test]
    fn percent_becomes_basis_points() {
        let cli = Cli::parse_from([
            "mirror-agent",
            "--iface",
            "lo",
            "--port",
            "80",
            "--sample",
            "12.5",
        ]);
        assert_eq!(cli.sample_basis_points(), 1250);
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("-1").is_err());
    }

    #[test]
    fn port_zero_and_missing_port_are_rejected() {
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo"]).is_err());
        assert!(Cli::try_parse_from(["mirror-agent", "--iface", "lo", "--port", "70000"]).is_err());
    }
}
