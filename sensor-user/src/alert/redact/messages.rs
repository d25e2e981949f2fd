//! Parser messages without the values they quote. serde writes the input's value into its
//! messages (`invalid type: string "…", expected u64`): a config with a token in the wrong
//! field, or a secret file given as a config, would print it on stderr. The messages name the
//! file, line, column and field instead, which is enough to fix it.

/// serde's phrases that are followed by the input's value, quoted (`Unexpected`'s display).
/// Names of fields and variants are kept, and so is an unknown variant: a choice word mistyped
/// (`backend = "kprobes"`), which the message is there to point out.
const BEFORE_A_VALUE: [&str; 5] = ["string ", "integer ", "floating point ", "character ", "boolean "];

/// `message` with every value quoted after one of [`BEFORE_A_VALUE`] left out.
pub fn without_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some((at, phrase)) = next_phrase(rest) {
        let after = at + phrase.len();
        out.push_str(&rest[..at + phrase.trim_end().len()]);
        rest = match quoted_len(&rest[after..]) {
            Some(len) => &rest[after + len..],
            None => &rest[at + phrase.trim_end().len()..],
        };
    }
    out.push_str(rest);
    out
}

/// The first phrase of [`BEFORE_A_VALUE`] in `text`, and where.
fn next_phrase(text: &str) -> Option<(usize, &'static str)> {
    BEFORE_A_VALUE.iter().filter_map(|phrase| text.find(phrase).map(|at| (at, *phrase))).min()
}

/// The length of the `"…"` (with `\` escapes, as `{:?}` writes it) or `` `…` `` that `text`
/// starts with.
fn quoted_len(text: &str) -> Option<usize> {
    let quote = text.chars().next().filter(|c| matches!(c, '"' | '`'))?;
    let mut escaped = false;
    for (i, c) in text.char_indices().skip(1) {
        match c {
            '\\' if quote == '"' && !escaped => escaped = true,
            c if c == quote && !escaped => return Some(i + 1),
            _ => escaped = false,
        }
    }
    Some(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_are_left_out_names_are_kept() {
        assert_eq!(
            without_values("invalid type: string \"s3\\\"cr3t\", expected u64"),
            "invalid type: string, expected u64"
        );
        assert_eq!(
            without_values("unknown variant `kprobes`, expected one of `auto`, `page-cache`"),
            "unknown variant `kprobes`, expected one of `auto`, `page-cache`"
        );
        assert_eq!(
            without_values("invalid type: integer `1234`, expected a string"),
            "invalid type: integer, expected a string"
        );
        assert_eq!(
            without_values("unknown field `pid`, expected `name`"),
            "unknown field `pid`, expected `name`"
        );
        assert_eq!(without_values("invalid string expected `\"`, `'`"), "invalid string expected `\"`, `'`");
    }
}
