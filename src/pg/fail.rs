//! The one way llm_cost raises an error. `user` for what the caller can fix: the SQLSTATE that
//! names it (22023 a bad value, 42501 no right, 55000 not in the state it needs, ...), the
//! message, a detail or a hint that says how. `internal` for what only a bug or a damaged
//! installation explains (XX000, the class PostgreSQL gives internal errors): the message says
//! what llm_cost was doing. Warnings and notices are not errors and stay `ereport!`s.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// An error the caller can fix, not raised until `raise`.
#[must_use = "nothing is raised until .raise()"]
pub struct UserError {
    code: PgSqlErrorCode,
    message: String,
    detail: Option<String>,
    hint: Option<String>,
}

/// An error the caller can fix: its SQLSTATE and message.
pub fn user(code: PgSqlErrorCode, message: impl Into<String>) -> UserError {
    UserError {
        code,
        message: message.into(),
        detail: None,
        hint: None,
    }
}

impl UserError {
    /// More about the value or the state that was refused.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// How to fix it.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Raises it: the statement (or subtransaction) is aborted.
    pub fn raise(self) -> ! {
        let mut r = ErrorReport::new(self.code, self.message, "llm_cost");
        if let Some(d) = self.detail {
            r = r.set_detail(d);
        }
        if let Some(h) = self.hint {
            r = r.set_hint(h);
        }
        r.report(PgLogLevel::ERROR);
        unreachable!("an ERROR does not return")
    }
}

/// An internal failure (XX000): llm_cost met something it does not expect.
pub fn internal(message: impl Into<String>) -> ! {
    ErrorReport::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        message.into(),
        "llm_cost",
    )
    .report(PgLogLevel::ERROR);
    unreachable!("an ERROR does not return")
}

#[cfg(test)]
mod tests {
    /// Code outside this file raises errors only through it: no `error!`, no `ereport!` at level
    /// ERROR, no `ErrorReport` (tests inside `mod tests` excepted).
    #[test]
    fn one_way_to_raise_an_error() {
        let mut bad = Vec::new();
        for (p, lines) in crate::pg::source_files(&["pg/fail.rs", "test_support.rs", "tests.rs"]) {
            let mut after_ereport = false;
            for (i, line) in lines.iter().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                let t = code.trim();
                let raw_error = code.match_indices("error!(").any(|(at, _)| {
                    !code[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if raw_error
                    || code.contains("ErrorReport::new")
                    || code.contains("ereport!(ERROR")
                    || code.contains("ereport!(PgLogLevel::ERROR")
                    || (after_ereport && (t == "ERROR," || t == "PgLogLevel::ERROR,"))
                {
                    bad.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                }
                after_ereport = t.ends_with("ereport!(");
            }
        }
        assert!(
            bad.is_empty(),
            "errors raised outside pg::fail:\n{}",
            bad.join("\n")
        );
    }
}
