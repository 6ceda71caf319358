//! Match rules: which model names (or provider values) a catalog entry covers, as the genai-prices
//! dataset writes them: `{"equals": s}`, `{"starts_with": s}`, `{"ends_with": s}`,
//! `{"contains": s}`, `{"regex": re}`, `{"or": [rules]}`, `{"and": [rules]}`. Text clauses compare
//! without regard to letter case; names are lower-cased before matching, as the dataset does.

use serde_json::Value;
use std::sync::OnceLock;

/// A regular expression compiled when first needed: most rules are never evaluated in a backend
/// (names are memoised), and compiled programs are the bulk of a catalog's memory and load time.
/// The literal start of an anchored pattern (`^claude-opus-5` of `^claude-opus-5[-@]\d{8}$`) is
/// checked first, without compiling anything.
#[derive(Debug)]
pub struct LazyRegex {
    pattern: String,
    prefix: String,
    compiled: OnceLock<Option<fancy_regex::Regex>>,
}

impl LazyRegex {
    fn new(pattern: &str) -> LazyRegex {
        LazyRegex {
            pattern: pattern.to_string(),
            prefix: literal_prefix(pattern),
            compiled: OnceLock::new(),
        }
    }

    /// The pattern as written.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The literal text every match starts with ("" when none is certain).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn is_match(&self, name: &str) -> bool {
        if !name.starts_with(self.prefix.as_str()) {
            return false;
        }
        match self
            .compiled
            .get_or_init(|| fancy_regex::Regex::new(&self.pattern).ok())
        {
            // A regex that fails at run time (backtracking limit) matches nothing.
            Some(r) => r.is_match(name).unwrap_or(false),
            None => false,
        }
    }
}

/// The literal text every match of an anchored pattern starts with ("" when there is none).
fn literal_prefix(pattern: &str) -> String {
    let Some(rest) = pattern.strip_prefix('^') else {
        return String::new();
    };
    // An alternative at the top level (`^a|b`) may match anything: no prefix.
    let (mut depth, mut class, mut escaped) = (0i32, false, false);
    for c in pattern.chars() {
        match (escaped, class, c) {
            (true, _, _) => escaped = false,
            (false, _, '\\') => escaped = true,
            (false, true, ']') => class = false,
            (false, true, _) => {}
            (false, false, '[') => class = true,
            (false, false, '(') => depth += 1,
            (false, false, ')') => depth -= 1,
            (false, false, '|') if depth == 0 => return String::new(),
            _ => {}
        }
    }
    let mut out = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(n) if n.is_ascii_punctuation() => {
                    out.push(*n);
                    chars.next();
                }
                _ => break,
            },
            '.' | '[' | '(' | ')' | '|' | '*' | '+' | '?' | '{' | '}' | '$' | '^' => {
                // A quantifier applies to the last literal character: it is not certain.
                if matches!(c, '*' | '?' | '{') {
                    out.pop();
                }
                break;
            }
            c if c.is_alphanumeric()
                || c == '-'
                || c == '_'
                || c == '/'
                || c == ':'
                || c == '@'
                || c == ' ' =>
            {
                if c.is_uppercase() {
                    break;
                }
                out.push(c)
            }
            _ => break,
        }
    }
    // A `+` after the last character still requires one of it; `*`, `?`, `{` were handled.
    out
}

#[derive(Debug)]
pub enum Rule {
    Equals(String),
    StartsWith(String),
    EndsWith(String),
    Contains(String),
    Regex(Box<LazyRegex>),
    Or(Vec<Rule>),
    And(Vec<Rule>),
}

/// A rule that cannot be used, with the JSON path of the problem (`$.or[2].regex`).
#[derive(Debug, PartialEq, Eq)]
pub struct RuleError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl Rule {
    pub fn parse(v: &Value) -> Result<Rule, RuleError> {
        Self::parse_at(v, "$")
    }

    pub fn parse_text(s: &str) -> Result<Rule, RuleError> {
        let v: Value = serde_json::from_str(s).map_err(|e| RuleError {
            path: "$".into(),
            message: e.to_string(),
        })?;
        Self::parse(&v)
    }

