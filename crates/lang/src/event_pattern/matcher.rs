//! [`Matcher`]: many patterns compiled into one automaton.
//!
//! The automaton is event-ruler's two-level design. A sub-rule (one `$or` branch of a
//! pattern) is a sequence of steps, one per field, in sorted path order; the sub-rules of all
//! patterns form a trie of *states* in which sub-rules that begin with the same steps share
//! states. From a state, each path with outgoing steps has one *field matcher* that takes an
//! event value to the next states of every step whose value list accepts it: exact values
//! through hash tables, prefixes and suffixes through hash tables probed once per key length
//! in use, wildcards with a literal end through those plus a check, and only anything-but,
//! numeric ranges, CIDR blocks and wildcards with stars at both ends through lists. Matching walks from the root over the event's leaves; the work
//! depends on the event and on the steps its values select, not on how many rules exist.
//!
//! Array consistency is enforced during the walk: each taken step adds its leaf's array trail
//! to the walk's membership, and a leaf whose trail disagrees with it cannot be taken.
//! `{"exists": false}` steps are deferred: they always advance, and the field's absence is
//! checked against the final membership when a rule is reached, so the answer does not depend
//! on the order of the fields.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use super::compile::FieldSpec;
use super::flatten::{Flat, PathTrie, flatten};
use super::hash::{FxHashMap, KeyTable};
use super::ip::IpRange;
use super::number::{self, NumRange};
use super::pattern::{absences_hold, join};
use super::value::{
    AnythingBut, Literal, Number, Scalar, ValueMatcher, excluded, fold_case_into, string_ip,
};
use super::wildcard::Wildcard;
use super::{EventError, Pattern};

/// Many patterns, each under a rule id, compiled into one automaton.
///
/// `add` is incremental; `remove` rebuilds the automaton from the remaining patterns. A
/// `Matcher` is `Send + Sync` and `matches` takes `&self`, so one can be shared behind an
/// `Arc<RwLock<_>>` and matched from many threads.
pub struct Matcher<R> {
    rules: Vec<Option<(R, Pattern)>>,
    slots: HashMap<R, u32>,
    automaton: Automaton,
}

impl<R: Clone + Eq + Hash> Default for Matcher<R> {
    fn default() -> Self {
        Matcher {
            rules: Vec::new(),
            slots: HashMap::new(),
            automaton: Automaton::default(),
        }
    }
}

impl<R: Clone + Eq + Hash> Matcher<R> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `pattern` under `rule`, replacing the rule's previous pattern if it had one.
    pub fn add(&mut self, rule: R, pattern: &Pattern) {
        if self.slots.contains_key(&rule) {
            self.remove(&rule);
        }
        let slot = self.rules.len() as u32;
        self.automaton.add(slot, pattern);
        self.slots.insert(rule.clone(), slot);
        self.rules.push(Some((rule, pattern.clone())));
    }

    /// Removes a rule; returns whether it was there.
    pub fn remove(&mut self, rule: &R) -> bool {
        let Some(slot) = self.slots.remove(rule) else {
            return false;
        };
        self.rules[slot as usize] = None;
        // Slots are renumbered densely so a long-lived matcher does not grow with churn.
        let old = std::mem::take(&mut self.rules);
        self.slots.clear();
        self.automaton = Automaton::default();
        for (rule, pattern) in old.into_iter().flatten() {
            let slot = self.rules.len() as u32;
            self.automaton.add(slot, &pattern);
            self.slots.insert(rule.clone(), slot);
            self.rules.push(Some((rule, pattern)));
        }
        true
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The pattern a rule was added with.
    pub fn pattern(&self, rule: &R) -> Option<&Pattern> {
        let slot = *self.slots.get(rule)?;
        self.rules[slot as usize].as_ref().map(|(_, p)| p)
    }

    /// The rules whose patterns match the event (JSON text of an object), in the order they
    /// were added.
    pub fn matches(&self, event_json: &str) -> Result<Vec<R>, EventError> {
        let mut out = Vec::new();
        with_scratch(|scratch| {
            self.automaton.run(event_json, scratch)?;
            out.extend(scratch.found.iter().filter_map(|&slot| {
                self.rules[slot as usize]
                    .as_ref()
                    .map(|(rule, _)| rule.clone())
            }));
            Ok(())
        })?;
        Ok(out)
    }
}

