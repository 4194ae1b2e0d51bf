//! Wildcard patterns: `*` matches any run of characters, `\*` is a literal star, `\\` a literal
//! backslash.
//!
//! Matching is the classic greedy glob algorithm over literal pieces (anchored first and last
//! piece, leftmost occurrence for each middle piece), which is linear for the star-only
//! language and needs no backtracking. The complexity measure below is ours: EventBridge
//! rejects wildcard patterns that are "too complex" without publishing the rule, so we bound
//! the number of pattern positions a matcher can be in at once (see [`MAX_COMPLEXITY`]).

/// A parsed wildcard: the literal pieces between the stars (`a*b*c` is `["a", "b", "c"]`,
/// `*x*` is `["", "x", ""]`, a pattern without stars is one piece).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Wildcard {
    pieces: Vec<Box<[u8]>>,
}

/// The largest accepted complexity. The measure is the most pattern positions a matcher can
/// occupy at once, over every input (stars count with the position after them). Calibrated on
/// the two patterns EventBridge has been recorded on: `/Users/*/dir/dir/dir/dir/dir/doc.txt`
/// (8) is accepted and `*:*:*:*:*:event-bus/*` (13) is "too complex".
pub(crate) const MAX_COMPLEXITY: usize = 10;

/// Subset-construction states explored before a pattern is declared too complex anyway.
const MAX_EXPLORED_STATES: usize = 4096;

pub(crate) const TOO_COMPLEX: &str = "Rule is too complex - try using fewer wildcard characters or fewer repeating character sequences after a wildcard character";

impl Wildcard {
    /// Parses `text`, reporting errors at byte positions of the text as EventBridge quotes
    /// it (with a leading double quote, so the first character is position 1).
    pub(crate) fn parse(text: &str) -> Result<Wildcard, String> {
        let bytes = text.as_bytes();
        let mut pieces = Vec::new();
        let mut current = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'*' => {
                    if bytes.get(i + 1) == Some(&b'*') {
                        return Err(format!("Consecutive wildcard characters at pos {}", i + 1));
                    }
                    pieces.push(std::mem::take(&mut current).into_boxed_slice());
                }
                b'\\' => match bytes.get(i + 1) {
                    Some(&next @ (b'*' | b'\\')) => {
                        current.push(next);
                        i += 1;
                    }
                    _ => return Err(format!("Invalid escape character at pos {}", i + 1)),
                },
                other => current.push(other),
            }
            i += 1;
        }
        pieces.push(current.into_boxed_slice());
        Ok(Wildcard { pieces })
    }

    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        let pieces = &self.pieces;
        let first = &pieces[0];
        if pieces.len() == 1 {
            return value == &**first;
        }
        let last = &pieces[pieces.len() - 1];
        if value.len() < first.len() + last.len()
            || !value.starts_with(first)
            || !value.ends_with(last)
        {
            return false;
        }
        let mut rest = &value[first.len()..value.len() - last.len()];
        for piece in &pieces[1..pieces.len() - 1] {
            match find(rest, piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }

    /// The literal before the first star, if the pattern has a star and starts with a literal.
    pub(crate) fn anchored_prefix(&self) -> Option<&[u8]> {
        (self.pieces.len() > 1 && !self.pieces[0].is_empty()).then_some(&*self.pieces[0])
    }

    /// The literal after the last star, if the pattern has a star and ends with a literal.
    pub(crate) fn anchored_suffix(&self) -> Option<&[u8]> {
        let last = &self.pieces[self.pieces.len() - 1];
        (self.pieces.len() > 1 && !last.is_empty()).then_some(&**last)
    }

    /// The whole literal when the pattern has no star.
    pub(crate) fn literal(&self) -> Option<&[u8]> {
        (self.pieces.len() == 1).then_some(&*self.pieces[0])
    }

    /// The pattern as a token list: `None` is a star.
    fn tokens(&self) -> Vec<Option<u8>> {
        let mut tokens = Vec::new();
        for (i, piece) in self.pieces.iter().enumerate() {
            if i > 0 {
                tokens.push(None);
            }
            tokens.extend(piece.iter().map(|&b| Some(b)));
        }
        tokens
    }
}

