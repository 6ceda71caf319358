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

#[cfg(test)]
mod tests {
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
