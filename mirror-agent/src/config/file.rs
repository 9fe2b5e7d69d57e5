//! The configuration file: read key by key so that every bad key or value
//! is reported (`FILE:LINE:COL: key `x`: message`, one line each), not
//! only the first.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Serialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::InvalidConfig;
use super::error::{ConfigError, render_all};
use super::sections::{AgentSection, CaptureSection, LimitSection, RuleSection, Unset};
use super::values::Marker;
use super::walk::Walk;
use crate::route::TargetUrl;

/// The whole file (or the flags written over it).
#[derive(Clone, Debug, Default, Serialize)]
pub struct FileConfig {
    /// Where it was read from, and its text (error locations).
    #[serde(skip)]
    pub(super) source: Option<(PathBuf, String)>,
    #[serde(flatten)]
    pub capture: CaptureSection,
    #[serde(flatten)]
    pub agent: AgentSection,
    #[serde(flatten)]
    pub limits: LimitSection,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub marker: Option<Marker>,
    #[serde(flatten)]
    pub rules: RuleSection,
    #[serde(rename = "target", skip_serializing_if = "Unset::unset")]
    pub targets: Vec<TargetFile>,
}

/// One `[[target]]`.
#[derive(Clone, Debug, Serialize)]
pub struct TargetFile {
    pub url: Spanned<TargetUrl>,
    #[serde(skip_serializing_if = "Unset::unset")]
    pub name: Option<Spanned<String>>,
    #[serde(flatten)]
    pub rules: RuleSection,
}

impl TargetFile {
    pub(super) fn new(url: TargetUrl) -> Self {
        Self {
            url: Spanned::new(0..0, url),
            name: None,
            rules: RuleSection::default(),
        }
    }
}

/// Keys of the top level besides the sections'.
const TOP_KEYS: &[&str] = &["dry_run", "marker", "target"];
/// Keys of a `[[target]]` besides the rules section's.
const TARGET_KEYS: &[&str] = &["url", "name"];

/// The `[[target]]` tables of a file.
impl Walk<'_> {
    fn targets(&mut self, value: Spanned<DeValue<'_>>) -> Vec<TargetFile> {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.errors.push(ConfigError::at(
                span,
                "target",
                "targets are [[target]] tables",
            ));
            return Vec::new();
        };
        let mut targets = Vec::new();
        for item in items {
            let span = item.span();
            match item.into_inner() {
                DeValue::Table(table) => {
                    if let Some(target) = self.target(table, span) {
                        targets.push(target);
                    }
                }
                _ => self.errors.push(ConfigError::at(
                    span,
                    "target",
                    "targets are [[target]] tables",
                )),
            }
        }
        targets
    }

    fn target(&mut self, table: DeTable<'_>, span: Range<usize>) -> Option<TargetFile> {
        let mut url = None;
        let mut url_given = false;
        let mut name = None;
        let mut rules = RuleSection::default();
        for (key, value) in table {
            let path = format!("target.{}", key.get_ref());
            match key.get_ref().as_ref() {
                "url" => {
                    url_given = true;
                    let span = value.span();
                    url = self
                        .value::<TargetUrl>(&path, value)
                        .map(|u| Spanned::new(span, u));
                }
                "name" => {
                    let span = value.span();
                    name = self
                        .value::<String>(&path, value)
                        .map(|n| Spanned::new(span, n));
                }
                k if RuleSection::KEYS.contains(&k) => rules.read(k, &path, value, self),
                _ => {
                    let expected: Vec<_> = TARGET_KEYS
                        .iter()
                        .chain(RuleSection::KEYS)
                        .copied()
                        .collect();
                    self.unknown(&key, &path, &expected);
                }
            }
        }
        if !url_given {
            self.errors.push(ConfigError::at(
                span.start..span.start,
                "target",
                "a [[target]] needs a `url`",
            ));
        }
        Some(TargetFile {
            url: url?,
            name,
            rules,
        })
    }
}

impl FileConfig {
    /// Reads and parses a file; every error reads
    /// `FILE:LINE:COL: key `x`: message`, one per line.
    pub fn load(path: &Path) -> Result<FileConfig, InvalidConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            InvalidConfig(format!(
                "cannot read the configuration file {}: {e}",
                path.display()
            ))
        })?;
        let mut file = FileConfig::parse(&text)
            .map_err(|errors| InvalidConfig(render_all(&errors, Some(path), Some(&text))))?;
        file.source = Some((path.to_path_buf(), text));
        Ok(file)
    }

    /// Parses TOML text; the errors are in the order of the file.
    pub fn parse(text: &str) -> Result<FileConfig, Vec<ConfigError>> {
        let root = DeTable::parse(text).map_err(|e| vec![ConfigError::from_toml(&e, text)])?;
        let mut walk = Walk {
            text,
            errors: Vec::new(),
        };
        let mut file = FileConfig::default();
        for (key, value) in root.into_inner() {
            let name: &str = key.get_ref().as_ref();
            match name {
                "dry_run" => {
                    if let Some(v) = walk.value(name, value) {
                        file.dry_run = Some(v);
                    }
                }
                "marker" => {
                    if let Some(v) = walk.value(name, value) {
                        file.marker = Some(v);
                    }
                }
                "target" => file.targets = walk.targets(value),
                k if CaptureSection::KEYS.contains(&k) => file.capture.read(k, k, value, &mut walk),
                k if AgentSection::KEYS.contains(&k) => file.agent.read(k, k, value, &mut walk),
                k if LimitSection::KEYS.contains(&k) => file.limits.read(k, k, value, &mut walk),
                k if RuleSection::KEYS.contains(&k) => file.rules.read(k, k, value, &mut walk),
                k => {
                    let expected: Vec<_> = TOP_KEYS
                        .iter()
                        .chain(CaptureSection::KEYS)
                        .chain(AgentSection::KEYS)
                        .chain(LimitSection::KEYS)
                        .chain(RuleSection::KEYS)
                        .copied()
                        .collect();
                    walk.unknown(&key, k, &expected);
                }
            }
        }
        if walk.errors.is_empty() {
            Ok(file)
        } else {
            walk.errors
                .sort_by_key(|e| e.span.as_ref().map_or(usize::MAX, |s| s.start));
            Err(walk.errors)
        }
    }

    /// The errors as lines naming this file (if it was read from one).
    pub(super) fn render_errors(&self, errors: &[ConfigError]) -> InvalidConfig {
        let (path, text) = match &self.source {
            Some((path, text)) => (Some(path.as_path()), Some(text.as_str())),
            None => (None, None),
        };
        InvalidConfig(render_all(errors, path, text))
    }
}
