//! The distribution of per-request costs, as rollups keep it: a sparse histogram of log-spaced
//! buckets over costs in 10^-16 USD, integers only.
//!
//! Buckets: a cost below 16 units has a bucket of its own (exact); above, each power of two is
//! cut in 16 equal buckets (the 4 bits after the leading one). A bucket `[lo, hi)` then has
//! `hi - lo <= lo / 16`, so its midpoint is within 1/32 (3.125%) of any cost in it: a percentile
//! read from the histogram (the midpoint of the bucket holding the rank) is within 3.125% of the
//! exact percentile of the same rank. Costs up to 2^128 units have buckets (below 2,000).
//!
//! A histogram is a list of (bucket, count) sorted by bucket, counts non-zero (a count may be
//! negative inside a statement's sums: an UPDATE takes its old row away).

/// Sub-buckets per power of two: 2^SUB_BITS.
const SUB_BITS: u32 = 4;
const SUBS: u32 = 1 << SUB_BITS;
/// The highest bucket: that of the largest 128-bit cost.
pub const MAX_BUCKET: u16 = ((128 - SUB_BITS) * SUBS + SUBS - 1) as u16;

/// The bucket of a cost (10^-16 USD).
pub fn bucket(units: u128) -> u16 {
    if units < SUBS as u128 {
        return units as u16;
    }
    let msb = 127 - units.leading_zeros(); // >= SUB_BITS
    let sub = ((units >> (msb - SUB_BITS)) & (SUBS as u128 - 1)) as u32;
    ((msb - SUB_BITS + 1) * SUBS + sub) as u16
}

/// The costs a bucket holds: `[lo, hi)`.
pub fn bounds(b: u16) -> (u128, u128) {
    let b = b as u32;
    if b < SUBS {
        return (b as u128, b as u128 + 1);
    }
    let shift = b / SUBS - 1; // msb - SUB_BITS
    let lo = ((SUBS + b % SUBS) as u128) << shift;
    // (the top bucket ends at 2^128: its end saturates)
    (lo, lo.saturating_add(1u128 << shift))
}

/// The value a bucket stands for: its midpoint (its one cost below 16 units), rounded down.
pub fn midpoint(b: u16) -> u128 {
    let (lo, hi) = bounds(b);
    lo + (hi - lo) / 2
}

/// Adds `n` to bucket `b` of a sorted histogram, dropping a count that becomes 0; None when a
/// count would overflow.
pub fn add(h: &mut Vec<(u16, i64)>, b: u16, n: i64) -> Option<()> {
    match h.binary_search_by_key(&b, |e| e.0) {
        Ok(i) => {
            let c = h[i].1.checked_add(n)?;
            if c == 0 {
                h.remove(i);
            } else {
                h[i].1 = c;
            }
        }
        Err(i) if n != 0 => h.insert(i, (b, n)),
        Err(_) => {}
    }
    Some(())
}

/// Adds histogram `o` into `h`.
pub fn merge(h: &mut Vec<(u16, i64)>, o: &[(u16, i64)]) -> Option<()> {
    for (b, n) in o {
        add(h, *b, *n)?;
    }
    Some(())
}

/// The bucket holding the `rank`-th smallest cost (1-based), None when the histogram holds fewer
/// (or a negative count: not a histogram of stored rows).
pub fn bucket_at_rank(h: &[(u16, i64)], rank: i64) -> Option<u16> {
    if rank < 1 {
        return None;
    }
    let mut seen: i64 = 0;
    for (b, n) in h {
        if *n < 0 {
            return None;
        }
        seen = seen.checked_add(*n)?;
        if seen >= rank {
            return Some(*b);
        }
    }
    None
}

/// A histogram from its flat form `[bucket, count, bucket, count, ...]` (as SQL stores it, an
/// int8[]): None when it is not one (odd length, a bucket out of range).
pub fn from_flat(v: &[i64]) -> Option<Vec<(u16, i64)>> {
    if v.len() % 2 != 0 {
        return None;
    }
    let mut h = Vec::with_capacity(v.len() / 2);
    for p in v.chunks(2) {
        let b = u16::try_from(p[0]).ok().filter(|b| *b <= MAX_BUCKET)?;
        add(&mut h, b, p[1])?;
    }
    Some(h)
}

/// The flat form of a histogram.
pub fn to_flat(h: &[(u16, i64)]) -> Vec<i64> {
    h.iter().flat_map(|(b, n)| [*b as i64, *n]).collect()
}