    fn parse_at(v: &Value, path: &str) -> Result<Rule, RuleError> {
        let err = |p: String, m: &str| {
            Err(RuleError {
                path: p,
                message: m.to_string(),
            })
        };
        let Some(obj) = v.as_object() else {
            return err(path.to_string(), "a match rule must be an object");
        };
        if obj.len() != 1 {
            return err(path.to_string(), "a match rule has exactly one key: equals, starts_with, ends_with, contains, regex, or, and");
        }
        let (k, val) = obj.iter().next().unwrap();
        let here = format!("{path}.{k}");
        match k.as_str() {
            "or" | "and" => {
                let Some(items) = val.as_array().filter(|a| !a.is_empty()) else {
                    return err(here, "must be a non-empty array of rules");
                };
                let mut rules = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    rules.push(Self::parse_at(it, &format!("{here}[{i}]"))?);
                }
                Ok(if k == "or" {
                    Rule::Or(rules)
                } else {
                    Rule::And(rules)
                })
            }
            "equals" | "starts_with" | "ends_with" | "contains" | "regex" => {
                let Some(s) = val.as_str().filter(|s| !s.is_empty()) else {
                    return err(here, "must be a non-empty string");
                };
                Ok(match k.as_str() {
                    "equals" => Rule::Equals(s.to_lowercase()),
                    "starts_with" => Rule::StartsWith(s.to_lowercase()),
                    "ends_with" => Rule::EndsWith(s.to_lowercase()),
                    "contains" => Rule::Contains(s.to_lowercase()),
                    // Checked here (a parse, not a compiled program), compiled on first use.
                    _ => match fancy_regex::Expr::parse_tree(s) {
                        Ok(_) => Rule::Regex(Box::new(LazyRegex::new(s))),
                        Err(e) => return err(here, &format!("invalid regular expression: {e}")),
                    },
                })
            }
            _ => err(
                here,
                "unknown match clause (equals, starts_with, ends_with, contains, regex, or, and)",
            ),
        }
    }

    /// `name` must already be lower case.
    pub fn is_match(&self, name: &str) -> bool {
        match self {
            Rule::Equals(s) => name == s,
            Rule::StartsWith(s) => name.starts_with(s.as_str()),
            Rule::EndsWith(s) => name.ends_with(s.as_str()),
            Rule::Contains(s) => name.contains(s.as_str()),
            Rule::Regex(r) => r.is_match(name),
            Rule::Or(v) => v.iter().any(|r| r.is_match(name)),
            Rule::And(v) => v.iter().all(|r| r.is_match(name)),
        }
    }

    /// True when the rule is one `equals` clause for exactly `name` (lower case).
    pub fn is_exactly(&self, name: &str) -> bool {
        matches!(self, Rule::Equals(s) if s == name)
    }
}

