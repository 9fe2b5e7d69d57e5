//! What a reader is shown of text that came from the network: characters
//! that change how the text around them reads without being seen
//! themselves — bidirectional overrides and isolates (U+202E turns
//! `/admin\u{202e}txt.exe` around), zero-width characters, the byte order mark,
//! line and paragraph separators — are written as escapes (`\u{202e}`), so
//! the page and the terminal show what was really sent, and a column
//! of the terminal report stays a column.

/// A character shown as its escape rather than as itself.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'                       // soft hyphen
            | '\u{061c}'                 // Arabic letter mark
            | '\u{180e}'                 // Mongolian vowel separator
            | '\u{200b}'..='\u{200f}'    // zero-width space/joiners, LRM, RLM
            | '\u{2028}'..='\u{202e}'    // separators, embeddings, overrides
            | '\u{2060}'..='\u{2069}'    // word joiner, invisible operators, isolates
            | '\u{feff}'                 // byte order mark, zero-width no-break space
    )
}

/// `text` with every invisible character written `\u{…}`.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_invisible) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_invisible(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_and_zero_width_characters_are_written_as_escapes() {
        assert_eq!(visible("/admin\u{202e}txt.exe"), "/admin\\u{202e}txt.exe");
        assert_eq!(
            visible("a\u{200b}b\u{2066}c\u{feff}"),
            "a\\u{200b}b\\u{2066}c\\u{feff}"
        );
        assert_eq!(visible("café ümlaut 東京 – ok"), "café ümlaut 東京 – ok");
        assert!(matches!(visible("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
