//! Free text that people and clients give (reasons, comments, ticket references): what may be
//! stored, audited and shown in a terminal or a page.
//!
//! Refused everywhere: C0 and C1 control characters (NUL, ESC, line breaks and tabs among them)
//! and the Unicode controls that reorder text (bidi embeddings, overrides and isolates, and the
//! direction marks). Either can make a terminal or a page show something other than what was
//! asked for: an ESC sequence once made a 2-hour admin request look like 15 minutes of log
//! reading in an approver's terminal. A NUL also breaks PostgreSQL text columns.

/// Whether `c` may not appear in free text.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Checks free text of at most `max` characters; the message says what is wrong.
pub fn check(value: &str, max: usize) -> Result<(), String> {
    if value.chars().count() > max {
        return Err(format!("longer than {max} characters"));
    }
    match value.chars().find(|c| is_forbidden(*c)) {
        Some(c) => Err(format!(
            "control characters are not allowed (found U+{:04X}); send plain text on one line",
            u32::from(c)
        )),
        None => Ok(()),
    }
}

/// `value` with every forbidden or non-printing character shown as an escape (`\u{1b}`), for
/// output to a terminal of text stored before these checks or coming from elsewhere.
pub fn escaped(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.chars().any(is_forbidden) {
        return std::borrow::Cow::Borrowed(value);
    }
    std::borrow::Cow::Owned(
        value
            .chars()
            .map(|c| {
                if is_forbidden(c) {
                    format!("\\u{{{:x}}}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_reordering_are_refused_and_plain_text_passes() {
        assert!(check("restart the API (café, 東京)", 100).is_ok());
        for bad in [
            "a\u{1b}[2Kb",
            "nul\0",
            "line\nbreak",
            "tab\there",
            "c1\u{85}",
            "rtl\u{202E}txt",
            "iso\u{2067}x",
            "mark\u{200F}",
        ] {
            assert!(check(bad, 100).is_err(), "{bad:?}");
        }
        assert!(check("abc", 2).unwrap_err().contains("longer"));
    }

    #[test]
    fn escaping_shows_what_is_there() {
        assert_eq!(escaped("plain"), "plain");
        assert_eq!(escaped("a\u{1b}[2Kb"), "a\\u{1b}[2Kb");
        assert_eq!(escaped("x\u{202E}y"), "x\\u{202e}y");
    }
}
