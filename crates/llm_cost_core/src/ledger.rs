//! What a stored row's cost says: provided by the application, estimated by llm_cost, or
//! unpriced. The one rule, read by the cost trigger (was the cost an UPDATE leaves alone
//! provided?), by the rollups (does the row count in `unpriced_requests`?) and by SQL
//! (`llm_cost._is_unpriced`, used by the rollup backfill).

/// A numeric's text compared as a number (`1.50` = `1.5`), as SQL's `=` compares numerics;
/// text that is not a number compares as text.
#[derive(Debug, Clone, Copy)]
pub struct Num<'a>(pub &'a str);

impl PartialEq for Num<'_> {
    fn eq(&self, o: &Self) -> bool {
        use std::str::FromStr;
        match (
            rust_decimal::Decimal::from_str(self.0),
            rust_decimal::Decimal::from_str(o.0),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => self.0 == o.0,
        }
    }
}

/// How a stored cost came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Provided,
    Estimated,
    Unpriced,
}

impl Stored {
    /// The value of a cost_source column (`provided`, `estimated`, `unpriced`). NULL is a row
    /// llm_cost has not priced (logged before `track()`, waiting for `backfill`): unpriced.
    /// Anything else reads as provided (the application wrote it).
    pub fn from_source(v: Option<&str>) -> Stored {
        match v {
            Some("estimated") => Stored::Estimated,
            Some("unpriced") | None => Stored::Unpriced,
            _ => Stored::Provided,
        }
    }
}

/// In a table without a cost_source column: what a stored `cost` says, given the cost column's
/// default (`default`, what the cost trigger stores for a row it cannot price in a NOT NULL
/// column) and the row's estimate as its column would store it (`estimate`, asked for at most
/// once). NULL is unpriced; exactly the estimate is estimated (a free call too: a reprice after
/// the model gets a price moves the row out of unpriced); the default otherwise is unpriced; any
/// other value was provided.
pub fn classify<T: PartialEq>(
    cost: Option<&T>,
    default: Option<&T>,
    estimate: impl FnOnce() -> Option<T>,
) -> Stored {
    let Some(c) = cost else {
        return Stored::Unpriced;
    };
    let is_default = default == Some(c);
    if estimate().as_ref() == Some(c) {
        Stored::Estimated
    } else if is_default {
        Stored::Unpriced
    } else {
        Stored::Provided
    }
}

/// Whether a row counts as unpriced: `source` is the cost_source column's value when the table
/// has one (Some), else the cost says it (`classify`), the estimate asked for only when the
/// cost equals the default.
pub fn is_unpriced<T: PartialEq>(
    source: Option<Option<&str>>,
    cost: Option<&T>,
    default: Option<&T>,
    estimate: impl FnOnce() -> Option<T>,
) -> bool {
    match source {
        Some(v) => Stored::from_source(v) == Stored::Unpriced,
        None => match cost {
            None => true,
            Some(c) if default == Some(c) => classify(cost, default, estimate) == Stored::Unpriced,
            Some(_) => false,
        },
    }
}

/// How a stored row's cost came to be: the cost_source column says it when the table has one
/// (`source` Some); else the cost does (`classify`, the estimate asked for at most once).
pub fn stored<T: PartialEq>(
    source: Option<Option<&str>>,
    cost: Option<&T>,
    default: Option<&T>,
    estimate: impl FnOnce() -> Option<T>,
) -> Stored {
    match source {
        Some(v) => Stored::from_source(v),
        None => classify(cost, default, estimate),
    }
}