/// Per-thread buffers reused across matches, so a match allocates only its result.
#[derive(Default)]
struct Scratch {
    flat: Flat,
    membership: Vec<(u32, u32)>,
    deferred: Vec<u32>,
    targets: Vec<u32>,
    folded: String,
    state_seen: Vec<u32>,
    slot_seen: Vec<u32>,
    generation: u32,
    found: Vec<u32>,
    /// Per state: the last leaf loop that reached it without adding array positions.
    loop_seen: Vec<u32>,
    loops: u32,
}

impl Scratch {
    /// A fresh id for one loop over the leaves of a path.
    fn next_loop(&mut self) -> u32 {
        self.loops = self.loops.wrapping_add(1);
        if self.loops == 0 {
            self.loop_seen.iter_mut().for_each(|l| *l = 0);
            self.loops = 1;
        }
        self.loops
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn with_scratch<T>(f: impl FnOnce(&mut Scratch) -> T) -> T {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        // Only reachable if a match ever ran inside another on the same thread.
        Err(_) => f(&mut Scratch::default()),
    })
}

#[derive(Default)]
struct Automaton {
    trie: PathTrie,
    path_ids: FxHashMap<Box<str>, u32>,
    /// State 0 is the root.
    states: Vec<State>,
    fields: Vec<FieldMatcher>,
}

#[derive(Default)]
struct State {
    /// Rule slots whose sub-rules end here.
    terminal: Vec<u32>,
    /// (path, field matcher) for the value steps leaving this state.
    value: Vec<(u32, u32)>,
    /// (path, next state) for the `{"exists": false}` alternatives leaving this state.
    absent: Vec<(u32, u32)>,
    /// Where each step leads; used while adding rules.
    next: FxHashMap<(u32, Arc<FieldSpec>), u32>,
}

impl Automaton {
    fn path_id(&mut self, path: &str) -> u32 {
        if let Some(&id) = self.path_ids.get(path) {
            return id;
        }
        let id = self.path_ids.len() as u32;
        self.path_ids.insert(path.into(), id);
        self.trie.insert(path, id);
        id
    }

    fn add(&mut self, slot: u32, pattern: &Pattern) {
        if self.states.is_empty() {
            self.states.push(State::default());
        }
        let ids: Vec<u32> = pattern.paths.iter().map(|p| self.path_id(p)).collect();
        for fields in &pattern.subrules {
            let mut state = 0usize;
            // Pattern paths are sorted, so every sub-rule takes its steps in one global order.
            for (local, spec) in fields {
                let path = ids[*local as usize];
                let key = (path, Arc::clone(spec));
                if let Some(&next) = self.states[state].next.get(&key) {
                    state = next as usize;
                    continue;
                }
                let next = self.states.len() as u32;
                self.states.push(State::default());
                self.states[state].next.insert(key, next);
                if !spec.matchers.is_empty() {
                    let field = match self.states[state].value.iter().find(|(p, _)| *p == path) {
                        Some(&(_, field)) => field,
                        None => {
                            let field = self.fields.len() as u32;
                            self.fields.push(FieldMatcher::default());
                            self.states[state].value.push((path, field));
                            field
                        }
                    };
                    for matcher in &spec.matchers {
                        self.fields[field as usize].add(matcher, next);
                    }
                }
                if spec.absent {
                    self.states[state].absent.push((path, next));
                }
                state = next as usize;
            }
            if !self.states[state].terminal.contains(&slot) {
                self.states[state].terminal.push(slot);
            }
        }
    }

    fn run(&self, event: &str, scratch: &mut Scratch) -> Result<(), EventError> {
        scratch.found.clear();
        flatten(event, &self.trie, &mut scratch.flat)?;
        if self.states.is_empty() {
            return Ok(());
        }
        scratch.generation = scratch.generation.wrapping_add(1);
        if scratch.generation == 0 {
            scratch.state_seen.iter_mut().for_each(|g| *g = 0);
            scratch.slot_seen.iter_mut().for_each(|g| *g = 0);
            scratch.generation = 1;
        }
        if scratch.state_seen.len() < self.states.len() {
            scratch.state_seen.resize(self.states.len(), 0);
        }
        if scratch.loop_seen.len() < self.states.len() {
            scratch.loop_seen.resize(self.states.len(), 0);
        }
        scratch.membership.clear();
        scratch.deferred.clear();
        scratch.targets.clear();
        self.explore(0, event, scratch);
        scratch.found.sort_unstable();
        Ok(())
    }

