//! A `Content-Type` value read as a media type (RFC 9110 §8.3.1), so that
//! two spellings of one type are not a difference:
//! `application/json; charset=utf-8` is `Application/JSON;charset="UTF-8"`.
//!
//! Type, subtype and parameter names are case-insensitive; so is the
//! `charset` value (RFC 9110 §8.3.2); other parameter values are compared
//! as sent (a multipart boundary is case-sensitive), quoted or not;
//! whitespace around `;` and `=` and empty parameters do not count;
//! parameters compare in any order. A small reader of its own: the few
//! rules above are all the comparison needs, and a value it cannot read is
//! compared byte for byte by the caller.

/// A parsed media type: `essence` is `type/subtype` in lowercase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    pub essence: String,
    /// (lowercase name, value), sorted.
    pub parameters: Vec<(String, String)>,
}

impl MediaType {
    /// `None` for a value that is not one media type.
    pub fn parse(value: &[u8]) -> Option<MediaType> {
        let value = std::str::from_utf8(value).ok()?;
        let mut parts = Parts { rest: value };
        let essence = parts.next()?.trim();
        let (kind, subtype) = essence.split_once('/')?;
        if !is_token(kind) || !is_token(subtype) {
            return None;
        }
        let mut parameters = Vec::new();
        for part in parts {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = part.split_once('=')?;
            let name = name.trim_end().to_ascii_lowercase();
            if !is_token(&name) {
                return None;
            }
            let mut value = unquote(value.trim_start())?;
            if name == "charset" {
                value.make_ascii_lowercase();
            }
            parameters.push((name, value));
        }
        parameters.sort();
        Some(MediaType {
            essence: essence.to_ascii_lowercase(),
            parameters,
        })
    }

    /// A text format, compared by lines when it is not JSON: `text/*`,
    /// XML, JavaScript, forms.
    pub fn is_text(&self) -> bool {
        let essence = self.essence.as_str();
        essence.starts_with("text/")
            || essence.ends_with("+xml")
            || matches!(
                essence,
                "application/xml"
                    | "application/javascript"
                    | "application/ecmascript"
                    | "application/x-www-form-urlencoded"
            )
    }
}

/// The `;`-separated parts of a value, `;` inside a quoted string kept.
struct Parts<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Parts<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let (mut quoted, mut escaped) = (false, false);
        for (at, c) in self.rest.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' if !quoted => {
                    let part = &self.rest[..at];
                    self.rest = &self.rest[at + 1..];
                    return Some(part);
                }
                _ => {}
            }
        }
        let part = self.rest;
        self.rest = "";
        Some(part)
    }
}

/// A token, or a quoted string with its escapes undone.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return is_token(value).then(|| value.to_owned());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.as_str().trim().is_empty().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// RFC 9110 §5.6.2.
fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(value: &str) -> Option<MediaType> {
        MediaType::parse(value.as_bytes())
    }

    #[test]
    fn spellings_of_one_media_type_are_equal() {
        let plain = parsed("application/json; charset=utf-8").unwrap();
        for other in [
            "application/json;charset=UTF-8",
            "Application/JSON ; Charset = \"utf-8\"",
            "application/json; charset=utf-8;",
            "application/json;; charset=Utf-8 ",
        ] {
            assert_eq!(parsed(other).as_ref(), Some(&plain), "{other}");
        }
        assert_eq!(plain.essence, "application/json");
        assert_eq!(
            parsed("multipart/form-data; b=2; a=1"),
            parsed("multipart/form-data;a=1;b=2"),
            "parameters in any order"
        );
    }

    #[test]
    fn what_differs_still_differs() {
        let differ = |a: &str, b: &str| assert_ne!(parsed(a), parsed(b), "{a} / {b}");
        differ("application/json", "application/json; charset=utf-8");
        differ("text/html", "text/plain");
        differ(
            "multipart/form-data; boundary=ABC",
            "multipart/form-data; boundary=abc",
        );
        differ("text/plain; charset=utf-8", "text/plain; charset=latin1");
        assert_eq!(
            parsed(r#"text/plain; title="a;b \"c\"""#)
                .unwrap()
                .parameters,
            vec![("title".to_owned(), r#"a;b "c""#.to_owned())]
        );
    }

    #[test]
    fn values_that_are_not_a_media_type_are_not_read() {
        for value in [
            "",
            "json",
            "text/",
            "/html",
            "text/html; charset",
            "text/html; a=\"open",
            "text/html; a=\"x\" y",
            "text/html, application/json",
            "te xt/html",
        ] {
            assert_eq!(parsed(value), None, "{value}");
        }
        assert_eq!(MediaType::parse(b"text/\xffhtml"), None);
    }

    #[test]
    fn text_formats_are_recognised() {
        for text in [
            "text/html",
            "text/plain",
            "application/xml",
            "image/svg+xml",
            "application/javascript",
        ] {
            assert!(parsed(text).unwrap().is_text(), "{text}");
        }
        for binary in ["application/octet-stream", "image/png", "application/json"] {
            assert!(!parsed(binary).unwrap().is_text(), "{binary}");
        }
    }
}
