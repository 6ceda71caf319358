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
}