    fn explore(&self, state: u32, event: &str, sc: &mut Scratch) {
        let st = &self.states[state as usize];
        if !st.terminal.is_empty() && absences_hold(&sc.flat, &sc.deferred, &sc.membership) {
            for &slot in &st.terminal {
                let slot_index = slot as usize;
                if sc.slot_seen.len() <= slot_index {
                    sc.slot_seen.resize(slot_index + 1, 0);
                }
                if sc.slot_seen[slot_index] != sc.generation {
                    sc.slot_seen[slot_index] = sc.generation;
                    sc.found.push(slot);
                }
            }
        }
        for &(path, field) in &st.value {
            let leaves = sc.flat.at(path);
            let this_loop = sc.next_loop();
            for i in leaves {
                let leaf = sc.flat.leaves[i];
                let Some(added) = join(&mut sc.membership, sc.flat.trail(&leaf)) else {
                    continue;
                };
                let base = sc.targets.len();
                {
                    let Scratch {
                        flat,
                        targets,
                        folded,
                        ..
                    } = sc;
                    let value = flat.scalar(&leaf, event);
                    self.fields[field as usize].eval(value, folded, targets);
                }
                let end = sc.targets.len();
                if end - base > 1 {
                    sc.targets[base..end].sort_unstable();
                }
                let mut previous = u32::MAX;
                for t in base..end {
                    let target = sc.targets[t];
                    if target == previous {
                        continue;
                    }
                    previous = target;
                    if sc.membership.is_empty() && sc.deferred.is_empty() {
                        // The same state under the same (empty) context was already explored.
                        let seen = &mut sc.state_seen[target as usize];
                        if *seen == sc.generation {
                            continue;
                        }
                        *seen = sc.generation;
                    } else if added == 0 {
                        // Another leaf of this loop that added no array positions already led
                        // here: the same state under the same context. Without this, fields
                        // in unrelated arrays would be searched as a product of their lengths.
                        let seen = &mut sc.loop_seen[target as usize];
                        if *seen == this_loop {
                            continue;
                        }
                        *seen = this_loop;
                    }
                    self.explore(target, event, sc);
                }
                sc.targets.truncate(base);
                let keep = sc.membership.len() - added;
                sc.membership.truncate(keep);
            }
        }
        for &(path, next) in &st.absent {
            sc.deferred.push(path);
            self.explore(next, event, sc);
            sc.deferred.pop();
        }
    }
}

const NO_CHECK: u32 = u32::MAX;

/// Where one byte-trie entry leads, with an optional wildcard to confirm first.
#[derive(Clone, Copy)]
struct Hit {
    target: u32,
    check: u32,
}

/// Prefixes (or suffixes) of many steps, by length: one hash table of all keys, probed once
/// per distinct key length that fits the value. Rules rarely use many distinct lengths, so a
/// value costs a few probes however many rules there are, and the table stays compact (a
/// byte trie chases a pointer per byte, which is what large rule sets make slow).
#[derive(Default)]
struct AffixIndex {
    /// Distinct key lengths, ascending.
    lengths: Vec<usize>,
    keys: KeyTable<Vec<Hit>>,
    /// The same entries while there are few: comparing a handful of short keys is cheaper
    /// than hashing the value once per length.
    few: Vec<(Box<[u8]>, Hit)>,
}

/// Up to this many entries, an affix index compares keys directly.
const FEW_AFFIXES: usize = 8;

impl AffixIndex {
    fn insert(&mut self, key: &[u8], hit: Hit) {
        if let Err(i) = self.lengths.binary_search(&key.len()) {
            self.lengths.insert(i, key.len());
        }
        self.keys.entry(key, Vec::new).push(hit);
        self.few.push((key.into(), hit));
    }

    /// Calls `f` with the hits of every key that is a prefix of `value` (`suffix`: a suffix).
    #[inline]
    fn walk(&self, value: &[u8], suffix: bool, mut f: impl FnMut(Hit)) {
        if self.few.len() <= FEW_AFFIXES {
            for (key, hit) in &self.few {
                let found = if suffix {
                    value.ends_with(key)
                } else {
                    value.starts_with(key)
                };
                if found {
                    f(*hit);
                }
            }
            return;
        }
        for &length in &self.lengths {
            if length > value.len() {
                return;
            }
            let key = if suffix {
                &value[value.len() - length..]
            } else {
                &value[..length]
            };
            if let Some(hits) = self.keys.get(key) {
                hits.iter().for_each(|&h| f(h));
            }
        }
    }
}