/// `gpt-5.2-20251211` -> `gpt-5.2-2025-12-11` (a compact date before `-`, `:` or the end), as the
/// dataset retries a name that did not match as sent. None when there is no such date.
pub fn dashed_date(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let mut out = String::with_capacity(name.len() + 4);
    let mut changed = false;
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-'
            && i + 9 <= b.len()
            && b[i + 1..i + 9].iter().all(|c| c.is_ascii_digit())
            && (i + 9 == b.len() || b[i + 9] == b'-' || b[i + 9] == b':')
        {
            let d = &name[i + 1..i + 9];
            let (y, m, dd) = (&d[0..4], &d[4..6], &d[6..8]);
            let (mn, dn): (u32, u32) = (m.parse().unwrap_or(0), dd.parse().unwrap_or(0));
            let ok = y.starts_with("20")
                && (1..=12).contains(&mn)
                && (1..=days_in(y.parse().unwrap_or(2000), mn)).contains(&dn);
            if ok {
                out.push('-');
                out.push_str(&format!("{y}-{m}-{dd}"));
                changed = true;
                i += 9;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    changed.then_some(out)
}

fn days_in(y: u32, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rule {
        Rule::parse_text(s).unwrap()
    }

    #[test]
    fn clauses() {
        assert!(r(r#"{"equals": "GPT-4o"}"#).is_match("gpt-4o"));
        assert!(!r(r#"{"equals": "gpt-4o"}"#).is_match("gpt-4o-mini"));
        assert!(r(r#"{"starts_with": "claude-sonnet-4-5"}"#).is_match("claude-sonnet-4-5-20250929"));
        assert!(r(r#"{"ends_with": ":free"}"#).is_match("x/y:free"));
        assert!(r(r#"{"contains": "nova-lite"}"#).is_match("us.amazon.nova-lite-v1:0"));
        assert!(r(r#"{"regex": "^claude-opus-5[-@]\\d{8}$"}"#).is_match("claude-opus-5@20260101"));
        assert!(!r(r#"{"regex": "^claude-opus-5[-@]\\d{8}$"}"#).is_match("claude-opus-5-1"));
        // Lookahead, as the dataset's Mistral rule uses.
        let m = r(r#"{"regex": "^(?![^/]+/)(?:labs-)?(?:mistral|mixtral)"}"#);
        assert!(m.is_match("mistral-large-latest"));
        assert!(!m.is_match("mistralai/mistral-large"));
        let or =
            r(r#"{"or": [{"equals": "a"}, {"and": [{"contains": "b"}, {"ends_with": "c"}]}]}"#);
        assert!(or.is_match("a") && or.is_match("xbyc") && !or.is_match("xby"));
        assert!(r(r#"{"equals": "gpt-4o"}"#).is_exactly("gpt-4o"));
    }

    #[test]
    fn bad_rules_name_the_path() {
        let e = Rule::parse_text(r#"{"or": [{"equals": "a"}, {"regex": "("}]}"#).unwrap_err();
        assert_eq!(e.path, "$.or[1].regex");
        assert_eq!(
            Rule::parse_text(r#"{"like": "a"}"#).unwrap_err().path,
            "$.like"
        );
        assert_eq!(
            Rule::parse_text(r#"{"equals": ""}"#).unwrap_err().path,
            "$.equals"
        );
        assert_eq!(Rule::parse_text(r#"{"or": []}"#).unwrap_err().path, "$.or");
        assert_eq!(Rule::parse_text(r#"[1]"#).unwrap_err().path, "$");
        assert_eq!(
            Rule::parse_text(r#"{"equals": "a", "contains": "b"}"#)
                .unwrap_err()
                .path,
            "$"
        );
    }

    #[test]
    fn regex_literal_prefixes() {
        assert_eq!(literal_prefix("^claude-opus-5[-@]\\d{8}$"), "claude-opus-5");
        assert_eq!(literal_prefix("^gpt-5\\.4-\\d{4}"), "gpt-5.4-");
        assert_eq!(literal_prefix("^(?![^/]+/)mistral"), "");
        assert_eq!(literal_prefix("claude"), "");
        assert_eq!(literal_prefix("^abc?d"), "ab");
        assert_eq!(literal_prefix("^ab*"), "a");
        assert_eq!(literal_prefix("^a|b"), "");
        assert_eq!(literal_prefix("^a(x|y)"), "a");
        assert_eq!(literal_prefix("^o[134]"), "o");
        let r = r#"{"regex": "^o[134]"}"#;
        assert!(Rule::parse_text(r).unwrap().is_match("o3-mini"));
        assert!(!Rule::parse_text(r).unwrap().is_match("gpt-o3"));
    }

    #[test]
    fn compact_dates() {
        assert_eq!(
            dashed_date("gpt-5.2-20251211").as_deref(),
            Some("gpt-5.2-2025-12-11")
        );
        assert_eq!(
            dashed_date("gpt-4o-20240513:free").as_deref(),
            Some("gpt-4o-2024-05-13:free")
        );
        assert_eq!(dashed_date("gpt-4o-20241332"), None);
        assert_eq!(dashed_date("gpt-4o-20240230"), None);
        assert_eq!(dashed_date("gpt-4o"), None);
        assert_eq!(dashed_date("model-123456789"), None);
    }
}
