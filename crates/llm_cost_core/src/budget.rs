//! The decisions of a budget, given what the Postgres side read: which thresholds a group's spend
//! newly crossed, and what `check_budget` answers. Amounts come in as any exact number type the
//! caller has (PostgreSQL's numeric on the server, integers in the tests): nothing here rounds.

use std::cmp::Ordering;
use std::ops::{Add, Sub};

/// The thresholds (indices into `amounts`, each threshold × limit) that `spent` reached and that
/// were not alerted before (`alerted`), in threshold order: each is alerted once per group and
/// period. `reached(spent, amount)` compares exactly (spend equal to an amount reaches it).
pub fn newly_crossed<S, A>(
    spent: &S,
    amounts: &[A],
    reached: impl Fn(&S, &A) -> bool,
    alerted: impl Fn(usize) -> bool,
) -> Vec<usize> {
    (0..amounts.len())
        .filter(|&i| !alerted(i) && reached(spent, &amounts[i]))
        .collect()
}

/// What `check_budget` answers for one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict<T> {
    /// False only for a hard budget once spend plus the estimate would pass the limit.
    pub allowed: bool,
    /// The group's limit; None when the budget's filter leaves the group out.
    pub limit: Option<T>,
    /// What is left of the limit, never below zero; None with no limit.
    pub remaining: Option<T>,
}

/// The answer for a group that spent `spent` this period and asks to spend `estimate` more. A
/// group the budget's filter leaves out (`covered` false) has no limit and is always allowed;
/// inserts are never refused, so a soft budget allows too.
pub fn verdict<T>(
    covered: bool,
    hard: bool,
    spent: &T,
    estimate: &T,
    limit: T,
    zero: T,
) -> Verdict<T>
where
    T: Clone + PartialOrd + Add<Output = T> + Sub<Output = T>,
{
    if !covered {
        return Verdict {
            allowed: true,
            limit: None,
            remaining: None,
        };
    }
    let after = spent.clone() + estimate.clone();
    let allowed = !hard || after.partial_cmp(&limit) != Some(Ordering::Greater);
    let left = limit.clone() - spent.clone();
    let remaining = if left < zero { zero } else { left };
    Verdict {
        allowed,
        limit: Some(limit),
        remaining: Some(remaining),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_threshold_is_crossed_once_and_equal_spend_reaches_it() {
        let amounts = [80, 100, 150];
        let reached = |s: &i64, a: &i64| s >= a;
        assert_eq!(
            newly_crossed(&79, &amounts, reached, |_| false),
            Vec::<usize>::new()
        );
        assert_eq!(newly_crossed(&80, &amounts, reached, |_| false), vec![0]);
        assert_eq!(newly_crossed(&120, &amounts, reached, |i| i == 0), vec![1]);
        assert_eq!(
            newly_crossed(&500, &amounts, reached, |_| false),
            vec![0, 1, 2]
        );
        assert_eq!(
            newly_crossed(&500, &amounts, reached, |_| true),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn hard_budgets_refuse_past_the_limit_soft_ones_never() {
        assert_eq!(
            verdict(true, true, &90, &10, 100, 0),
            Verdict {
                allowed: true,
                limit: Some(100),
                remaining: Some(10)
            }
        );
        assert_eq!(
            verdict(true, true, &90, &11, 100, 0),
            Verdict {
                allowed: false,
                limit: Some(100),
                remaining: Some(10)
            }
        );
        assert_eq!(verdict(true, false, &90, &11, 100, 0).allowed, true);
        // Over the limit already: nothing remains, never a negative amount.
        assert_eq!(
            verdict(true, true, &130, &0, 100, 0),
            Verdict {
                allowed: false,
                limit: Some(100),
                remaining: Some(0)
            }
        );
        // A group the filter leaves out has no limit.
        assert_eq!(
            verdict(false, true, &130, &10, 100, 0),
            Verdict {
                allowed: true,
                limit: None,
                remaining: None
            }
        );
    }
}
