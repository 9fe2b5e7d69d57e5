//! The words every part of the comparison speaks: what differs ([`Kind`],
//! [`Difference`]), why a pair was not compared ([`NotCompared`]), a
//! target's part ([`Role`]), and the [`Verdict`] on one (request, target)
//! pair. A leaf: it imports nothing of the comparison, so the diff, the
//! judge, the report and the renderings all build on it.

mirror_common::labelled! {
    /// What part of a response differs.
    #[derive(PartialOrd, Ord)]
    /// Declared from the most to the least severe: the report ranks by it.
    pub enum Kind {
        /// The target did not answer properly once the request was sent
        /// (reset, closed mid-response, timed out, unparseable): v1 did.
        Failed => "failed",
        Status => "status",
        /// The answer's body cannot be decoded as its headers claim (a
        /// `Content-Encoding: gzip` over a plain body, bad gzip) while the
        /// other side's can.
        Undecodable => "undecodable",
        Body => "body",
        Header => "header",
    }
}

/// One difference between v1's answer (left) and a target's (right).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub kind: Kind,
    /// Where: `status`; a header's name, lowercase; a JSON body's field
    /// path (`$.items[3].price`, `$.items[id=7].price` for an element
    /// matched by identity, `$` for the whole document); a text body's
    /// changed lines (`body:line 12 after "<footer>"`); `body` for a body
    /// compared by bytes (or undecodable); `(more differences)` for the
    /// count of those past the cap.
    pub path: String,
    /// v1's value, made readable and cut to [`VALUE_CHARS`]; `<absent>`
    /// when v1 has none; `<redacted>` for credential headers.
    pub left: String,
    /// The target's value, the same way.
    pub right: String,
    /// v1 and the baseline differ here too (set by the engine, not by the
    /// diff): noise, kept out of the verdict.
    pub noise: bool,
}

impl Difference {
    /// A difference as the diff finds it: not noise (only the judge, which
    /// knows the baseline, can tell).
    pub fn new(
        kind: Kind,
        path: impl Into<String>,
        left: impl Into<String>,
        right: impl Into<String>,
    ) -> Difference {
        Difference {
            kind,
            path: path.into(),
            left: left.into(),
            right: right.into(),
            noise: false,
        }
    }

    /// The place the difference is counted under, in the report and for
    /// noise: `status`, `header:<name>`, or the body path with array
    /// indices grouped (`$.items[3].price` → `$.items[*].price`: one
    /// field, whichever element).
    pub fn field(&self) -> String {
        match self.kind {
            Kind::Failed => "failed".to_owned(),
            Kind::Undecodable => "undecodable".to_owned(),
            Kind::Status => "status".to_owned(),
            Kind::Header => format!("header:{}", self.path),
            Kind::Body => {
                text_region(&self.path).unwrap_or_else(|| group_array_indices(&self.path))
            }
        }
    }
}

/// A text body's changed lines are counted by where they are, not by
/// their line number (a page that shifts a little keeps its fields):
/// `body:line 12 after "<footer>"` → `body:after "<footer>"`. `None` for
/// other paths.
fn text_region(path: &str) -> Option<String> {
    let rest = path.strip_prefix("body:line ")?;
    let (number, anchor) = rest.split_once(' ')?;
    (!number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("body:{anchor}"))
}

/// `[<digits>]` and `[<key>=<id>]` (an element matched by its identity:
/// `[id=7]`, `[sku='a-1']`) → `[*]`, everything else kept.
fn group_array_indices(path: &str) -> String {
    let mut grouped = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(open) = rest.find('[') {
        grouped.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match element_step_len(after) {
            Some(len) => {
                grouped.push_str("[*]");
                rest = &after[len..];
            }
            None => {
                grouped.push('[');
                rest = after;
            }
        }
    }
    grouped.push_str(rest);
    grouped
}

/// The length (closing `]` included) of an element step that starts
/// right after its `[`: digits, or an identity `name=` followed by a
/// number or a quoted string (`\\` and `\'` escaped). `None` otherwise.
fn element_step_len(after: &str) -> Option<usize> {
    let bytes = after.as_bytes();
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits > 0 && bytes.get(digits) == Some(&b']') {
        return Some(digits + 1);
    }
    let name = bytes
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count();
    if name == 0 || bytes.get(name) != Some(&b'=') {
        return None;
    }
    let mut at = name + 1;
    if bytes.get(at) == Some(&b'\'') {
        at += 1;
        loop {
            match bytes.get(at)? {
                b'\\' => at += 2,
                b'\'' => break,
                _ => at += 1,
            }
        }
        at += 1;
    } else {
        let number = bytes[at..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || b"-+.eE".contains(b))
            .count();
        if number == 0 {
            return None;
        }
        at += number;
    }
    (bytes.get(at) == Some(&b']')).then_some(at + 1)
}

