//! The request target a shadow receives (the second word of the request
//! line), built from the client's:
//!
//! 1. an absolute-form target (`http://other-host/path?q`) becomes origin
//!    form (`/path?q`): the request goes to the configured target, and the
//!    authority the client named is neither used nor passed on (the Host
//!    header, as the client sent it, still names it);
//! 2. the path (without the query) goes through the path rewrites: the
//!    first rule whose regex matches replaces every match (as goreplay's
//!    `--http-rewrite-url`); a result that does not start with `/` gets one;
//! 3. the query: parameters removed by name, then the set ones replace any
//!    of their name and are appended in order;
//! 4. the target URL's path prefix goes before the path.
//!
//! `*` (`OPTIONS *`) and CONNECT's authority form are left as they are:
//! they name no path, and the agent connects only to the configured target
//! whatever they say.

use std::fmt;
use std::str::FromStr;

use super::Pattern;

/// `--rewrite-path 'REGEX=>REPLACEMENT'`: the path of matching requests
/// rewritten, with capture groups (`^/v1/(.*)=>/v2/$1`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathRewrite {
    pub pattern: Pattern,
    pub replacement: String,
}

/// Splits `REGEX=>REPLACEMENT` at its first `=>` and checks both.
fn regex_and_replacement(text: &str, example: &str) -> Result<(Pattern, String), String> {
    let Some((regex, replacement)) = text.split_once("=>") else {
        return Err(format!(
            "`{text}` is not REGEX=>REPLACEMENT, such as {example}"
        ));
    };
    let pattern = Pattern::new(regex)?;
    if let Some(c) = replacement.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the replacement `{}` has a control character ({})",
            replacement.escape_default(),
            c.escape_default()
        ));
    }
    pattern.check_replacement(replacement)?;
    Ok((pattern, replacement.to_string()))
}

impl FromStr for PathRewrite {
    type Err = String;
    fn from_str(text: &str) -> Result<PathRewrite, String> {
        let (pattern, replacement) = regex_and_replacement(text, "'^/v1/(.*)=>/v2/$1'")?;
        if replacement.contains([' ', '?', '#']) {
            return Err(format!(
                "the path replacement `{replacement}` has a space, `?` or `#` \
                 (use --set-query for the query)"
            ));
        }
        Ok(PathRewrite {
            pattern,
            replacement,
        })
    }
}

impl fmt::Display for PathRewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=>{}", self.pattern.as_str(), self.replacement)
    }
}

/// `--rewrite-header 'NAME:REGEX=>REPLACEMENT'`: every value of header
/// NAME rewritten where the regex matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderRewrite {
    pub name: String,
    pub pattern: Pattern,
    pub replacement: String,
}

impl FromStr for HeaderRewrite {
    type Err = String;
    fn from_str(text: &str) -> Result<HeaderRewrite, String> {
        let Some((name, rest)) = text.split_once(':') else {
            return Err(format!(
                "`{text}` is not NAME:REGEX=>REPLACEMENT, such as 'Host:^(.*)$=>shadow-$1'"
            ));
        };
        let name = super::header_name(name)?;
        let (pattern, replacement) = regex_and_replacement(rest, "'Host:^(.*)$=>shadow-$1'")?;
        Ok(HeaderRewrite {
            name,
            pattern,
            replacement,
        })
    }
}

impl fmt::Display for HeaderRewrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}=>{}",
            self.name,
            self.pattern.as_str(),
            self.replacement
        )
    }
}

/// A query parameter name or value as it goes on the wire: visible ASCII
/// without `&`, `#` (and `=` in a name); the user percent-encodes.
fn query_part(text: &str, what: &str, also_bad: &[u8]) -> Result<String, String> {
    if let Some(b) = text
        .bytes()
        .find(|b| !b.is_ascii_graphic() || b"&#".contains(b) || also_bad.contains(b))
    {
        return Err(format!(
            "the query parameter {what} `{}` has `{}` (percent-encode it)",
            text.escape_default(),
            (b as char).escape_default()
        ));
    }
    Ok(text.to_string())
}

/// A query parameter name (`--remove-query NAME`).
pub fn query_name(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the query parameter name is empty".into());
    }
    query_part(text, "name", b"=?")
}

/// `--set-query NAME=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryParam {
    pub name: String,
    pub value: String,
}

