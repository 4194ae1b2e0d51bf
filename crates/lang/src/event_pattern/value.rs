//! What one entry of a pattern's value list is, and whether one event value satisfies it.
//!
//! This is the single definition of value semantics. [`crate::event_pattern::Pattern::matches`]
//! calls [`ValueMatcher::matches`] directly; the compiled [`crate::event_pattern::Matcher`]
//! indexes the same matchers in hash tables and tries and must agree with it (the proptests
//! in `tests/event_patterns.rs` hold it to that).

use super::ip::{Ip, IpRange, parse_ip};
use super::number::{self, NumKey, NumRange};
use super::wildcard::Wildcard;

/// One event value (a leaf of the event), borrowed from the event or its unescaping buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Scalar<'a> {
    Str(&'a str),
    /// A number, by its lexeme.
    Num(&'a str),
    True,
    False,
    Null,
}

/// An exact value from a pattern's list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Literal {
    Str(Box<str>),
    Num(Number),
    True,
    False,
    Null,
}

/// A number constant: its key when it has a faithful double, else its lexeme only.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Number {
    Key(NumKey),
    Lexeme(Box<str>),
}

impl Number {
    pub(crate) fn of(lexeme: &str) -> Number {
        match number::key_of(lexeme) {
            Some(key) => Number::Key(key),
            None => Number::Lexeme(lexeme.into()),
        }
    }
}

/// Anything-but: matches every value except the listed ones (and never a missing field).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum AnythingBut {
    /// Sorted, deduplicated.
    Strings(Vec<Box<str>>),
    /// Sorted, deduplicated keys.
    Numbers(Vec<NumKey>),
    Prefixes(Vec<Box<str>>),
    Suffixes(Vec<Box<str>>),
    /// Case-folded, sorted, deduplicated.
    EqualsIgnoreCase(Vec<Box<str>>),
    Wildcards(Vec<Wildcard>),
}

/// One entry of a value list, except `{"exists": false}`, which is a property of the whole
/// field (see `FieldSpec`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum ValueMatcher {
    Exact(Literal),
    /// A plain string that is an IP address literal: matches that address however written.
    Ip(IpRange),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// Case-folded.
    EqualsIgnoreCase(Box<str>),
    /// Case-folded.
    PrefixIgnoreCase(Box<str>),
    /// Case-folded.
    SuffixIgnoreCase(Box<str>),
    Wildcard(Wildcard),
    Numeric(NumRange),
    Cidr(IpRange),
    AnythingBut(AnythingBut),
    /// `{"exists": true}`: any value at all, `null` included.
    Exists,
}

impl ValueMatcher {
    pub(crate) fn matches(&self, value: Scalar<'_>) -> bool {
        match self {
            ValueMatcher::Exact(literal) => literal_matches(literal, value),
            ValueMatcher::Ip(range) | ValueMatcher::Cidr(range) => {
                string_ip(value).is_some_and(|ip| range.contains(ip))
            }
            ValueMatcher::Prefix(p) => as_str(value).is_some_and(|s| s.starts_with(&**p)),
            ValueMatcher::Suffix(p) => as_str(value).is_some_and(|s| s.ends_with(&**p)),
            ValueMatcher::EqualsIgnoreCase(p) => as_str(value).is_some_and(|s| fold_case(s) == **p),
            ValueMatcher::PrefixIgnoreCase(p) => {
                as_str(value).is_some_and(|s| fold_case(s).starts_with(&**p))
            }
            ValueMatcher::SuffixIgnoreCase(p) => {
                as_str(value).is_some_and(|s| fold_case(s).ends_with(&**p))
            }
            ValueMatcher::Wildcard(w) => as_str(value).is_some_and(|s| w.matches(s.as_bytes())),
            ValueMatcher::Numeric(range) => num_key(value).is_some_and(|k| range.contains(k)),
            ValueMatcher::AnythingBut(but) => !excluded(but, value),
            ValueMatcher::Exists => true,
        }
    }
}

fn literal_matches(literal: &Literal, value: Scalar<'_>) -> bool {
    match (literal, value) {
        (Literal::Str(p), Scalar::Str(s)) => **p == *s,
        (Literal::Num(n), Scalar::Num(lexeme)) => match n {
            Number::Key(key) => number::key_of(lexeme) == Some(*key),
            Number::Lexeme(p) => **p == *lexeme,
        },
        (Literal::True, Scalar::True)
        | (Literal::False, Scalar::False)
        | (Literal::Null, Scalar::Null) => true,
        _ => false,
    }
}