/// Why two flat histograms could not be merged.
#[derive(Debug, PartialEq, Eq)]
pub enum FlatMergeError {
    /// Not a flat histogram: odd length, a bucket out of range.
    NotAHistogram,
    /// Buckets not strictly increasing (the slower `from_flat` path accepts any order).
    Unsorted,
    /// A count would overflow.
    Overflow,
}

/// Merges two flat histograms whose buckets are strictly increasing into `out` (cleared first):
/// the sum, sorted, without zero counts. What a table of sums does on every write, without
/// building either side as a list of pairs first.
pub fn merge_flat(a: &[i64], b: &[i64], out: &mut Vec<i64>) -> Result<(), FlatMergeError> {
    if a.len() % 2 != 0 || b.len() % 2 != 0 {
        return Err(FlatMergeError::NotAHistogram);
    }
    out.clear();
    out.reserve(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    let mut last: i64 = -1;
    let bucket_ok = |x: i64| (0..=MAX_BUCKET as i64).contains(&x);
    while i < a.len() || j < b.len() {
        let take_a = j >= b.len() || (i < a.len() && a[i] <= b[j]);
        let (bk, mut n) = if take_a {
            (a[i], a[i + 1])
        } else {
            (b[j], b[j + 1])
        };
        if !bucket_ok(bk) {
            return Err(FlatMergeError::NotAHistogram);
        }
        if take_a {
            i += 2;
            if j < b.len() && b[j] == bk {
                n = n.checked_add(b[j + 1]).ok_or(FlatMergeError::Overflow)?;
                j += 2;
            }
        } else {
            j += 2;
        }
        // Strictly increasing on each side: a repeat within one side shows here.
        if bk <= last {
            return Err(FlatMergeError::Unsorted);
        }
        last = bk;
        if n != 0 {
            out.push(bk);
            out.push(n);
        }
    }
    Ok(())
}

/// A histogram being summed (an aggregate's state): counts of the buckets `lo..lo + len`, dense,
/// so adding a small histogram costs its length and not the sum's. Grows to the buckets seen.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Dense {
    lo: u16,
    counts: Vec<i64>,
}

impl Dense {
    /// Adds `n` to bucket `b`; None when `b` is past the largest bucket or a count would overflow.
    pub fn add(&mut self, b: u16, n: i64) -> Option<()> {
        if b > MAX_BUCKET {
            return None;
        }
        if n == 0 {
            return Some(());
        }
        if self.counts.is_empty() {
            self.lo = b;
        } else if b < self.lo {
            let grow = (self.lo - b) as usize;
            self.counts.splice(0..0, std::iter::repeat_n(0, grow));
            self.lo = b;
        }
        let i = (b - self.lo) as usize;
        if i >= self.counts.len() {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].checked_add(n)?;
        Some(())
    }

    /// Adds a flat histogram (`[bucket, count, ...]`); None when it is not one (odd length, a
    /// bucket past the largest) or a count would overflow.
    pub fn add_flat(&mut self, v: &[i64]) -> Option<()> {
        if v.len() % 2 != 0 {
            return None;
        }
        for p in v.chunks(2) {
            self.add(u16::try_from(p[0]).ok()?, p[1])?;
        }
        Some(())
    }

    /// Adds another sum.
    pub fn merge(&mut self, o: &Dense) -> Option<()> {
        for (i, n) in o.counts.iter().enumerate() {
            if *n != 0 {
                self.add(o.lo + i as u16, *n)?;
            }
        }
        Some(())
    }

