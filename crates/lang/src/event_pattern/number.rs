//! Numbers: comparison by value, with the lexeme kept for what doubles cannot hold.
//!
//! EventBridge is built on aws/event-ruler, which compares numbers as IEEE-754 doubles and
//! refuses a pattern constant that has no finite double ("Cannot compare number : 1E309") or
//! that a double rounds to zero although it is not zero (`1E-325`). An exact-value list entry
//! such as `[123456789012345678901234567890]` is still accepted: it then matches the identical
//! lexeme only. So a number is its lexeme plus, when it has one, an order-preserving 64-bit key
//! of its double; `300`, `300.0` and `3.0e2` share the key.
//!
//! The double is produced by Rust's correctly rounded `f64::from_str` from the lexeme as
//! written, never by an intermediate parser that might round differently or fail on range (the
//! reason not to lean on serde_json here).

/// The order-preserving key of a finite double: unsigned comparison of keys is numeric
/// comparison of values, and `-0.0` and `0.0` share one key.
pub(crate) type NumKey = u64;

/// The key of a JSON number lexeme, or `None` when no finite, faithful double exists for it.
pub(crate) fn key_of(lexeme: &str) -> Option<NumKey> {
    let value: f64 = lexeme.parse().ok()?;
    if !value.is_finite() {
        return None;
    }
    if value == 0.0 {
        // A lexeme like 1E-400 parses to zero; comparing it as zero would be wrong.
        let mantissa = lexeme.split(['e', 'E']).next().unwrap_or(lexeme);
        if mantissa.bytes().any(|b| matches!(b, b'1'..=b'9')) {
            return None;
        }
        return Some(key_of_f64(0.0));
    }
    Some(key_of_f64(value))
}

/// The key of a finite, non-NaN double.
pub(crate) fn key_of_f64(value: f64) -> NumKey {
    let value = if value == 0.0 { 0.0 } else { value };
    let bits = value.to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

/// The double behind a key (for messages and tests).
#[cfg(test)]
pub(crate) fn f64_of_key(key: NumKey) -> f64 {
    let bits = if key >> 63 == 1 {
        key & !(1 << 63)
    } else {
        !key
    };
    f64::from_bits(bits)
}

/// The key of a pattern constant used for comparison, with event-ruler's reason when it has
/// none.
pub(crate) fn comparable(lexeme: &str) -> Result<NumKey, String> {
    key_of(lexeme).ok_or_else(|| format!("Cannot compare number : {lexeme}"))
}

/// A numeric range; bounds are keys, `None` means unbounded on that side.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NumRange {
    pub(crate) low: Option<Bound>,
    pub(crate) high: Option<Bound>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bound {
    pub(crate) key: NumKey,
    pub(crate) inclusive: bool,
}

impl NumRange {
    pub(crate) fn contains(&self, key: NumKey) -> bool {
        let above = match self.low {
            None => true,
            Some(b) if b.inclusive => key >= b.key,
            Some(b) => key > b.key,
        };
        let below = match self.high {
            None => true,
            Some(b) if b.inclusive => key <= b.key,
            Some(b) => key < b.key,
        };
        above && below
    }
}

/// Whether `text` is a JSON number lexeme (RFC 8259 grammar).
pub(crate) fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return false;
        }
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !matches!(b.get(i), Some(b'0'..=b'9')) {
            return false;
        }
        while matches!(b.get(i), Some(b'0'..=b'9')) {
            i += 1;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_a_key_whatever_the_lexeme() {
        let k = key_of("300").expect("finite");
        for lexeme in ["300.0", "3.0e2", "3e2", "3E+2", "300.000", "30000e-2"] {
            assert_eq!(key_of(lexeme), Some(k), "{lexeme}");
        }
        assert_eq!(key_of("-0"), key_of("0"));
        assert_eq!(key_of("-0.0e5"), key_of("0"));
        assert_ne!(key_of("300.0000001"), Some(k));
    }

    #[test]
    fn keys_sort_like_values() {
        let lexemes = [
            "-1.7976931348623157e308",
            "-5e9",
            "-122.41600944012424",
            "-1",
            "-1e-320",
            "0",
            "1E-320",
            "0.000033",
            "1",
            "3.8",
            "55555",
            "1.7976931348623157e308",
        ];
        let keys: Vec<NumKey> = lexemes.iter().map(|l| key_of(l).expect(l)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert_eq!(f64_of_key(keys[7]), 0.000033);
    }

    #[test]
    fn numbers_without_a_faithful_double_have_no_key() {
        assert_eq!(key_of("1E309"), None);
        assert_eq!(key_of("2.0e422"), None);
        assert_eq!(key_of("-1e400"), None);
        assert_eq!(key_of("1E-325"), None);
        assert!(key_of("1E-320").is_some(), "subnormals are fine");
        assert_eq!(
            comparable("1E-325").unwrap_err(),
            "Cannot compare number : 1E-325"
        );
    }

    #[test]
    fn ranges_honour_open_and_closed_bounds() {
        let k = |s: &str| key_of(s).expect(s);
        let r = NumRange {
            low: Some(Bound {
                key: k("0"),
                inclusive: false,
            }),
            high: Some(Bound {
                key: k("5"),
                inclusive: true,
            }),
        };
        assert!(!r.contains(k("0")));
        assert!(r.contains(k("1e-300")));
        assert!(r.contains(k("5.0")));
        assert!(!r.contains(k("5.000000000001")));
    }

    #[test]
    fn json_number_grammar() {
        for ok in ["0", "-0", "1", "10", "1.5", "1e5", "1E+5", "-1.5e-5", "0.0"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", "1.", ".5", "+1", "1e", "1e+", "NaN", "Infinity", "0x10",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }
}
