//! The decision about one logged row's cost: what the row says in, the outcome out. The cost
//! trigger and the COPY path read the row's columns into `NewRow` (and `OldRow` for an UPDATE),
//! call `decide`, and write what it says (`Decision`); nothing here reads or writes a datum.
//!
//! The catalog comes in as a function (`estimate`: the catalog's cost of a call, None when the
//! model has no price then), and the cost column's rounding as another (`stored`: a cost as the
//! column stores it, as text).

use crate::ledger::{classify, Num, Stored};
use crate::pricing::{Cost, ServiceTier, Usage};

/// A call as the catalog prices it.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub model: &'a str,
    /// The host the call went to, when the row names one.
    pub host: Option<&'a str>,
    pub tier: ServiceTier,
    pub usage: Usage,
    /// Event time, microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz).
    pub at: i64,
}

/// The row being written.
pub struct NewRow<'a> {
    pub call: Call<'a>,
    /// The cost column's value as numeric text, when not NULL.
    pub cost: Option<&'a str>,
    /// The cost_source column's value (tables that have one).
    pub source: Option<&'a str>,
    /// The cost the provider reported in the row's usage object (OpenRouter's `cost`), in 10^-16 USD.
    pub reported: Option<i128>,
}

/// The row an UPDATE replaces.
pub struct OldRow<'a> {
    /// The call it records, read only when its cost must be told from our estimate.
    pub call: &'a dyn Fn() -> Call<'a>,
    pub cost: Option<&'a str>,
    pub source: Option<&'a str>,
}

/// What the table is like.
pub struct Table<'a> {
    /// Whether it has a cost_source column.
    pub has_source: bool,
    /// The cost column's default, as numeric text (NOT NULL cost columns: what an unpriced row gets).
    pub cost_default: Option<&'a str>,
}

/// What a row's cost is, before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A provided cost, kept as is (already marked provided, or no cost_source column).
    Keep,
    /// A provided cost, to be marked provided.
    Provided,
    /// The cost the provider reported in the usage object: written, marked provided.
    Reported(Cost),
    /// The catalog's estimate: written, marked estimated.
    Estimated(Cost),
    /// No price for the model at the row's time: stored unpriced, never a silent $0.
    Unpriced,
}

impl Outcome {
    /// The cost_source value a row with this outcome carries.
    pub fn source(self) -> &'static str {
        match self {
            Outcome::Keep | Outcome::Provided | Outcome::Reported(_) => "provided",
            Outcome::Estimated(_) => "estimated",
            Outcome::Unpriced => "unpriced",
        }
    }

    /// The cost to write, when the outcome computed one.
    pub fn computed(self) -> Option<Cost> {
        match self {
            Outcome::Reported(c) | Outcome::Estimated(c) => Some(c),
            _ => None,
        }
    }
}

/// Why a row is refused (the statement fails whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// NaN or Infinity in the cost column.
    NotFinite(String),
    /// A negative cost.
    Negative(String),
}

/// Decides a row's cost. `estimate` prices a call from the catalog; `stored` renders a cost as
/// the cost column stores it (rounded to its scale), to tell our own estimate from a provided
/// cost.
pub fn decide(
    table: &Table,
    new: &NewRow,
    old: Option<&OldRow>,
    estimate: &dyn Fn(&Call) -> Option<Cost>,
    stored: &dyn Fn(Cost) -> String,
) -> Result<Outcome, Refused> {
    if let Some(t) = new.cost {
        if t == "NaN" || t.ends_with("Infinity") {
            return Err(Refused::NotFinite(t.to_string()));
        }
        if t.starts_with('-') {
            return Err(Refused::Negative(t.to_string()));
        }
    }
    let provided = new
        .cost
        .is_some_and(|t| is_provided(table, new, old, t, estimate, stored));
    // A cost the provider reported in the usage object, where the application gave none (NULL,
    // or the column default in a table without cost_source).
    Ok(if let Some(units) = new.reported.filter(|_| !provided) {
        Outcome::Reported(Cost(units))
    } else if provided {
        if table.has_source && new.source != Some("provided") {
            Outcome::Provided
        } else {
            Outcome::Keep
        }
    } else {
        match estimate(&new.call) {
            Some(c) => Outcome::Estimated(c),
            None => Outcome::Unpriced,
        }
    })
}