/// Longest value kept in a [`Difference`] (characters).
pub const VALUE_CHARS: usize = 120;

mirror_common::labelled! {
    /// Why a (request, target) pair was not compared. Each is a value of the
    /// `result` label of `mirror_compare_total`, next to `match` and `differ`.
    #[derive(PartialOrd, Ord)]
    pub enum NotCompared {
        /// v1's response was not seen in time (lost in the capture, or slower
        /// than the timeout).
        NoV1Response => "no_v1_response",
        /// The copy never reached the target: dropped before sending (queue
        /// full, rate limited, expired, shutdown), or its connection failed
        /// before the request was written (refused, connect timeout,
        /// unreachable, TLS handshake). A target that got the request and
        /// failed it is a difference of kind `failed`, not this.
        TargetFailed => "target_failed",
        /// Both answers did not arrive within the comparison's timeout.
        Timeout => "timeout",
        /// A body is longer than the cap and the bytes kept cannot decide (the
        /// hashes differ but the content codings do too).
        BodyOverCap => "body_over_cap",
        /// Neither body could be decoded, and both failed alike (the same
        /// coding, the same error): nothing tells them apart. One side
        /// failing is a difference of kind [`Kind::Undecodable`].
        Undecodable => "undecodable",
        /// Too many exchanges waiting, or too many bytes held: given up.
        Overflow => "overflow",
        /// The connection's requests and responses could no longer be paired
        /// (a capture gap, a request the framer skipped, an upgrade).
        Unpaired => "unpaired",
    }
}

mirror_common::labelled! {
    /// A target's part in the comparison.
    pub enum Role {
        /// A new version, judged against v1.
        Candidate => "candidate",
        /// v1's own version elsewhere: its differences with v1 are noise.
        Baseline => "baseline",
    }
}

/// The verdict on one (request, target) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Compared; no difference, or only noise (the noise listed).
    Match(Vec<Difference>),
    /// Compared; at least one difference that is not noise (noise
    /// included, flagged).
    Differ(Vec<Difference>),
    NotCompared(NotCompared),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_indices_are_grouped_and_other_brackets_kept() {
        assert_eq!(group_array_indices("$.items[3].price"), "$.items[*].price");
        assert_eq!(group_array_indices("$[0][12].a"), "$[*][*].a");
        assert_eq!(group_array_indices("$[\"k\"].b[x]"), "$[\"k\"].b[x]");
        assert_eq!(group_array_indices("$.a[1"), "$.a[1");
        assert_eq!(group_array_indices("$.é[2]"), "$.é[*]");
    }

    #[test]
    fn elements_matched_by_identity_are_grouped_like_indices() {
        assert_eq!(
            group_array_indices("$.items[id=7].price"),
            "$.items[*].price"
        );
        assert_eq!(group_array_indices("$.a[_id=-1.5e3]"), "$.a[*]");
        assert_eq!(
            group_array_indices(r"$.items[sku='a]\'b'].n[2]"),
            "$.items[*].n[*]"
        );
        assert_eq!(group_array_indices("$.a[id=]"), "$.a[id=]");
        assert_eq!(group_array_indices("$.a[id='open"), "$.a[id='open");
        assert_eq!(group_array_indices("$.a[id=x]"), "$.a[id=x]");
    }

    #[test]
    fn a_field_is_named_by_kind_with_array_indices_grouped() {
        let field = |kind, path: &str| Difference::new(kind, path, "", "").field();
        assert_eq!(field(Kind::Status, "status"), "status");
        assert_eq!(field(Kind::Header, "etag"), "header:etag");
        assert_eq!(field(Kind::Body, "$.items[3].at"), "$.items[*].at");
        assert_eq!(field(Kind::Body, "$.a[12][0]"), "$.a[*][*]");
        assert_eq!(field(Kind::Body, "$['x y'].z"), "$['x y'].z");
        assert_eq!(field(Kind::Body, "$.served_at"), "$.served_at");
        assert_eq!(field(Kind::Body, "body"), "body");
        assert_eq!(
            field(Kind::Body, "body:line 12 after \"x [1] y\""),
            "body:after \"x [1] y\""
        );
        assert_eq!(field(Kind::Body, "body:line 1 at start"), "body:at start");
        assert_eq!(field(Kind::Body, "body:line x after"), "body:line x after");
        assert_eq!(field(Kind::Body, "$.body"), "$.body");
        assert_eq!(field(Kind::Undecodable, "body"), "undecodable");
    }
}
