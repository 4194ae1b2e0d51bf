//! EventBridge event patterns: parsing with EventBridge's validation, and matching events
//! against one pattern or against many at once.
//!
//! The same language serves EventBridge rules (PutRule, TestEventPattern) and, later, SNS
//! filter policies, Lambda event-source `FilterCriteria` and Pipes filters. The module is pure:
//! no IO, no async, no global state beyond per-thread scratch buffers.
//!
//! # API
//!
//! ```
//! use tsumiki_lang::event_pattern::{Matcher, Pattern};
//!
//! let pattern = Pattern::parse(r#"{"source": ["aws.ec2"], "detail": {"state": [{"anything-but": "pending"}]}}"#)?;
//! let event = r#"{"source": "aws.ec2", "detail": {"state": "running"}}"#;
//! assert!(pattern.matches(event)?);
//!
//! let mut bus = Matcher::new();
//! bus.add("rule-1", &pattern);
//! bus.add("rule-2", &Pattern::parse(r#"{"detail": {"state": [{"prefix": "run"}]}}"#)?);
//! assert_eq!(bus.matches(event)?, ["rule-1", "rule-2"]);
//!
//! let bad = Pattern::parse(r#"{"source": "aws.ec2"}"#).unwrap_err();
//! assert_eq!(bad.reason(), r#""source" must be an object or an array"#);
//! assert_eq!(bad.to_string(), r#"Event pattern is not valid. Reason: "source" must be an object or an array"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! * [`Pattern::parse`] validates a pattern; [`PatternError::reason`] is the text EventBridge
//!   puts after `Reason: ` (event-ruler's messages, which EventBridge reports verbatim), and
//!   its `Display` is the whole `InvalidEventPatternException` message.
//! * [`Pattern::matches`] evaluates one pattern by a direct search (TestEventPattern).
//! * [`Matcher`] compiles many patterns, each under a caller-chosen rule id, into one automaton
//!   (one per event bus) and returns the ids of the matching rules. Adding is incremental,
//!   removing rebuilds. It is `Send + Sync`.
//! * [`EventError`]: the event is not a JSON object (or not JSON).
//!
//! # Semantics
//!
//! A pattern mirrors the event's structure; each leaf is a non-empty array of candidate values
//! and matchers (ORed); fields are ANDed; fields the pattern does not name are ignored. The
//! matchers are exact values (strings, numbers by value, `true`, `false`, `null`), `prefix`,
//! `suffix`, `equals-ignore-case` and the prefix/suffix ignore-case forms, `wildcard`,
//! `anything-but` (values, numbers, prefix, suffix, ignore-case, wildcard), `numeric` ranges,
//! `cidr` (IPv4 and IPv6), `exists`, and `$or` at any depth. event-ruler's undocumented
//! `exactly` (an exact string match) is accepted too.
//!
//! Decisions worth knowing, each pinned by a test:
//!
//! * Paths are member names joined with `.`, in the pattern and in the event alike, so a dotted
//!   name and the nested form are the same field in both directions.
//! * Numbers compare as IEEE-754 doubles, like event-ruler: `300`, `300.0` and `3.0e2` are
//!   equal; a pattern constant without a finite double (`1E309`) or that a double rounds to
//!   zero (`1E-325`) is rejected in `numeric` and `anything-but`, and as a plain value matches
//!   its identical lexeme only. Events keep every number's lexeme (see `flatten`).
//! * Event arrays: a field matches if any element matches, at any depth of nesting; fields
//!   taken from objects in different elements of the same array never combine (array
//!   consistency).
//! * `exists: true` matches any value, `null` included, but not an object or an empty array;
//!   `exists: false` matches when no value is present that is consistent with the rest of the
//!   match. Unlike event-ruler, whose answer here depends on the alphabetical order of the
//!   field names, the check is made against the complete match.
//! * `anything-but` never matches a missing field and matches values of other types
//!   (`{"anything-but": {"prefix": "init"}}` matches `12` and `null`).
//! * A plain string value that is an IP address literal matches the same address however it
//!   is written (event-ruler's behaviour); a CIDR block with host bits set covers its network.
//! * Limits: `$or` may expand to at most 1,000 combinations; wildcards on one field may not be
//!   "too complex" (our measure, calibrated on EventBridge's recorded answers; see
//!   `wildcard::MAX_COMPLEXITY`). The 2,048-character pattern quota and the 30
//!   wildcard-rules-per-bus quota are account quotas for the service to enforce.
//!
//! # Layout and hand-written parts
//!
//! * `json`: a pull tokenizer for pattern text, and `compile`, which follows event-ruler's
//!   `JsonRuleCompiler` token by token: reproducing EventBridge's reasons means failing on
//!   the same token for the same cause, which a tree parser would not.
//! * `flatten`: a hand-written event parser (quamina's approach) that keeps number lexemes
//!   (serde_json would round them, and its `arbitrary_precision` feature would change it for
//!   the whole workspace) and walks a trie of the paths rules name. Members no rule names are
//!   skipped 64 bytes at a time, simdjson-style in 64-bit words (a prefix XOR over quote bits
//!   for the bytes inside strings, bracket counts by popcount): SIMD intrinsics would need
//!   `unsafe`, and skipping is most of the work for typical events. Skipped members are only
//!   checked for terminated strings and balanced brackets.
//! * `matcher`: the automaton (see its docs), with per-field hash tables, including a compact
//!   open-addressing table (`hash::KeyTable`) whose footprint keeps 10,000 rules as fast as 10,
//!   and prefix/suffix lookup by key length instead of a byte trie.
//! * `pattern`: the reference search (backtracking over one leaf per field), kept simple on
//!   purpose: the property tests hold the automaton to it.
//! * `value`: the single definition of what a value matcher accepts; `wildcard`: a greedy glob
//!   matcher and the complexity measure; `ip`: Java-compatible address parsing; `number`:
//!   order-preserving number keys; `hash`: an Fx hasher and `KeyTable`.
//!
//! Array consistency is a search; two exact prunings keep it from multiplying: arrays whose
//! elements hold leaves of one path only are dropped from trails (they can never conflict),
//! and leaves that add no array position do not re-explore a state. The worst case left is a
//! pattern whose fields pair up inside several distinct shared arrays, as in event-ruler.

mod compile;
mod flatten;
mod hash;
mod ip;
mod json;
mod matcher;
mod number;
mod pattern;
mod value;
mod wildcard;

use std::fmt;

pub use matcher::Matcher;
pub use pattern::Pattern;

/// Why a pattern is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternError {
    reason: String,
}

impl PatternError {
    fn new(reason: String) -> PatternError {
        PatternError { reason }
    }

    /// The reason, as EventBridge words it after `Reason: `.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Event pattern is not valid. Reason: {}", self.reason)
    }
}

impl std::error::Error for PatternError {}

/// Why an event could not be matched: it is not a JSON object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventError {
    reason: String,
    offset: usize,
}

impl EventError {
    fn new(reason: &str, offset: usize) -> EventError {
        EventError {
            reason: reason.to_owned(),
            offset,
        }
    }

    /// What is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The byte offset in the event text where it was found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Event is not valid: {} at byte {}",
            self.reason, self.offset
        )
    }
}

impl std::error::Error for EventError {}
