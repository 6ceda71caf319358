//! PostgreSQL `numeric` values built from and read into fixed-point costs (integer counts of
//! 10^-16 USD, `pricing::Cost`) without going through text: the cost trigger writes one per row
//! and the rollups read one per row, so `numeric_in`/`numeric_out` were a measurable share of a
//! COPY. Plain Rust over the on-disk format (stable: pg_upgrade keeps numeric data files as they
//! are), with the varlena header left to the caller.
//!
//! Format (PostgreSQL `src/backend/utils/adt/numeric.c`): after the 4-byte varlena header, a
//! uint16 header, then base-10000 digits (int16), most significant first, without leading or
//! trailing zero digits. Short form (what `make_result` writes when display scale <= 63 and
//! -64 <= weight <= 63): header = 0x8000 | sign 0x2000 | dscale << 7 | weight sign 0x0040 |
//! weight & 0x3F. Long form: header = sign (0x0000 / 0x4000) | dscale, then an int16 weight.
//! 0xC000 marks NaN and infinities.

/// Scale of the fixed-point values: 16 decimals, i.e. exactly four base-10000 digits.
const SCALE_DIGITS: i32 = 4;

const SHORT: u16 = 0x8000;
const SHORT_SIGN: u16 = 0x2000;
const SHORT_DSCALE_SHIFT: u16 = 7;
const SHORT_WEIGHT_SIGN: u16 = 0x0040;
const SHORT_WEIGHT_MASK: u16 = 0x003F;
const SIGN_MASK: u16 = 0xC000;
const NEG: u16 = 0x4000;
const SPECIAL: u16 = 0xC000;
const DSCALE_MASK: u16 = 0x3FFF;

/// The numeric body (header and digits, no varlena header) of `units` x 10^-16, with the
/// display scale `numeric_in` gives its shortest plain text (trailing zeros dropped).
pub fn encode_units(units: i128) -> Encoded {
    let neg = units < 0;
    let mut mag = units.unsigned_abs();
    // Base-10000 digits, least significant first; index k has weight k - 4. 128-bit division is
    // slow: one divides off the low 16 decimal digits, the rest is done in 64 bits when it fits.
    let mut groups = [0i16; 12];
    let mut n = 0;
    if mag != 0 {
        let mut lo = (mag % 10_000_000_000_000_000) as u64;
        mag /= 10_000_000_000_000_000;
        for g in groups.iter_mut().take(4) {
            *g = (lo % 10_000) as i16;
            lo /= 10_000;
        }
        n = 4;
        if let Ok(mut hi) = u64::try_from(mag) {
            while hi != 0 {
                groups[n] = (hi % 10_000) as i16;
                hi /= 10_000;
                n += 1;
            }
        } else {
            while mag != 0 {
                groups[n] = (mag % 10_000) as i16;
                mag /= 10_000;
                n += 1;
            }
        }
        while n > 0 && groups[n - 1] == 0 {
            n -= 1;
        }
    }
    let mut out = Encoded {
        buf: [0; 26],
        len: 0,
    };
    let Some(lsb) = groups[..n].iter().position(|g| *g != 0) else {
        // Zero: no digits, weight 0, positive, scale 0.
        out.push(&SHORT.to_ne_bytes());
        return out;
    };
    let msb = n - 1;
    let weight = msb as i32 - SCALE_DIGITS;
    let dscale: u16 = if lsb >= SCALE_DIGITS as usize {
        0
    } else {
        // Decimals: the fractional digit groups down to the last non-zero one, minus its trailing zeros.
        let mut last = groups[lsb];
        let mut tz = 0;
        while last % 10 == 0 {
            last /= 10;
            tz += 1;
        }
        ((SCALE_DIGITS as usize - lsb) * 4 - tz) as u16
    };
    let header = SHORT
        | if neg { SHORT_SIGN } else { 0 }
        | (dscale << SHORT_DSCALE_SHIFT)
        | if weight < 0 { SHORT_WEIGHT_SIGN } else { 0 }
        | (weight as u16 & SHORT_WEIGHT_MASK);
    out.push(&header.to_ne_bytes());
    for k in (lsb..=msb).rev() {
        out.push(&groups[k].to_ne_bytes());
    }
    out
}

/// A numeric body built by `encode_units`, without a heap allocation: header and at most 12
/// base-10000 digits.
#[derive(Clone, Copy)]
pub struct Encoded {
    buf: [u8; 26],
    len: usize,
}