/// All value steps leaving one state on one path.
#[derive(Default)]
struct FieldMatcher {
    strings: KeyTable<Vec<u32>>,
    number_keys: FxHashMap<u64, Vec<u32>>,
    number_lexemes: FxHashMap<Box<str>, Vec<u32>>,
    trues: Vec<u32>,
    falses: Vec<u32>,
    nulls: Vec<u32>,
    any: Vec<u32>,
    prefixes: AffixIndex,
    suffixes: AffixIndex,
    folded: KeyTable<Vec<u32>>,
    folded_prefixes: AffixIndex,
    folded_suffixes: AffixIndex,
    /// Wildcards confirmed after a prefix or suffix hit.
    checks: Vec<Wildcard>,
    /// Wildcards with a star at both ends, tried on every string.
    wildcards: Vec<(Wildcard, u32)>,
    ranges: Vec<(NumRange, u32)>,
    addresses: FxHashMap<(bool, u128), Vec<u32>>,
    blocks: Vec<(IpRange, u32)>,
    buts: Vec<(AnythingBut, u32)>,
    wants_folded: bool,
    wants_ip: bool,
    wants_number: bool,
}

impl FieldMatcher {
    fn add(&mut self, matcher: &ValueMatcher, target: u32) {
        let no_check = Hit {
            target,
            check: NO_CHECK,
        };
        match matcher {
            ValueMatcher::Exact(Literal::Str(s)) => {
                self.strings.entry(s.as_bytes(), Vec::new).push(target);
            }
            ValueMatcher::Exact(Literal::Num(Number::Key(key))) => {
                self.wants_number = true;
                self.number_keys.entry(*key).or_default().push(target);
            }
            ValueMatcher::Exact(Literal::Num(Number::Lexeme(lexeme))) => {
                self.wants_number = true;
                self.number_lexemes
                    .entry(lexeme.clone())
                    .or_default()
                    .push(target);
            }
            ValueMatcher::Exact(Literal::True) => self.trues.push(target),
            ValueMatcher::Exact(Literal::False) => self.falses.push(target),
            ValueMatcher::Exact(Literal::Null) => self.nulls.push(target),
            ValueMatcher::Ip(range) | ValueMatcher::Cidr(range) => {
                self.wants_ip = true;
                if range.low == range.high {
                    self.addresses
                        .entry((range.v6, range.low))
                        .or_default()
                        .push(target);
                } else {
                    self.blocks.push((*range, target));
                }
            }
            ValueMatcher::Prefix(p) => self.prefixes.insert(p.as_bytes(), no_check),
            ValueMatcher::Suffix(s) => self.suffixes.insert(s.as_bytes(), no_check),
            ValueMatcher::EqualsIgnoreCase(s) => {
                self.wants_folded = true;
                self.folded.entry(s.as_bytes(), Vec::new).push(target);
            }
            ValueMatcher::PrefixIgnoreCase(p) => {
                self.wants_folded = true;
                self.folded_prefixes.insert(p.as_bytes(), no_check);
            }
            ValueMatcher::SuffixIgnoreCase(s) => {
                self.wants_folded = true;
                self.folded_suffixes.insert(s.as_bytes(), no_check);
            }
            ValueMatcher::Wildcard(w) => {
                if let Some(literal) = w.literal() {
                    // No star: an exact match.
                    self.strings.entry(literal, Vec::new).push(target);
                } else if let Some(prefix) = w.anchored_prefix() {
                    let check = self.checks.len() as u32;
                    self.checks.push(w.clone());
                    self.prefixes.insert(prefix, Hit { target, check });
                } else if let Some(suffix) = w.anchored_suffix() {
                    let check = self.checks.len() as u32;
                    self.checks.push(w.clone());
                    self.suffixes.insert(suffix, Hit { target, check });
                } else {
                    self.wildcards.push((w.clone(), target));
                }
            }
            ValueMatcher::Numeric(range) => {
                self.wants_number = true;
                match (range.low, range.high) {
                    (Some(low), Some(high)) if low == high => {
                        self.number_keys.entry(low.key).or_default().push(target);
                    }
                    _ => self.ranges.push((range.clone(), target)),
                }
            }
            ValueMatcher::AnythingBut(but) => self.buts.push((but.clone(), target)),
            ValueMatcher::Exists => self.any.push(target),
        }
    }