/// Whether the row's non-NULL cost `t` was provided by the application (kept as is) rather than
/// left for llm_cost to estimate.
fn is_provided(
    table: &Table,
    new: &NewRow,
    old: Option<&OldRow>,
    t: &str,
    estimate: &dyn Fn(&Call) -> Option<Cost>,
    stored: &dyn Fn(Cost) -> String,
) -> bool {
    let ours = |call: &Call| estimate(call).map(stored);
    let default = table.cost_default.map(Num);
    match old {
        None if table.has_source => {
            // Any non-NULL cost is the application's, unless it is the column default and the
            // row does not say `provided` (a NOT NULL DEFAULT 0 column: an INSERT that leaves the
            // cost out is estimated; one that sends $0 with cost_source 'provided' keeps it), or
            // the row says it is an estimate and it is exactly ours (a row an UPDATE moves to
            // another partition arrives there as an INSERT).
            if default.as_ref() == Some(&Num(t)) && new.source != Some("provided") {
                return false;
            }
            !(new.source == Some("estimated")
                && ours(&new.call).as_deref().map(Num) == Some(Num(t)))
        }
        // Elsewhere: a non-NULL value other than the column default (the ledger's rule, the
        // estimate not consulted: an application that sends exactly our estimate keeps it).
        None => classify(Some(&Num(t)), default.as_ref(), || None) == Stored::Provided,
        Some(o) => {
            if o.cost.map(Num) != Some(Num(t)) {
                // The UPDATE set the cost itself.
                true
            } else if table.has_source {
                o.source == Some("provided")
            } else {
                // The old cost was provided if it is neither the default nor what we would have
                // estimated for the old row (the ledger's rule).
                let e = ours(&(o.call)());
                classify(Some(&Num(t)), default.as_ref(), || e.as_deref().map(Num))
                    == Stored::Provided
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: Usage = Usage {
        input: 1_000_000,
        output: 0,
        cache_read: 0,
        cache_write: 0,
        cache_write_1h: 0,
        ..Usage::ZERO
    };

    fn call(model: &str) -> Call<'_> {
        Call {
            model,
            host: None,
            tier: ServiceTier::Standard,
            usage: U,
            at: 0,
        }
    }

    /// $2.50 for the known model, no price otherwise; stored with 2 decimals.
    fn estimate(c: &Call) -> Option<Cost> {
        (c.model == "known").then_some(Cost(25_000_000_000_000_000))
    }

    fn stored(c: Cost) -> String {
        let units = c.0 / 100_000_000_000_000;
        format!("{}.{:02}", units / 100, units % 100)
    }

    fn new<'a>(model: &'a str, cost: Option<&'a str>, source: Option<&'a str>) -> NewRow<'a> {
        NewRow {
            call: call(model),
            cost,
            source,
            reported: None,
        }
    }

    const SOURCED: Table = Table {
        has_source: true,
        cost_default: None,
    };
    const DEFAULTED: Table = Table {
        has_source: false,
        cost_default: Some("0"),
    };

    #[test]
    fn estimated_unpriced_provided_and_reported() {
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", None, None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Estimated(Cost(25_000_000_000_000_000)))
        );
        assert_eq!(
            decide(&SOURCED, &new("typo", None, None), None, &estimate, &stored),
            Ok(Outcome::Unpriced)
        );
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("9"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Provided)
        );
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("9"), Some("provided")),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
        let mut r = new("typo", None, None);
        r.reported = Some(7);
        assert_eq!(
            decide(&SOURCED, &r, None, &estimate, &stored),
            Ok(Outcome::Reported(Cost(7)))
        );
        // A provided cost wins over the reported one.
        r.cost = Some("1");
        assert_eq!(
            decide(&SOURCED, &r, None, &estimate, &stored),
            Ok(Outcome::Provided)
        );
    }

    #[test]
    fn with_cost_source_the_default_is_provided_only_when_the_row_says_so() {
        let t = Table {
            has_source: true,
            cost_default: Some("0"),
        };
        // Left out (the default): estimated, or unpriced, never a silent $0.
        assert_eq!(
            decide(
                &t,
                &new("known", Some("0.00"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Estimated(Cost(25_000_000_000_000_000)))
        );
        assert_eq!(
            decide(&t, &new("typo", Some("0"), None), None, &estimate, &stored),
            Ok(Outcome::Unpriced)
        );
        // An explicit $0 the application marks provided (a failed call) is kept.
        assert_eq!(
            decide(
                &t,
                &new("known", Some("0"), Some("provided")),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
        // Any other value is the application's.
        assert_eq!(
            decide(
                &t,
                &new("known", Some("0.01"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Provided)
        );
    }

    #[test]
    fn a_row_marked_estimated_with_exactly_our_estimate_is_estimated_again() {
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("2.5"), Some("estimated")),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Estimated(Cost(25_000_000_000_000_000)))
        );
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("2.4"), Some("estimated")),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Provided)
        );
    }

    #[test]
    fn without_cost_source_the_default_is_not_provided() {
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("known", Some("0.00"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Estimated(Cost(25_000_000_000_000_000)))
        );
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("typo", Some("0"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Unpriced)
        );
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("known", Some("2.50"), None),
                None,
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
    }

    #[test]
    fn an_update_keeps_a_provided_cost_and_re_estimates_ours() {
        let known = || call("known");
        let ours = OldRow {
            call: &known,
            cost: Some("2.50"),
            source: None,
        };
        // The UPDATE changed the model, not the cost: the old cost was our estimate, so it is redone.
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("typo", Some("2.50"), None),
                Some(&ours),
                &estimate,
                &stored
            ),
            Ok(Outcome::Unpriced)
        );
        let theirs = OldRow {
            call: &known,
            cost: Some("3"),
            source: None,
        };
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("typo", Some("3"), None),
                Some(&theirs),
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
        // The UPDATE set the cost itself.
        assert_eq!(
            decide(
                &DEFAULTED,
                &new("known", Some("4"), None),
                Some(&ours),
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
        let marked = OldRow {
            call: &known,
            cost: Some("3"),
            source: Some("provided"),
        };
        assert_eq!(
            decide(
                &SOURCED,
                &new("typo", Some("3"), Some("provided")),
                Some(&marked),
                &estimate,
                &stored
            ),
            Ok(Outcome::Keep)
        );
    }

    #[test]
    fn non_finite_and_negative_costs_are_refused() {
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("NaN"), None),
                None,
                &estimate,
                &stored
            ),
            Err(Refused::NotFinite("NaN".into()))
        );
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("-Infinity"), None),
                None,
                &estimate,
                &stored
            ),
            Err(Refused::NotFinite("-Infinity".into()))
        );
        assert_eq!(
            decide(
                &SOURCED,
                &new("known", Some("-1"), None),
                None,
                &estimate,
                &stored
            ),
            Err(Refused::Negative("-1".into()))
        );
    }
}
