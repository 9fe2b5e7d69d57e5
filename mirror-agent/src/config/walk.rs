//! Reading a parsed file value by value: a bad value is recorded as an
//! error at its place and the walk goes on, so every error is reported.

use serde::de;
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

use super::error::{ConfigError, closest};

/// Reads a parsed file key by key, collecting every error.
pub(super) struct Walk<'t> {
    pub(super) text: &'t str,
    pub(super) errors: Vec<ConfigError>,
}

impl Walk<'_> {
    /// Deserializes one value; on error records it (at the value, or at
    /// the place inside it that is wrong) and returns `None`.
    pub(super) fn value<T: de::DeserializeOwned>(
        &mut self,
        path: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<T> {
        let span = value.span();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => Some(v),
            Err(err) => {
                self.errors
                    .push(ConfigError::from_value(&err, path, span, self.text));
                None
            }
        }
    }

    pub(super) fn unknown(
        &mut self,
        key: &Spanned<impl AsRef<str>>,
        path: &str,
        expected: &[&'static str],
    ) {
        let name = key.get_ref().as_ref();
        let message = match closest(name, expected) {
            Some(close) => format!("unknown key `{name}`: did you mean `{close}`?"),
            None => format!(
                "unknown key `{name}`, expected one of: {}",
                expected.join(", ")
            ),
        };
        self.errors.push(ConfigError::at(key.span(), path, message));
    }
}
