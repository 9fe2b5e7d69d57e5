//! `mirror-agent verdict`: the promotion gate for a pipeline. One agent's
//! verdict is its own `/verdict` (the agent applies the rule); the fleet's
//! is the same rule ([`gate::decide`]) over the counts Prometheus holds
//! of every agent ([`fleet`](super::fleet)). One line on stdout (or the
//! JSON body), and the exit status a CI job or an analysis step reads:
//! 0 pass, 1 fail, 2 inconclusive, 3 cannot tell.

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::fleet::{fleet_counts, parse_window};
use super::http_get::{base_url, get};
use crate::compare::gate::{self, GateVerdict};
use crate::config::{DEFAULT_METRICS_ADDR, VerdictArgs};

/// Exit status when no verdict could be had.
pub const CANNOT_TELL: u8 = 3;
/// `--window`'s default.
const DEFAULT_WINDOW: &str = "10m";

/// Asks, prints, and returns the exit status.
pub fn run(args: &VerdictArgs) -> u8 {
    match ask(args) {
        Ok(verdict) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&verdict).unwrap_or_default()
                );
            } else {
                println!("{}", verdict.line());
            }
            verdict.verdict.exit_code()
        }
        Err(err) => {
            let why = format!("{err:#}");
            if args.json {
                let body = json!({ "target": args.target, "verdict": "cannot tell", "why": why });
                println!("{body:#}");
            } else {
                println!("cannot tell: {}: {why}", args.target);
            }
            CANNOT_TELL
        }
    }
}

fn ask(args: &VerdictArgs) -> anyhow::Result<GateVerdict> {
    let rule = args.rule();
    let Some(prometheus) = &args.prometheus else {
        let address = args.metrics_addr.as_deref().unwrap_or(DEFAULT_METRICS_ADDR);
        return ask_agent(&base_url(address), &args.target, &rule);
    };
    let window_text = args.window.as_deref().unwrap_or(DEFAULT_WINDOW);
    let window = parse_window(window_text).map_err(anyhow::Error::msg)?;
    let prometheus = base_url(prometheus);
    let selector = args.selector.as_deref().unwrap_or_default();
    let counts = match fleet_counts(&prometheus, &args.target, selector, window)? {
        Ok(counts) => counts,
        Err(targets) if targets.is_empty() => bail!(
            "Prometheus at {prometheus} has no {} series in the last {window_text} \
             (selector `{selector}`): are the agents scraped, and run with --compare?",
            super::fleet::FAMILY
        ),
        Err(targets) => bail!(
            "no target `{}` in Prometheus at {prometheus} in the last {window_text}; \
             the agents compare: {}",
            args.target,
            targets.join(", ")
        ),
    };
    let mut verdict = gate::decide(
        &args.target,
        "prometheus",
        counts.total,
        &counts.endpoints,
        &rule,
    );
    verdict.window = Some(window_text.to_owned());
    verdict.agents = Some(counts.agents);
    if !verdict.why.is_empty() {
        verdict.why.push_str(&format!(
            " [{} agent{}, last {window_text}]",
            counts.agents,
            if counts.agents == 1 { "" } else { "s" }
        ));
    }
    Ok(verdict)
}

/// The agent's `/verdict` with this rule.
fn ask_agent(base: &str, target: &str, rule: &gate::Rule) -> anyhow::Result<GateVerdict> {
    let path = format!(
        "/verdict?target={}&{}",
        encode_query_value(target),
        rule.to_query()
    );
    let got = get(base, &path, "the agent")?;
    match got.status {
        200 | 412 | 503 => serde_json::from_str(&got.body)
            .with_context(|| format!("{base}/verdict answered {} without a verdict", got.status)),
        status => {
            let error: Option<Value> = serde_json::from_str(&got.body).ok();
            let message = error
                .as_ref()
                .and_then(|e| e["error"].as_str())
                .unwrap_or(got.body.trim());
            bail!("{base}/verdict answered {status}: {message}")
        }
    }
}

/// A query value: the characters a URL's query would misread encoded.
fn encode_query_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'%' | b'&' | b'+' | b'#' | b'=' | b' ' => out.push_str(&format!("%{byte:02X}")),
            b if b.is_ascii_graphic() => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
