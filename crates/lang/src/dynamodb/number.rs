//! DynamoDB's Number: up to 38 significant digits, magnitudes from 1E-130 to below 1E+126,
//! exact. Kept as decimal digits and an exponent, so no value ever rounds.

use std::cmp::Ordering;

/// `0.d1 d2 ... dn × 10^exp`, negated when `neg`. `digits` has no leading or trailing zero;
/// zero is the empty digit list (and never negative).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Num {
    neg: bool,
    digits: Vec<u8>,
    exp: i32,
}

pub const MAX_DIGITS: usize = 38;

/// Why a number was refused, as DynamoDB words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumError {
    NotANumber(String),
    TooManyDigits,
    Overflow,
    Underflow,
}

impl std::fmt::Display for NumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumError::NotANumber(s) => {
                write!(f, "The parameter cannot be converted to a numeric value: {s}")
            }
            NumError::TooManyDigits => {
                f.write_str("Attempting to store more than 38 significant digits in a Number")
            }
            NumError::Overflow => f.write_str(
                "Number overflow. Attempting to store a number with magnitude larger than supported range",
            ),
            NumError::Underflow => f.write_str(
                "Number underflow. Attempting to store a number with magnitude smaller than supported range",
            ),
        }
    }
}

impl Num {
    pub fn zero() -> Num {
        Num {
            neg: false,
            digits: Vec::new(),
            exp: 0,
        }
    }

    pub fn from_i64(v: i64) -> Num {
        Num::parse(&v.to_string()).expect("an i64 is a valid number")
    }

    /// Parses DynamoDB's number syntax (`-12.5`, `1e3`, `.5`, `+7`) and checks its range.
    pub fn parse(text: &str) -> Result<Num, NumError> {
        let bad = || NumError::NotANumber(text.to_string());
        let s = text;
        let (neg, s) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.find(['e', 'E']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (int, frac) = match mantissa.find('.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, ""),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(bad());
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let exp10: i64 = match exponent {
            Some(e) => {
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                // Exponents this long are out of range whatever the mantissa.
                if digits.len() > 6 {
                    return Err(if e.starts_with('-') {
                        if int.bytes().chain(frac.bytes()).all(|b| b == b'0') {
                            return Ok(Num::zero());
                        }
                        NumError::Underflow
                    } else if int.bytes().chain(frac.bytes()).all(|b| b == b'0') {
                        return Ok(Num::zero());
                    } else {
                        NumError::Overflow
                    });
                }
                e.parse().map_err(|_| bad())?
            }
            None => 0,
        };
        let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
        // value = 0.digits × 10^(int.len() + exp10)
        let mut exp = int.len() as i64 + exp10;
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        exp -= lead as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Ok(Num::zero());
        }
        let n = Num {
            neg,
            digits,
            exp: exp.clamp(-100_000, 100_000) as i32,
        };
        n.check()?;
        Ok(n)
    }

    fn check(&self) -> Result<(), NumError> {
        if self.digits.is_empty() {
            return Ok(());
        }
        // The largest is 9.99..E+125 (exp 126); the smallest 1E-130 (exp -129).
        if self.exp > 126 {
            return Err(NumError::Overflow);
        }
        if self.exp < -129 {
            return Err(NumError::Underflow);
        }
        if self.digits.len() > MAX_DIGITS {
            return Err(NumError::TooManyDigits);
        }
        Ok(())
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    pub fn significant_digits(&self) -> usize {
        self.digits.len()
    }

    /// The plain decimal form DynamoDB answers with (`100`, `0.005`, `-1.5`).
    pub fn to_plain(&self) -> String {
        if self.digits.is_empty() {
            return "0".into();
        }
        let mut out = String::new();
        if self.neg {
            out.push('-');
        }
        let ds: String = self.digits.iter().map(|d| (b'0' + d) as char).collect();
        let n = ds.len() as i32;
        if self.exp <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-self.exp) as usize));
            out.push_str(&ds);
        } else if self.exp >= n {
            out.push_str(&ds);
            out.extend(std::iter::repeat_n('0', (self.exp - n) as usize));
        } else {
            out.push_str(&ds[..self.exp as usize]);
            out.push('.');
            out.push_str(&ds[self.exp as usize..]);
        }
        out
    }

    /// Bytes that sort as the numbers do.
    pub fn order_key(&self, out: &mut Vec<u8>) {
        if self.digits.is_empty() {
            out.push(0x01);
            return;
        }
        let e = (self.exp + 0x8000) as u16;
        if self.neg {
            out.push(0x00);
            out.extend_from_slice(&(!e).to_be_bytes());
            out.extend(self.digits.iter().map(|d| 0xff - (b'0' + d)));
            out.push(0xff);
        } else {
            out.push(0x02);
            out.extend_from_slice(&e.to_be_bytes());
            out.extend(self.digits.iter().map(|d| b'0' + d));
        }
    }

    /// Exact sum; an error when the result leaves DynamoDB's range or precision.
    pub fn add(&self, other: &Num) -> Result<Num, NumError> {
        if self.is_zero() {
            return Ok(other.clone());
        }
        if other.is_zero() {
            return Ok(self.clone());
        }
        // Align both as integers scaled by 10^low, where low is the lowest digit position.
        let low = (self.exp - self.digits.len() as i32).min(other.exp - other.digits.len() as i32);
        let high = self.exp.max(other.exp);
        let width = (high - low) as usize + 1;
        let a = self.aligned(low, width);
        let b = other.aligned(low, width);
        let (neg, mag) = if self.neg == other.neg {
            (self.neg, add_mag(&a, &b))
        } else {
            match cmp_mag(&a, &b) {
                Ordering::Equal => return Ok(Num::zero()),
                Ordering::Greater => (self.neg, sub_mag(&a, &b)),
                Ordering::Less => (other.neg, sub_mag(&b, &a)),
            }
        };
        // mag is little-endian digits of an integer × 10^low.
        let mut digits: Vec<u8> = mag.into_iter().rev().collect();
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..lead);
        let exp = low + digits.len() as i32;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            return Ok(Num::zero());
        }
        let n = Num { neg, digits, exp };
        n.check()?;
        Ok(n)
    }

    pub fn negate(&self) -> Num {
        let mut n = self.clone();
        if !n.is_zero() {
            n.neg = !n.neg;
        }
        n
    }

    /// Little-endian digits of `self / 10^low`, `width` long.
    fn aligned(&self, low: i32, width: usize) -> Vec<u8> {
        let mut v = vec![0u8; width];
        let n = self.digits.len() as i32;
        for (i, d) in self.digits.iter().enumerate() {
            // digit i has weight 10^(exp - 1 - i)
            let pos = (self.exp - 1 - i as i32 - low) as usize;
            v[pos] = *d;
        }
        let _ = n;
        v
    }
}