impl Encoded {
    fn push(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl std::ops::Deref for Encoded {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq<Vec<u8>> for Encoded {
    fn eq(&self, o: &Vec<u8>) -> bool {
        self.as_slice() == o.as_slice()
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

/// The value of a numeric body as units of 10^-16, when it is finite, has no non-zero digit
/// beyond 16 decimals and fits in an i128; None otherwise (the caller falls back to numeric
/// arithmetic).
/// Whether a numeric's binary body is NaN, Infinity or -Infinity.
pub fn is_special(body: &[u8]) -> bool {
    body.len() >= 2 && u16::from_ne_bytes([body[0], body[1]]) & SIGN_MASK == SPECIAL
}

pub fn decode_units(body: &[u8]) -> Option<i128> {
    if body.len() < 2 {
        return None;
    }
    let header = u16::from_ne_bytes([body[0], body[1]]);
    let (neg, weight, digits) = if header & SIGN_MASK == SHORT {
        let w = (header & SHORT_WEIGHT_MASK) as i32;
        let w = if header & SHORT_WEIGHT_SIGN != 0 {
            w - 64
        } else {
            w
        };
        (header & SHORT_SIGN != 0, w, &body[2..])
    } else if header & SIGN_MASK == SPECIAL {
        return None;
    } else {
        if body.len() < 4 {
            return None;
        }
        let _dscale = header & DSCALE_MASK;
        (
            header & SIGN_MASK == NEG,
            i16::from_ne_bytes([body[2], body[3]]) as i32,
            &body[4..],
        )
    };
    let mut v: i128 = 0;
    for (i, d) in digits.chunks_exact(2).enumerate() {
        let d = i16::from_ne_bytes([d[0], d[1]]) as i128;
        let exp = weight - i as i32 + SCALE_DIGITS;
        if exp < 0 {
            if d != 0 {
                return None;
            }
            continue;
        }
        let p = 10_000i128.checked_pow(exp as u32)?;
        v = v.checked_add(d.checked_mul(p)?)?;
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn short(neg: bool, dscale: u16, weight: i32, digits: &[i16]) -> Vec<u8> {
        let h = SHORT
            | if neg { SHORT_SIGN } else { 0 }
            | (dscale << 7)
            | if weight < 0 { SHORT_WEIGHT_SIGN } else { 0 }
            | (weight as u16 & SHORT_WEIGHT_MASK);
        let mut v = h.to_ne_bytes().to_vec();
        for d in digits {
            v.extend_from_slice(&d.to_ne_bytes());
        }
        v
    }

    #[test]
    fn encodes_like_numeric_in() {
        // numeric_in('18'): one digit, weight 0, scale 0.
        assert_eq!(
            encode_units(180_000_000_000_000_000),
            short(false, 0, 0, &[18])
        );
        // numeric_in('0.0315'): 0315 at weight -1, scale 4.
        assert_eq!(
            encode_units(315_000_000_000_000),
            short(false, 4, -1, &[315])
        );
        // numeric_in('12345.6'): 1 2345 . 6000 -> digits [1, 2345, 6000], weight 1, scale 1.
        assert_eq!(
            encode_units(123_456_000_000_000_000_000),
            short(false, 1, 1, &[1, 2345, 6000])
        );
        // numeric_in('-0.0000000000000001'): 0001 at weight -4, scale 16.
        assert_eq!(encode_units(-1), short(true, 16, -4, &[1]));
        // numeric_in('10000'): digit 1 at weight 1 (trailing zero digit dropped), scale 0.
        assert_eq!(
            encode_units(100_000_000_000_000_000_000),
            short(false, 0, 1, &[1])
        );
        assert_eq!(encode_units(0), short(false, 0, 0, &[]));
    }

    #[test]
    fn round_trips() {
        for v in [
            0i128,
            1,
            -1,
            9_999,
            10_000,
            123_456_789,
            180_000_000_000_000_000,
            -25_000_000_000_000_000,
            i128::MAX,
            i128::MIN + 1,
            10_000_000_000_000_000,
            9_999_999_999_999_999,
            10_000_000_000_000_001,
            -123_450_000_000_000_000_000_000,
            184_467_440_737_095_516_150_000_000_000_000,
            1_000_000_000_000_000_000_000_000_000_000_000_000,
        ] {
            assert_eq!(decode_units(&encode_units(v)), Some(v), "{v}");
        }
    }

    #[test]
    fn decodes_long_form_and_refuses_what_does_not_fit() {
        // Long form of 2.5: sign/dscale 0x0001, weight 0, digits [2, 5000].
        let mut long = 1u16.to_ne_bytes().to_vec();
        long.extend_from_slice(&0i16.to_ne_bytes());
        long.extend_from_slice(&2i16.to_ne_bytes());
        long.extend_from_slice(&5000i16.to_ne_bytes());
        assert_eq!(decode_units(&long), Some(25_000_000_000_000_000));
        // 17 decimals: a non-zero digit at weight -5.
        assert_eq!(decode_units(&short(false, 17, -5, &[1000])), None);
        // Trailing zero digits beyond the scale are fine.
        assert_eq!(
            decode_units(&short(false, 1, 0, &[3, 0, 0, 0, 0, 0])),
            Some(30_000_000_000_000_000)
        );
        // NaN.
        assert_eq!(decode_units(&0xC000u16.to_ne_bytes()), None);
        // Too large for i128.
        assert_eq!(decode_units(&short(false, 0, 20, &[1])), None);
    }

    /// The body is the shortest one: no zero digit groups at either end (numeric_in's form).
    #[test]
    fn encoded_bodies_have_no_zero_groups_at_the_ends() {
        let mut x: i128 = 1;
        for i in 0..120 {
            x = x.wrapping_mul(7).wrapping_add(i)
                % 1_000_000_000_000_000_000_000_000_000_000_000_000;
            for v in [
                x,
                -x,
                (x % 10_000_000_000_000_000_000_000_000_000_000) * 10_000,
                x / 10_000,
            ] {
                let e = encode_units(v);
                assert_eq!(decode_units(&e), Some(v), "{v}");
                if v != 0 {
                    let digits = &e.as_slice()[2..];
                    assert!(
                        digits.len() >= 2 && digits[..2] != [0, 0],
                        "{v}: {digits:?}"
                    );
                    assert!(digits[digits.len() - 2..] != [0, 0], "{v}: {digits:?}");
                }
            }
        }
    }
}