/// Leftmost occurrence of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&head, tail)) = needle.split_first() else {
        return Some(0);
    };
    if haystack.len() < needle.len() {
        return None;
    }
    let last_start = haystack.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match haystack[i..=last_start].iter().position(|&b| b == head) {
            None => return None,
            Some(offset) => {
                let at = i + offset;
                if &haystack[at + 1..at + needle.len()] == tail {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// The complexity of a set of wildcard patterns matched against the same field: the most
/// pattern positions (over all patterns) occupied at once while reading any input, found by
/// exploring the subset construction of their union. Saturates above [`MAX_COMPLEXITY`].
pub(crate) fn complexity(patterns: &[&Wildcard]) -> usize {
    use std::collections::{BTreeSet, HashSet};

    let programs: Vec<Vec<Option<u8>>> = patterns.iter().map(|w| w.tokens()).collect();
    // A state is a set of (pattern, position); a star position also occupies the next one.
    type Set = BTreeSet<(usize, usize)>;
    let close = |set: Set| -> Set {
        let mut out = set.clone();
        let mut todo: Vec<(usize, usize)> = set.into_iter().collect();
        while let Some((p, i)) = todo.pop() {
            if programs[p].get(i) == Some(&None) && out.insert((p, i + 1)) {
                todo.push((p, i + 1));
            }
        }
        out
    };
    let mut alphabet: Vec<u8> = programs.iter().flatten().flatten().copied().collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    // One byte that occurs in no pattern stands for all the others.
    if let Some(other) = (0..=255u8).find(|b| alphabet.binary_search(b).is_err()) {
        alphabet.push(other);
    }

    let start = close((0..programs.len()).map(|p| (p, 0)).collect());
    let mut seen: HashSet<Set> = HashSet::new();
    let mut todo = vec![start.clone()];
    seen.insert(start);
    let mut worst = 0;
    while let Some(set) = todo.pop() {
        worst = worst.max(set.len());
        if worst > MAX_COMPLEXITY || seen.len() > MAX_EXPLORED_STATES {
            return MAX_COMPLEXITY + 1;
        }
        for &byte in &alphabet {
            let mut next = Set::new();
            for &(p, i) in &set {
                match programs[p].get(i) {
                    Some(None) => {
                        next.insert((p, i));
                    }
                    Some(Some(b)) if *b == byte => {
                        next.insert((p, i + 1));
                    }
                    _ => {}
                }
            }
            let next = close(next);
            if !next.is_empty() && seen.insert(next.clone()) {
                todo.push(next);
            }
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(text: &str) -> Wildcard {
        Wildcard::parse(text).expect(text)
    }

    #[test]
    fn matching() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("", "", true),
            ("", "x", false),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "acb", false),
            ("*/dir/*", "/a/dir/b", true),
            ("*/dir/*", "/a/dir", false),
            ("he*l*", "hello", true),
            ("h*l*o", "hello", true),
            ("*ab*ab*", "abab", true),
            ("*ab*ab*", "aba", false),
            ("aa*aa", "aaa", false),
            ("aa*aa", "aaaa", true),
            ("2*0*1*7", "2071117", true),
            ("2*0*1*7", "2701", false),
            ("a*é", "aé", true),
        ];
        for &(pattern, value, expected) in cases {
            assert_eq!(
                w(pattern).matches(value.as_bytes()),
                expected,
                "{pattern} ~ {value}"
            );
        }
    }

    #[test]
    fn escapes() {
        let star = w(r"a\*b");
        assert!(star.matches(b"a*b"));
        assert!(!star.matches(b"axb"));
        assert_eq!(star.literal(), Some(&b"a*b"[..]));
        let slash = w(r"a\\*");
        assert!(slash.matches(br"a\"));
        assert!(slash.matches(br"a\xyz"));
        assert!(!slash.matches(b"axyz"));
        let both = w(r"\**\*");
        assert!(both.matches(b"**"));
        assert!(both.matches(b"*abc*"));
        assert!(!both.matches(b"*abc"));
    }

    #[test]
    fn parse_errors_quote_eventbridge_positions() {
        let reason = |t: &str| Wildcard::parse(t).unwrap_err();
        assert_eq!(
            reason("abc**def"),
            "Consecutive wildcard characters at pos 4"
        );
        assert_eq!(
            reason("arn:aws:events:us-east-1:**:event-bus/*"),
            "Consecutive wildcard characters at pos 26"
        );
        assert_eq!(reason(r"a\"), "Invalid escape character at pos 2");
        assert_eq!(reason(r"a\b"), "Invalid escape character at pos 2");
        assert_eq!(reason(r"\\\"), "Invalid escape character at pos 3");
    }

    #[test]
    fn complexity_is_calibrated_on_recorded_eventbridge_answers() {
        let c = |t: &str| complexity(&[&w(t)]);
        assert!(c("/Users/*/dir/dir/dir/dir/dir/doc.txt") <= MAX_COMPLEXITY);
        assert!(c("arn:aws:events:us-east-1:*:event-bus/*") <= MAX_COMPLEXITY);
        assert!(c("*:*:*:*:*:event-bus/*") > MAX_COMPLEXITY);
        assert_eq!(c("abc"), 1);
        assert_eq!(c("a*b"), 3);
    }
}