/// Whether an anything-but list excludes the value.
pub(crate) fn excluded(but: &AnythingBut, value: Scalar<'_>) -> bool {
    match but {
        AnythingBut::Strings(list) => {
            as_str(value).is_some_and(|s| list.binary_search_by(|p| (**p).cmp(s)).is_ok())
        }
        AnythingBut::Numbers(list) => {
            num_key(value).is_some_and(|k| list.binary_search(&k).is_ok())
        }
        AnythingBut::Prefixes(list) => {
            as_str(value).is_some_and(|s| list.iter().any(|p| s.starts_with(&**p)))
        }
        AnythingBut::Suffixes(list) => {
            as_str(value).is_some_and(|s| list.iter().any(|p| s.ends_with(&**p)))
        }
        AnythingBut::EqualsIgnoreCase(list) => as_str(value).is_some_and(|s| {
            let folded = fold_case(s);
            list.binary_search_by(|p| (**p).cmp(folded.as_str()))
                .is_ok()
        }),
        AnythingBut::Wildcards(list) => {
            as_str(value).is_some_and(|s| list.iter().any(|w| w.matches(s.as_bytes())))
        }
    }
}

fn as_str(value: Scalar<'_>) -> Option<&str> {
    match value {
        Scalar::Str(s) => Some(s),
        _ => None,
    }
}

pub(crate) fn num_key(value: Scalar<'_>) -> Option<NumKey> {
    match value {
        Scalar::Num(lexeme) => number::key_of(lexeme),
        _ => None,
    }
}

pub(crate) fn string_ip(value: Scalar<'_>) -> Option<Ip> {
    as_str(value).and_then(parse_ip)
}

/// Case folding for the `equals-ignore-case` family: each character maps to the lower case of
/// its upper case, using only one-to-one mappings (as Java's `Character.toUpperCase` and
/// `toLowerCase` do), so folding never changes the number of characters and `ς`, `σ` and `Σ`
/// all meet.
pub(crate) fn fold_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    fold_case_into(text, &mut out);
    out
}

pub(crate) fn fold_case_into(text: &str, out: &mut String) {
    if text.is_ascii() {
        out.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        return;
    }
    for c in text.chars() {
        out.push(simple_lower(simple_upper(c)));
    }
}

fn simple_upper(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) => u,
        _ => c,
    }
}

fn simple_lower(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_folding_beyond_ascii() {
        assert_eq!(fold_case("AbC"), "abc");
        assert_eq!(fold_case("ΣΑΣ"), fold_case("σας"));
        assert_eq!(fold_case("ÉTÉ"), "été");
        // One-to-many mappings are left alone rather than changing lengths.
        assert_eq!(fold_case("ß"), "ß");
        assert_eq!(fold_case("K"), "k", "Kelvin sign folds with k");
    }

    #[test]
    fn numbers_compare_by_value_and_strings_never_equal_numbers() {
        let three_hundred = ValueMatcher::Exact(Literal::Num(Number::of("300")));
        assert!(three_hundred.matches(Scalar::Num("300.0")));
        assert!(three_hundred.matches(Scalar::Num("3.0e2")));
        assert!(!three_hundred.matches(Scalar::Str("300")));
        let huge = ValueMatcher::Exact(Literal::Num(Number::of("1E400")));
        assert!(huge.matches(Scalar::Num("1E400")), "same lexeme");
        assert!(!huge.matches(Scalar::Num("1e400")));
    }

    #[test]
    fn anything_but_matches_other_types() {
        let but = ValueMatcher::AnythingBut(AnythingBut::Prefixes(vec!["init".into()]));
        assert!(but.matches(Scalar::Num("12")));
        assert!(but.matches(Scalar::Null));
        assert!(but.matches(Scalar::Str("running")));
        assert!(!but.matches(Scalar::Str("initializing")));
        let numbers = ValueMatcher::AnythingBut(AnythingBut::Numbers(vec![
            number::key_of("100").expect("finite"),
        ]));
        assert!(!numbers.matches(Scalar::Num("1e2")));
        assert!(numbers.matches(Scalar::Str("100")));
    }
}
