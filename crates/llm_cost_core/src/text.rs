//! Text shown to people: values quoted in messages stay short whatever the input.

use std::borrow::Cow;

/// At most `max` characters of `s`; a longer value is cut and ends with "…" (the full value
/// stays where it is stored: messages and logs get the start of it).
pub fn ellipsize(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}… ({} characters)", &s[..i], s.chars().count())),
    }
}

/// How many characters of a value a message quotes.
pub const SHOWN: usize = 200;

/// The parts of a dotted SQL name as `format('%I.%I')` or `quote_ident` writes it: a quoted
/// part may hold dots and doubled quotes; an unquoted part is folded to lower case as PostgreSQL
/// does. None for a malformed name (an unterminated quote, an empty part, text after a quote).
pub fn split_qualified(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = name.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    '"' => break,
                    c => part.push(c),
                }
            }
            if part.is_empty() {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' || c == '"' {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() || part.trim() != part {
                return None;
            }
        }
        parts.push(part);
        match chars.next() {
            None => return Some(parts),
            Some('.') => continue,
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn qualified_names_split_as_postgres_reads_them() {
        let v = |s: &[&str]| Some(s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(
            super::split_qualified("public.t_sums"),
            v(&["public", "t_sums"])
        );
        assert_eq!(
            super::split_qualified("\"My Schema\".\"a.b\"\"c\""),
            v(&["My Schema", "a.b\"c"])
        );
        assert_eq!(super::split_qualified("Ab.cD"), v(&["ab", "cd"]));
        assert_eq!(super::split_qualified("one"), v(&["one"]));
        for bad in [
            "", ".", "a.", ".a", "\"a", "\"\".a", "\"a\"b.c", "a b .c", "a..b",
        ] {
            assert_eq!(super::split_qualified(bad), None, "{bad}");
        }
    }

    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_cut_on_a_character() {
        assert_eq!(ellipsize("gpt-4o", 200), "gpt-4o");
        assert_eq!(ellipsize(&"x".repeat(200), 200).len(), 200);
        let long = "é".repeat(3200);
        let cut = ellipsize(&long, 200);
        assert_eq!(cut, format!("{}… (3200 characters)", "é".repeat(200)));
    }
}