    /// Appends the targets of every step whose value list accepts `value` (maybe repeated).
    fn eval(&self, value: Scalar<'_>, folded: &mut String, out: &mut Vec<u32>) {
        match value {
            Scalar::Str(s) => {
                if let Some(targets) = self.strings.get(s.as_bytes()) {
                    out.extend_from_slice(targets);
                }
                let bytes = s.as_bytes();
                let checks = &self.checks;
                let mut confirm = |hit: Hit| {
                    if hit.check == NO_CHECK || checks[hit.check as usize].matches(bytes) {
                        out.push(hit.target);
                    }
                };
                self.prefixes.walk(bytes, false, &mut confirm);
                self.suffixes.walk(bytes, true, &mut confirm);
                for (w, target) in &self.wildcards {
                    if w.matches(bytes) {
                        out.push(*target);
                    }
                }
                if self.wants_folded {
                    folded.clear();
                    fold_case_into(s, folded);
                    if let Some(targets) = self.folded.get(folded.as_bytes()) {
                        out.extend_from_slice(targets);
                    }
                    let f = folded.as_bytes();
                    self.folded_prefixes.walk(f, false, |h| out.push(h.target));
                    self.folded_suffixes.walk(f, true, |h| out.push(h.target));
                }
                if self.wants_ip
                    && let Some(ip) = string_ip(value)
                {
                    if let Some(targets) = self.addresses.get(&(ip.v6, ip.bits)) {
                        out.extend_from_slice(targets);
                    }
                    for (range, target) in &self.blocks {
                        if range.contains(ip) {
                            out.push(*target);
                        }
                    }
                }
            }
            Scalar::Num(lexeme) => {
                if self.wants_number {
                    match number::key_of(lexeme) {
                        Some(key) => {
                            if let Some(targets) = self.number_keys.get(&key) {
                                out.extend_from_slice(targets);
                            }
                            for (range, target) in &self.ranges {
                                if range.contains(key) {
                                    out.push(*target);
                                }
                            }
                        }
                        None => {
                            if let Some(targets) = self.number_lexemes.get(lexeme) {
                                out.extend_from_slice(targets);
                            }
                        }
                    }
                }
            }
            Scalar::True => out.extend_from_slice(&self.trues),
            Scalar::False => out.extend_from_slice(&self.falses),
            Scalar::Null => out.extend_from_slice(&self.nulls),
        }
        out.extend_from_slice(&self.any);
        for (but, target) in &self.buts {
            if !excluded(but, value) {
                out.push(*target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both engines must give `expected`; returns nothing so each case reads as one line.
    fn check(pattern: &str, event: &str, expected: bool) {
        let p = Pattern::parse(pattern).expect(pattern);
        assert_eq!(
            p.matches(event).expect(event),
            expected,
            "Pattern {pattern} on {event}"
        );
        let mut m = Matcher::new();
        m.add((), &p);
        assert_eq!(
            !m.matches(event).expect(event).is_empty(),
            expected,
            "Matcher {pattern} on {event}"
        );
    }

    #[test]
    fn matcher_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Matcher<String>>();
        assert_send_sync::<Pattern>();
    }

    #[test]
    fn array_consistency() {
        let pattern = r#"{"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}}"#;
        check(
            pattern,
            r#"{"employees": [{"firstName": "Anna", "lastName": "Smith"}, {"firstName": "Peter", "lastName": "Jones"}]}"#,
            false,
        );
        check(
            pattern,
            r#"{"employees": [{"firstName": "Peter", "lastName": "Smith"}, {"firstName": "Anna", "lastName": "Jones"}]}"#,
            true,
        );
        // Nested arrays: the inner elements must agree too.
        check(
            pattern,
            r#"{"employees": [[{"firstName": "Anna"}, {"lastName": "Jones"}]]}"#,
            false,
        );
        // Scalars in an array are alternatives for one field, never in conflict.
        check(
            r#"{"a": [1], "b": ["x"]}"#,
            r#"{"a": [3, 1], "b": ["y", "x"]}"#,
            true,
        );
        // Fields in different arrays combine freely.
        check(
            r#"{"a": {"x": [1]}, "b": {"y": [2]}}"#,
            r#"{"a": [{"x": 0}, {"x": 1}], "b": [{"y": 2}, {"y": 0}]}"#,
            true,
        );
    }

    #[test]
    fn exists_false_is_judged_against_the_whole_match() {
        // The element holding "x" has no "b": a match, whichever name sorts first.
        for (absent, present) in [("b", "c"), ("b", "a")] {
            let pattern =
                format!(r#"{{"d": {{"{absent}": [{{"exists": false}}], "{present}": ["x"]}}}}"#);
            let event =
                format!(r#"{{"d": [{{"{absent}": 1, "{present}": "y"}}, {{"{present}": "x"}}]}}"#);
            check(&pattern, &event, true);
            let event = format!(r#"{{"d": [{{"{absent}": 1, "{present}": "x"}}]}}"#);
            check(&pattern, &event, false);
        }
        check(r#"{"a": [{"exists": false}]}"#, r#"{"a": {"b": 1}}"#, true);
        check(r#"{"a": [{"exists": false}]}"#, r#"{"a": []}"#, true);
        check(r#"{"a": [{"exists": false}]}"#, r#"{"a": null}"#, false);
        check(r#"{"a": [{"exists": true}]}"#, r#"{"a": {"b": 1}}"#, false);
        check(r#"{"a": [{"exists": true}]}"#, r#"{"a": null}"#, true);
        check(
            r#"{"tier": [{"anything-but": ["gold"]}, {"exists": false}]}"#,
            r#"{"other": 1}"#,
            true,
        );
    }

    #[test]
    fn dotted_names_in_both_directions() {
        check(
            r#"{"detail": {"state": {"status": ["running"]}}}"#,
            r#"{"detail": {"state.status": "running"}}"#,
            true,
        );
        check(
            r#"{"detail": {"state.status": ["running"]}}"#,
            r#"{"detail": {"state": {"status": "running"}}}"#,
            true,
        );
        check(r#"{"a.b": [1]}"#, r#"{"a": [{"b": 2}, {"b": 1}]}"#, true);
    }

    #[test]
    fn values_by_type() {
        check(r#"{"n": [300]}"#, r#"{"n": 3.0e2}"#, true);
        check(r#"{"n": [300]}"#, r#"{"n": "300"}"#, false);
        check(
            r#"{"n": [{"numeric": ["=", 3.018e2]}]}"#,
            r#"{"n": 301.8}"#,
            true,
        );
        check(r#"{"s": [{"prefix": "3"}]}"#, r#"{"s": 300}"#, false);
        check(
            r#"{"s": [{"anything-but": "x"}]}"#,
            r#"{"s": ["x", "y"]}"#,
            true,
        );
        check(
            r#"{"s": [{"anything-but": "x"}]}"#,
            r#"{"s": ["x"]}"#,
            false,
        );
        check(r#"{"s": [{"anything-but": "x"}]}"#, r#"{"t": "y"}"#, false);
        check(r#"{"s": [null]}"#, r#"{"s": null}"#, true);
        check(r#"{"s": [""]}"#, r#"{"s": null}"#, false);
        check(r#"{"ip": ["10.0.0.1"]}"#, r#"{"ip": "010.0.0.1"}"#, true);
        check(
            r#"{"s": [{"wildcard": "a\\*b*"}]}"#,
            r#"{"s": "a*bc"}"#,
            true,
        );
        check(
            r#"{"s": [{"wildcard": "a\\*b*"}]}"#,
            r#"{"s": "axbc"}"#,
            false,
        );
        check(r#"{"s": [{"wildcard": ""}]}"#, r#"{"s": "x"}"#, false);
        check(
            r#"{"s": [{"suffix": {"equals-ignore-case": ".PNG"}}]}"#,
            r#"{"s": "a.png"}"#,
            true,
        );
    }

    #[test]
    fn rules_are_replaced_removed_and_reported_in_order() {
        let p = |t: &str| Pattern::parse(t).expect(t);
        let mut m = Matcher::new();
        m.add("r1", &p(r#"{"a": ["x"]}"#));
        m.add("r2", &p(r#"{"a": [{"prefix": "x"}]}"#));
        m.add("r3", &p(r#"{"b": ["x"]}"#));
        assert_eq!(
            m.matches(r#"{"a": "x", "b": "x"}"#).expect("valid"),
            ["r1", "r2", "r3"]
        );
        m.add("r1", &p(r#"{"a": ["y"]}"#));
        assert_eq!(
            m.matches(r#"{"a": "x", "b": "x"}"#).expect("valid"),
            ["r2", "r3"]
        );
        assert!(m.remove(&"r2"));
        assert!(!m.remove(&"r2"));
        assert_eq!(
            m.matches(r#"{"a": "y", "b": "x"}"#).expect("valid"),
            ["r3", "r1"]
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m.pattern(&"r3").map(Pattern::text), Some(r#"{"b": ["x"]}"#));
        assert!(m.matches("[]").is_err());
    }

    #[test]
    fn affix_index_small_and_large_agree_with_the_definition() {
        for count in [3usize, 40] {
            let keys: Vec<String> = (0..count).map(|i| format!("{}", i * 7)).collect();
            let mut index = AffixIndex::default();
            for (i, k) in keys.iter().enumerate() {
                let hit = Hit {
                    target: i as u32,
                    check: NO_CHECK,
                };
                index.insert(k.as_bytes(), hit);
            }
            index.insert(
                b"",
                Hit {
                    target: 999,
                    check: NO_CHECK,
                },
            );
            for value in ["", "7", "70", "147", "2107", "14x", "x14"] {
                for suffix in [false, true] {
                    let mut got = Vec::new();
                    index.walk(value.as_bytes(), suffix, |h| got.push(h.target));
                    got.sort_unstable();
                    let mut expected: Vec<u32> = keys
                        .iter()
                        .enumerate()
                        .filter(|(_, k)| {
                            if suffix {
                                value.ends_with(k.as_str())
                            } else {
                                value.starts_with(k.as_str())
                            }
                        })
                        .map(|(i, _)| i as u32)
                        .collect();
                    expected.push(999);
                    assert_eq!(got, expected, "{count} keys, {value:?}, suffix {suffix}");
                }
            }
        }
    }

    #[test]
    fn or_branches_share_the_rule() {
        check(
            r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"], "$or": [{"id": [1]}, {"sp": [2]}]}]}"#,
            r#"{"source": "aws.cloudwatch", "namespace": "AWS/EC2", "sp": 2}"#,
            true,
        );
        check(
            r#"{"source": ["aws.cloudwatch"], "$or": [{"metricName": ["CPUUtilization"]}, {"namespace": ["AWS/EC2"]}]}"#,
            r#"{"source": "aws.cloudwatch", "metricName": "x"}"#,
            false,
        );
    }
}

#[cfg(test)]
mod search_bounds {
    use super::*;

    /// Fields matched in unrelated arrays, and a last field that fails: without pruning this
    /// is a search over the product of the array lengths (300^3 here).
    #[test]
    fn unrelated_arrays_do_not_multiply_the_search() {
        let items = |name: &str| {
            let list: Vec<String> = (0..300).map(|i| format!(r#"{{"{name}": {i}}}"#)).collect();
            list.join(",")
        };
        let event = format!(
            r#"{{"a": [{}], "b": [{}], "c": [{}], "d": "no"}}"#,
            items("x"),
            items("y"),
            items("z")
        );
        let pattern = Pattern::parse(
            r#"{"a": {"x": [{"numeric": [">=", 0]}]}, "b": {"y": [{"numeric": [">=", 0]}]}, "c": {"z": [{"numeric": [">=", 0]}]}, "d": ["yes"]}"#,
        )
        .expect("valid");
        assert!(!pattern.matches(&event).expect("valid"));
        let mut m = Matcher::new();
        m.add(1, &pattern);
        assert!(m.matches(&event).expect("valid").is_empty());
        // Pruning is per next state: leaves that add nothing but lead to different states are
        // all followed (rules sharing the deferred `c` step, then splitting on `d`).
        let mut m = Matcher::new();
        let p = |t: &str| Pattern::parse(t).expect(t);
        m.add("x", &p(r#"{"c": [{"exists": false}], "d": ["x"]}"#));
        m.add("y", &p(r#"{"c": [{"exists": false}], "d": ["y"]}"#));
        assert_eq!(
            m.matches(r#"{"d": ["x", "y"]}"#).expect("valid"),
            ["x", "y"]
        );
        // Consistency inside one array still holds.
        let shared = Pattern::parse(r#"{"a": {"x": [299], "y": [0]}}"#).expect("valid");
        let event = format!(r#"{{"a": [{}, {}]}}"#, items("x"), items("y"));
        assert!(!shared.matches(&event).expect("valid"));
        let event = r#"{"a": [{"x": 299, "y": 1}, {"x": 1, "y": 0}, {"x": 299, "y": 0}]}"#;
        assert!(shared.matches(event).expect("valid"));
    }
}