impl FromStr for QueryParam {
    type Err = String;
    fn from_str(text: &str) -> Result<QueryParam, String> {
        let Some((name, value)) = text.split_once('=') else {
            return Err(format!("`{text}` is not NAME=VALUE, such as shadow=1"));
        };
        Ok(QueryParam {
            name: query_name(name)?,
            value: query_part(value, "value", b"")?,
        })
    }
}

impl fmt::Display for QueryParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// The request target changes of one target: its path rewrites, query
/// edits and URL path prefix (see the [module](self)).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TargetRewrite {
    pub paths: Vec<PathRewrite>,
    pub remove_query: Vec<String>,
    pub set_query: Vec<QueryParam>,
    pub prefix: Vec<u8>,
}

/// A request target in its parts: `path`, `query` (with its `?`) and
/// `fragment` (with its `#`), and whether it came in absolute form.
struct Parts<'t> {
    absolute: bool,
    path: &'t [u8],
    query: &'t [u8],
    fragment: &'t [u8],
}

fn parts(target: &[u8]) -> Option<Parts<'_>> {
    let (absolute, rest) = if target.first() == Some(&b'/') {
        (false, target)
    } else {
        let scheme_end = memchr::memmem::find(target, b"://")?;
        let scheme = &target[..scheme_end];
        if scheme.is_empty()
            || !scheme
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(b))
        {
            return None;
        }
        let after = &target[scheme_end + 3..];
        let authority_end = after
            .iter()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(after.len());
        (true, &after[authority_end..])
    };
    let fragment_at = memchr::memchr(b'#', rest).unwrap_or(rest.len());
    let (before, fragment) = rest.split_at(fragment_at);
    let query_at = memchr::memchr(b'?', before).unwrap_or(before.len());
    let (path, query) = before.split_at(query_at);
    Some(Parts {
        absolute,
        path,
        query,
        fragment,
    })
}

impl TargetRewrite {
    /// Nothing to change in an origin-form target.
    fn is_identity(&self) -> bool {
        self.paths.is_empty()
            && self.remove_query.is_empty()
            && self.set_query.is_empty()
            && self.prefix.is_empty()
    }

    /// The request target this target receives; `None` when it is the
    /// client's, unchanged.
    pub fn apply(&self, target: &[u8]) -> Option<Vec<u8>> {
        let parts = parts(target)?;
        if !parts.absolute && self.is_identity() {
            return None;
        }
        let mut out = Vec::with_capacity(target.len() + self.prefix.len() + 16);
        out.extend_from_slice(&self.prefix);
        let path = match self.paths.iter().find(|r| r.pattern.is_match(parts.path)) {
            Some(rule) => rule.pattern.replace_all(parts.path, &rule.replacement),
            None => parts.path.into(),
        };
        if path.first() != Some(&b'/') {
            out.push(b'/');
        }
        out.extend_from_slice(&path);
        self.query(parts.query, &mut out);
        out.extend_from_slice(parts.fragment);
        Some(out)
    }