    /// The sum as a sorted histogram without zero counts.
    pub fn to_sparse(&self) -> Vec<(u16, i64)> {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != 0)
            .map(|(i, n)| (self.lo + i as u16, *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev_hi = 0u128;
        for b in 0..1900u16 {
            let (lo, hi) = bounds(b);
            assert_eq!(lo, prev_hi, "bucket {b}");
            assert!(b < 16 || (hi - lo) * 16 <= lo, "bucket {b} too wide");
            assert_eq!(bucket(lo), b);
            assert_eq!(bucket(hi - 1), b);
            prev_hi = hi;
        }
    }

    #[test]
    fn a_midpoint_is_within_1_32_of_every_cost_of_its_bucket() {
        // $0.000001 .. $1,000 in steps that are not powers of two.
        let mut u: u128 = 10_000_000_000;
        while u < 10_000_000_000_000_000_000 {
            let m = midpoint(bucket(u));
            let err = m.abs_diff(u);
            assert!(err * 32 <= u, "{u} -> {m}");
            u = u * 7 / 5 + 13;
        }
        assert_eq!(midpoint(bucket(9)), 9);
    }

    #[test]
    fn ranks_and_merges() {
        let mut h = vec![];
        for u in [5u128, 100, 100, 1_000_000, 7] {
            add(&mut h, bucket(u), 1).unwrap();
        }
        assert_eq!(bucket_at_rank(&h, 1), Some(bucket(5)));
        assert_eq!(bucket_at_rank(&h, 3), Some(bucket(100)));
        assert_eq!(bucket_at_rank(&h, 5), Some(bucket(1_000_000)));
        assert_eq!(bucket_at_rank(&h, 6), None);
        let mut g = h.clone();
        merge(&mut g, &[(bucket(100), -2)]).unwrap();
        assert_eq!(g.len(), 3);
        assert_eq!(from_flat(&to_flat(&h)).unwrap(), h);
        assert!(from_flat(&[1, 2, 3]).is_none());
        assert!(from_flat(&[70000, 1]).is_none());
        assert!(from_flat(&[MAX_BUCKET as i64 + 1, 1]).is_none());
        assert_eq!(bucket(u128::MAX), MAX_BUCKET);
        assert_eq!(bounds(MAX_BUCKET).0, (31u128) << 123);
    }

    #[test]
    fn flat_merges_equal_sparse_merges() {
        let cases: [(&[i64], &[i64]); 6] = [
            (&[], &[]),
            (&[40, 2, 300, 1], &[]),
            (&[], &[12, 1]),
            (&[40, 2, 300, 1], &[12, 1, 40, -2, 1999, 3]),
            (&[5, 7], &[5, -7]),
            (&[0, 1, MAX_BUCKET as i64, 2], &[1, 1, MAX_BUCKET as i64, 1]),
        ];
        let mut out = vec![7, 7];
        for (a, b) in cases {
            let mut h = from_flat(a).unwrap();
            merge(&mut h, &from_flat(b).unwrap()).unwrap();
            merge_flat(a, b, &mut out).unwrap();
            assert_eq!(out, to_flat(&h), "{a:?} + {b:?}");
        }
        assert_eq!(
            merge_flat(&[1], &[], &mut out),
            Err(FlatMergeError::NotAHistogram)
        );
        assert_eq!(
            merge_flat(&[], &[-1, 1], &mut out),
            Err(FlatMergeError::NotAHistogram)
        );
        assert_eq!(
            merge_flat(&[MAX_BUCKET as i64 + 1, 1], &[], &mut out),
            Err(FlatMergeError::NotAHistogram)
        );
        assert_eq!(
            merge_flat(&[9, 1, 3, 1], &[], &mut out),
            Err(FlatMergeError::Unsorted)
        );
        assert_eq!(
            merge_flat(&[3, 1, 3, 1], &[], &mut out),
            Err(FlatMergeError::Unsorted)
        );
        assert_eq!(
            merge_flat(&[], &[4, 1, 4, 1], &mut out),
            Err(FlatMergeError::Unsorted)
        );
        assert_eq!(
            merge_flat(&[3, i64::MAX], &[3, 1], &mut out),
            Err(FlatMergeError::Overflow)
        );
    }

    #[test]
    fn dense_sums_equal_sparse_merges() {
        let parts: [&[i64]; 4] = [
            &[40, 2, 300, 1],
            &[12, 1, 40, -1],
            &[1999, 3],
            &[300, -1, 5, 7],
        ];
        let mut sparse = vec![];
        let mut dense = Dense::default();
        for p in parts {
            merge(&mut sparse, &from_flat(p).unwrap()).unwrap();
            dense.add_flat(p).unwrap();
        }
        assert_eq!(dense.to_sparse(), sparse);
        assert_eq!(
            to_flat(&dense.to_sparse()),
            vec![5, 7, 12, 1, 40, 1, 1999, 3]
        );
        let mut two = Dense::default();
        assert!(
            two.add_flat(&[2000, 1]).is_none(),
            "bucket past the largest accepted"
        );
        assert!(two.add_flat(&[3]).is_none());
        assert!(two.add_flat(&[-1, 3]).is_none());
        let mut a = Dense::default();
        a.add_flat(&[100, i64::MAX]).unwrap();
        assert!(a.add_flat(&[100, 1]).is_none());
        let mut m = Dense::default();
        m.add_flat(&[700, 1]).unwrap();
        m.merge(&dense).unwrap();
        assert_eq!(
            to_flat(&m.to_sparse()),
            vec![5, 7, 12, 1, 40, 1, 700, 1, 1999, 3]
        );
        assert_eq!(Dense::default().to_sparse(), vec![]);
    }
}