/// What prompt caching did to a call's price, at list price (10^-16 USD): `savings`, what its
/// cache reads would have cost as plain input minus what they cost; `write_extra`, what its cache
/// writes cost minus what they would have cost as plain input. Both 0 without such tokens, and
/// 0 when the model has no price (`estimate` None). `estimate` prices a usage (the same model,
/// time and catalog for the three calls); moving tokens between kinds keeps the prompt's size,
/// so a price tier by prompt size stays the same.
pub fn cache_effects(
    u: &crate::pricing::Usage,
    estimate: impl Fn(&crate::pricing::Usage) -> Option<crate::pricing::Cost>,
) -> (i128, i128) {
    if u.cache_read <= 0 && u.cache_write <= 0 {
        return (0, 0);
    }
    let Some(actual) = estimate(u) else {
        return (0, 0);
    };
    let savings = if u.cache_read > 0 {
        let plain = crate::pricing::Usage {
            input: u.input.saturating_add(u.cache_read),
            cache_read: 0,
            ..*u
        };
        estimate(&plain).map_or(0, |p| p.0 - actual.0)
    } else {
        0
    };
    let write_extra = if u.cache_write > 0 {
        let plain = crate::pricing::Usage {
            input: u.input.saturating_add(u.cache_write),
            cache_write: 0,
            ..*u
        };
        estimate(&plain).map_or(0, |p| actual.0 - p.0)
    } else {
        0
    };
    (savings, write_extra)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers() {
        assert_eq!(Num("1.50"), Num("1.5"));
        assert_eq!(Num("0"), Num("0.0000000000"));
        assert_ne!(Num("1.5"), Num("1.05"));
    }

    #[test]
    fn the_source_column_says_it() {
        assert!(is_unpriced::<i32>(
            Some(Some("unpriced")),
            Some(&5),
            None,
            || None
        ));
        assert!(!is_unpriced::<i32>(
            Some(Some("estimated")),
            None,
            None,
            || None
        ));
        // NULL: not priced yet (history waiting for backfill), never a silent $0.
        assert!(is_unpriced::<i32>(Some(None), Some(&0), None, || None));
        assert!(!is_unpriced::<i32>(
            Some(Some("provided")),
            Some(&0),
            None,
            || None
        ));
        assert_eq!(Stored::from_source(Some("provided")), Stored::Provided);
        assert_eq!(Stored::from_source(Some("estimated")), Stored::Estimated);
    }

    #[test]
    fn without_a_source_column_the_cost_says_it() {
        // NULL: unpriced, whatever the default.
        assert_eq!(
            classify::<i32>(None, Some(&0), || Some(0)),
            Stored::Unpriced
        );
        assert!(is_unpriced::<i32>(None, None, None, || panic!("not asked")));
        // The default: unpriced, unless it is exactly the estimate (a free call).
        assert_eq!(classify(Some(&0), Some(&0), || Some(7)), Stored::Unpriced);
        assert_eq!(classify(Some(&0), Some(&0), || None), Stored::Unpriced);
        assert_eq!(classify(Some(&0), Some(&0), || Some(0)), Stored::Estimated);
        assert!(is_unpriced(None, Some(&0), Some(&0), || Some(7)));
        assert!(!is_unpriced(None, Some(&0), Some(&0), || Some(0)));
        // Any other value: the estimate, or provided; the estimate is not asked for to know
        // that it is not unpriced.
        assert_eq!(classify(Some(&7), Some(&0), || Some(7)), Stored::Estimated);
        assert_eq!(classify(Some(&9), Some(&0), || Some(7)), Stored::Provided);
        assert_eq!(classify(Some(&9), None, || None), Stored::Provided);
        assert!(!is_unpriced(None, Some(&9), Some(&0), || -> Option<i32> {
            panic!("not asked")
        }));
    }

    #[test]
    fn cache_effects_at_list_price() {
        use crate::pricing::{Cost, Usage};
        // input $3/M, cache read $0.30/M, cache write $3.75/M, output $15/M (10^-16 USD per token).
        let est = |u: &Usage| {
            Some(Cost(
                u.input as i128 * 30_000_000_000
                    + u.cache_read as i128 * 3_000_000_000
                    + u.cache_write as i128 * 37_500_000_000
                    + u.output as i128 * 150_000_000_000,
            ))
        };
        let u = Usage {
            input: 50,
            output: 500,
            cache_read: 1_800,
            cache_write: 2_048,
            ..Usage::ZERO
        };
        // 1,800 reads: 1,800 x ($3 - $0.30)/M = $0.00486; 2,048 writes: 2,048 x $0.75/M = $0.001536.
        assert_eq!(
            cache_effects(&u, est),
            (48_600_000_000_000, 15_360_000_000_000)
        );
        assert_eq!(
            cache_effects(
                &Usage {
                    input: 9,
                    ..Usage::ZERO
                },
                est
            ),
            (0, 0)
        );
        assert_eq!(cache_effects(&u, |_| None), (0, 0));
    }

    #[test]
    fn stored_reads_the_source_or_the_cost() {
        assert_eq!(
            stored(Some(Some("provided")), Some(&1), None, || None),
            Stored::Provided
        );
        assert_eq!(
            stored::<i32>(Some(None), None, None, || None),
            Stored::Unpriced
        );
        assert_eq!(
            stored(None, Some(&5), Some(&0), || Some(5)),
            Stored::Estimated
        );
        assert_eq!(
            stored(None, Some(&7), Some(&0), || Some(5)),
            Stored::Provided
        );
        assert_eq!(stored(None, Some(&0), Some(&0), || None), Stored::Unpriced);
    }
}