fn add_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len() + 1);
    let mut carry = 0;
    for i in 0..a.len() {
        let s = a[i] + b[i] + carry;
        out.push(s % 10);
        carry = s / 10;
    }
    out.push(carry);
    out
}

fn sub_mag(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(a.len());
    let mut borrow = 0i8;
    for i in 0..a.len() {
        let mut d = a[i] as i8 - b[i] as i8 - borrow;
        borrow = 0;
        if d < 0 {
            d += 10;
            borrow = 1;
        }
        out.push(d as u8);
    }
    out
}

fn cmp_mag(a: &[u8], b: &[u8]) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

impl Ord for Num {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut a = Vec::new();
        let mut b = Vec::new();
        self.order_key(&mut a);
        other.order_key(&mut b);
        a.cmp(&b)
    }
}

impl PartialOrd for Num {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Num {
        Num::parse(s).expect(s)
    }

    #[test]
    fn normalizes_like_dynamodb() {
        for (input, plain) in [
            ("1.50", "1.5"),
            ("01", "1"),
            ("1e2", "100"),
            ("-0", "0"),
            ("0.000", "0"),
            (".5", "0.5"),
            ("-12.340e-3", "-0.01234"),
            ("+7", "7"),
            (
                "123456789012345678901234567890.12345678",
                "123456789012345678901234567890.12345678",
            ),
            ("1E-130", &format!("0.{}1", "0".repeat(129))),
        ] {
            assert_eq!(n(input).to_plain(), plain, "{input}");
        }
    }

    #[test]
    fn rejects_out_of_range() {
        assert_eq!(Num::parse("abc"), Err(NumError::NotANumber("abc".into())));
        assert_eq!(Num::parse("1e126"), Err(NumError::Overflow));
        assert!(Num::parse("9.9999999999999999999999999999999999999e125").is_ok());
        assert_eq!(Num::parse("1e-131"), Err(NumError::Underflow));
        assert_eq!(
            Num::parse("1.234567890123456789012345678901234567891"),
            Err(NumError::TooManyDigits)
        );
        for bad in [
            "", "-", "1..2", "1e", "e5", "1.2.3", "0x10", "1 2", "NaN", "Infinity",
        ] {
            assert!(Num::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_by_value() {
        let sorted = [
            "-1e10", "-100", "-1.5", "-1", "-0.12", "-0.1", "0", "0.001", "0.1", "0.12", "1",
            "1.5", "2", "10", "100", "1e10",
        ];
        for w in sorted.windows(2) {
            assert!(n(w[0]) < n(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn adds_exactly() {
        for (a, b, sum) in [
            ("1", "2", "3"),
            ("0.1", "0.2", "0.3"),
            ("5", "-7.5", "-2.5"),
            ("-1", "1", "0"),
            (
                "99999999999999999999999999999999999999",
                "1",
                "100000000000000000000000000000000000000",
            ),
            ("1e100", "-1e100", "0"),
            ("123.456", "-0.456", "123"),
        ] {
            assert_eq!(n(a).add(&n(b)).expect("sum").to_plain(), sum, "{a} + {b}");
        }
        assert_eq!(n("1e100").add(&n("1e-100")), Err(NumError::TooManyDigits));
    }
}
