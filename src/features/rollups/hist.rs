//! The distribution of per-request costs in a rollup (`llm_cost_core::hist`): SQL's side of the
//! `cost_hist` column of a table of sums. A histogram is stored flat, as an int8[] of
//! `[bucket, count, ...]` pairs sorted by bucket.

use llm_cost_core::hist;
use pgrx::prelude::*;

/// A flat histogram argument, or 22023 naming what is wrong with it.
fn histogram_arg(v: &[i64]) -> Vec<(u16, i64)> {
    hist::from_flat(v).unwrap_or_else(|| {
        crate::pg::fail::user(
            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "llm_cost: not a cost histogram (an int8[] of [bucket, count, ...] pairs)",
        )
        .raise()
    })
}

/// The sum of two histograms (the merge of a table of sums and the aggregate's step). NULL reads
/// as empty.
#[pg_extern(immutable, parallel_safe, name = "_hist_add")]
pub fn hist_add(a: Option<Vec<i64>>, b: Option<Vec<i64>>) -> Vec<i64> {
    let mut h = histogram_arg(&a.unwrap_or_default());
    let o = histogram_arg(&b.unwrap_or_default());
    hist::merge(&mut h, &o).unwrap_or_else(|| super::accumulate::out_of_range());
    hist::to_flat(&h)
}

/// The histogram of one cost counted `sign` times: empty for NULL, a negative cost or one with
/// more than 16 decimals (the row path counts none of them either).
#[pg_extern(immutable, parallel_safe, name = "_hist_of")]
pub fn hist_of(cost: Option<pgrx::AnyNumeric>, sign: i64) -> Vec<i64> {
    let Some(units) = cost.and_then(|c| {
        // SAFETY: a numeric Datum, read for this call.
        unsafe { crate::pg::money::numeric_units(pgrx::IntoDatum::into_datum(c)?) }
    }) else {
        return vec![];
    };
    match units_bucket(units) {
        Some(b) if sign != 0 => vec![b as i64, sign],
        _ => vec![],
    }
}

/// The bucket of a cost in 10^-16 USD (None: negative).
pub(super) fn units_bucket(units: i128) -> Option<u16> {
    u128::try_from(units).ok().map(hist::bucket)
}

/// The cost the `rank`-th smallest request of a histogram stands for (1-based): the midpoint of
/// its bucket, within 1/32 (3.125%) of the exact cost of that rank; NULL when it holds fewer.
#[pg_extern(immutable, parallel_safe, strict, name = "histogram_cost_at_rank")]
fn histogram_cost_at_rank(
    histogram: Vec<i64>,
    rank: i64,
) -> Option<crate::pg::money::NumericDatum> {
    let h = histogram_arg(&histogram);
    let b = hist::bucket_at_rank(&h, rank)?;
    let m = i128::try_from(hist::midpoint(b)).ok()?;
    Some(crate::pg::money::cost_to_numeric_datum(
        llm_cost_core::pricing::Cost(m),
    ))
}

/// How many requests a histogram counts.
#[pg_extern(immutable, parallel_safe, strict, name = "histogram_requests")]
fn histogram_requests(histogram: Vec<i64>) -> i64 {
    histogram_arg(&histogram)
        .iter()
        .try_fold(0i64, |t, (_, n)| t.checked_add(*n))
        .unwrap_or_else(|| super::accumulate::out_of_range())
}
