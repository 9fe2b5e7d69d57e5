//! One serde visitor for the values the file may write in more than one
//! form (`share = 10` or `12.5`, `marker = false` or a header, sizes as
//! `"64M"` or a number): each form is read by its own function, instead of
//! a hand-written visitor per type.

use std::fmt;

use serde::de::{self, Unexpected};

/// How one form is read into the value (the error goes to the file's
/// position as it is).
type Reading<V, T> = Option<fn(V) -> Result<T, String>>;
type ReadingText<T> = Option<fn(&str) -> Result<T, String>>;

/// What a value may be written as, each form with its reading; a form
/// without one is refused the way serde refuses it ("invalid type: ...,
/// expected `expecting`").
pub(super) struct Forms<T> {
    pub expecting: &'static str,
    pub text: ReadingText<T>,
    /// A whole number (signed or not).
    pub whole: Reading<i128, T>,
    pub decimal: Reading<f64, T>,
    pub boolean: Reading<bool, T>,
}

impl<T> Forms<T> {
    /// No form read yet: fill in the ones the value takes.
    pub fn expecting(expecting: &'static str) -> Self {
        Forms {
            expecting,
            text: None,
            whole: None,
            decimal: None,
            boolean: None,
        }
    }

    fn read<V, E: de::Error>(
        &self,
        reading: Reading<V, T>,
        value: V,
        unexpected: Unexpected<'_>,
    ) -> Result<T, E> {
        match reading {
            Some(read) => read(value).map_err(E::custom),
            None => Err(E::invalid_type(unexpected, self)),
        }
    }
}

impl<T> de::Visitor<'_> for Forms<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        match self.text {
            Some(read) => read(v).map_err(E::custom),
            None => Err(E::invalid_type(Unexpected::Str(v), &self)),
        }
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.read(self.whole, i128::from(v), Unexpected::Signed(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.read(self.whole, i128::from(v), Unexpected::Unsigned(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.read(self.decimal, v, Unexpected::Float(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<T, E> {
        self.read(self.boolean, v, Unexpected::Bool(v))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserializer;

    use super::*;

    fn share(json: &str) -> Result<u32, String> {
        let forms = Forms {
            whole: Some(|v| u32::try_from(v).map_err(|e| e.to_string())),
            text: Some(|v| v.parse().map_err(|_| format!("`{v}` is no number"))),
            ..Forms::expecting("a number")
        };
        let mut d = serde_json::Deserializer::from_str(json);
        d.deserialize_any(forms).map_err(|e| e.to_string())
    }

    #[test]
    fn each_form_is_read_by_its_own_function_and_the_others_are_refused_as_serde_does() {
        assert_eq!(share("12"), Ok(12));
        assert_eq!(share("\"7\""), Ok(7));
        assert!(share("-1").unwrap_err().contains("out of range"));
        assert!(share("\"x\"").unwrap_err().starts_with("`x` is no number"));
        let refused = share("true").unwrap_err();
        assert!(
            refused.starts_with("invalid type: boolean `true`, expected a number"),
            "{refused}"
        );
        assert!(
            share("1.5")
                .unwrap_err()
                .starts_with("invalid type: floating point `1.5`")
        );
    }
}