    /// Writes the query (`?...`, or nothing if no parameter is left).
    fn query(&self, query: &[u8], out: &mut Vec<u8>) {
        if self.remove_query.is_empty() && self.set_query.is_empty() {
            out.extend_from_slice(query);
            return;
        }
        let dropped = |pair: &[u8]| {
            let name = pair.split(|b| *b == b'=').next().unwrap_or_default();
            self.remove_query.iter().any(|n| n.as_bytes() == name)
                || self.set_query.iter().any(|p| p.name.as_bytes() == name)
        };
        let kept = query
            .get(1..)
            .unwrap_or_default()
            .split(|b| *b == b'&')
            .filter(|pair| !pair.is_empty() && !dropped(pair));
        let mut first = true;
        let mut separator = |out: &mut Vec<u8>| {
            out.push(if first { b'?' } else { b'&' });
            first = false;
        };
        for pair in kept {
            separator(out);
            out.extend_from_slice(pair);
        }
        for param in &self.set_query {
            separator(out);
            out.extend_from_slice(param.name.as_bytes());
            out.push(b'=');
            out.extend_from_slice(param.value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(rw: &TargetRewrite, target: &str) -> String {
        match rw.apply(target.as_bytes()) {
            Some(t) => String::from_utf8(t).unwrap(),
            None => target.to_string(),
        }
    }

    #[test]
    fn absolute_form_becomes_origin_form_whatever_the_authority() {
        let none = TargetRewrite::default();
        assert_eq!(rewrite(&none, "http://other-host:1234/p/q?x=1"), "/p/q?x=1");
        assert_eq!(rewrite(&none, "HTTPS://evil.example"), "/");
        assert_eq!(rewrite(&none, "http://h?x"), "/?x");
        assert_eq!(rewrite(&none, "http://u:p@h/a#f"), "/a#f");
        assert_eq!(none.apply(b"/plain?x"), None, "origin form untouched");
        assert_eq!(none.apply(b"*"), None);
        assert_eq!(none.apply(b"example.com:443"), None);
        let prefixed = TargetRewrite {
            prefix: b"/pre".to_vec(),
            ..TargetRewrite::default()
        };
        assert_eq!(rewrite(&prefixed, "http://h:9/p?q"), "/pre/p?q");
        assert_eq!(rewrite(&prefixed, "/p"), "/pre/p");
    }

    #[test]
    fn the_first_matching_path_rule_rewrites_with_its_groups() {
        let rw = TargetRewrite {
            paths: vec![
                "^/v1/(.*)=>/v2/$1".parse().unwrap(),
                "^/(?P<first>[a-z]+)/x=>/${first}-y".parse().unwrap(),
                "^/v1/=>/never".parse().unwrap(),
            ],
            prefix: b"/api".to_vec(),
            ..TargetRewrite::default()
        };
        assert_eq!(rewrite(&rw, "/v1/users/7?full=1"), "/api/v2/users/7?full=1");
        assert_eq!(rewrite(&rw, "/shop/x"), "/api/shop-y");
        assert_eq!(rewrite(&rw, "http://h/v1/a"), "/api/v2/a");
        assert_eq!(rewrite(&rw, "/other"), "/api/other");
        let to_empty = TargetRewrite {
            paths: vec!["^/drop(.*)=>$1".parse().unwrap()],
            ..TargetRewrite::default()
        };
        assert_eq!(rewrite(&to_empty, "/drop"), "/", "a path stays a path");
        assert_eq!(rewrite(&to_empty, "/dropx?a"), "/x?a");
    }

    #[test]
    fn query_parameters_are_removed_and_set() {
        let rw = TargetRewrite {
            remove_query: vec!["token".into()],
            set_query: vec!["shadow=1".parse().unwrap(), "v=2".parse().unwrap()],
            ..TargetRewrite::default()
        };
        assert_eq!(
            rewrite(&rw, "/p?a=1&token=s3cret&v=1&token&b#frag"),
            "/p?a=1&b&shadow=1&v=2#frag"
        );
        assert_eq!(rewrite(&rw, "/p"), "/p?shadow=1&v=2");
        let remove_only = TargetRewrite {
            remove_query: vec!["token".into()],
            ..TargetRewrite::default()
        };
        assert_eq!(rewrite(&remove_only, "/p?token=1"), "/p");
        assert_eq!(rewrite(&remove_only, "/p?tokens=1&&token=2"), "/p?tokens=1");
    }

    #[test]
    fn bad_rewrites_say_what_is_wrong() {
        let err = |s: &str| s.parse::<PathRewrite>().unwrap_err();
        assert!(
            err("^/v1").contains("REGEX=>REPLACEMENT"),
            "{}",
            err("^/v1")
        );
        assert!(err("(=>x").contains("bad regex"));
        assert!(
            err("^/(a)=>/$2").contains("group `2`"),
            "{}",
            err("^/(a)=>/$2")
        );
        assert!(
            err("^/(a)=>/$1b").contains("${1}x"),
            "{}",
            err("^/(a)=>/$1b")
        );
        assert!(err("^/a=>/b c").contains("space"));
        assert!("^/(a)=>/${1}b".parse::<PathRewrite>().is_ok());
        assert!("^/(a)=>/$$1".parse::<PathRewrite>().is_ok());
        let header = |s: &str| s.parse::<HeaderRewrite>().unwrap_err();
        assert!(header("Bad Name:a=>b").contains("not a header name"));
        assert!(header("X:a=>b\r\nEvil: 1").contains("control character"));
        assert!(header("nocolon").contains("NAME:REGEX=>REPLACEMENT"));
        let query = |s: &str| s.parse::<QueryParam>().unwrap_err();
        assert!(query("novalue").contains("NAME=VALUE"));
        assert!(query("a=b&c=d").contains("percent-encode"));
        assert!(query("=x").contains("empty"));
        assert!(query_name("a b").is_err());
        assert_eq!("a=b=c".parse::<QueryParam>().unwrap().value, "b=c");
    }
}
