//! [`Pattern`]: one validated pattern, and the reference evaluation of it.

use std::fmt;
use std::sync::Arc;

use super::compile::{self, FieldSpec};
use super::flatten::{Flat, PathTrie, flatten};
use super::{EventError, PatternError};

/// One validated event pattern.
///
/// Parsing checks everything EventBridge checks, with EventBridge's reasons (see
/// [`PatternError`]). [`Pattern::matches`] evaluates the pattern on its own, by a direct
/// search; to match an event against many patterns at once, add them to a
/// [`Matcher`](super::Matcher).
#[derive(Clone)]
pub struct Pattern {
    pub(crate) text: Arc<str>,
    /// The branches after `$or` expansion; each lists its fields sorted by path.
    pub(crate) subrules: Vec<Vec<(u32, Arc<FieldSpec>)>>,
    /// Path strings by id; ids are in sorted path order.
    pub(crate) paths: Vec<Box<str>>,
    trie: PathTrie,
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Pattern").field(&self.text).finish()
    }
}

impl Pattern {
    /// Parses and validates pattern text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let rules = compile::compile(text).map_err(PatternError::new)?;
        let mut paths: Vec<Box<str>> = rules
            .iter()
            .flat_map(|rule| rule.iter().map(|(path, _)| path.clone()))
            .collect();
        paths.sort_unstable();
        paths.dedup();
        let id = |path: &str| {
            paths
                .binary_search_by(|p| (**p).cmp(path))
                .expect("every path was collected") as u32
        };
        let subrules = rules
            .iter()
            .map(|rule| {
                let mut fields: Vec<(u32, Arc<FieldSpec>)> = rule
                    .iter()
                    .map(|(path, spec)| (id(path), Arc::clone(spec)))
                    .collect();
                fields.sort_unstable_by_key(|(path, _)| *path);
                fields
            })
            .collect();
        let mut trie = PathTrie::default();
        for (i, path) in paths.iter().enumerate() {
            trie.insert(path, i as u32);
        }
        Ok(Pattern {
            text: text.into(),
            subrules,
            paths,
            trie,
        })
    }

    /// The text the pattern was parsed from.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the event (JSON text of an object) matches.
    pub fn matches(&self, event_json: &str) -> Result<bool, EventError> {
        let mut flat = Flat::default();
        flatten(event_json, &self.trie, &mut flat)?;
        let mut search = Search {
            flat: &flat,
            event: event_json,
            membership: Vec::new(),
            deferred: Vec::new(),
        };
        Ok(self.subrules.iter().any(|fields| search.satisfy(fields)))
    }
}

/// Backtracking over the choice of one leaf per field: the plainest statement of the
/// semantics, kept as the oracle the compiled matcher is tested against.
struct Search<'a> {
    flat: &'a Flat,
    event: &'a str,
    /// (array, index) pairs the chosen leaves sit in.
    membership: Vec<(u32, u32)>,
    /// Fields taken as absent, to be checked against the final choice.
    deferred: Vec<u32>,
}

impl Search<'_> {
    fn satisfy(&mut self, fields: &[(u32, Arc<FieldSpec>)]) -> bool {
        let Some(((path, spec), rest)) = fields.split_first() else {
            return absences_hold(self.flat, &self.deferred, &self.membership);
        };
        if !spec.matchers.is_empty() {
            // Leaves that add the same array positions leave the same problem for the rest.
            let mut tried: Vec<Vec<(u32, u32)>> = Vec::new();
            for i in self.flat.at(*path) {
                let leaf = &self.flat.leaves[i];
                let Some(added) = join(&mut self.membership, self.flat.trail(leaf)) else {
                    continue;
                };
                let keep = self.membership.len() - added;
                let value = self.flat.scalar(leaf, self.event);
                if spec.matchers.iter().any(|m| m.matches(value)) {
                    let pairs = self.membership[keep..].to_vec();
                    if !tried.contains(&pairs) {
                        if self.satisfy(rest) {
                            return true;
                        }
                        tried.push(pairs);
                    }
                }
                self.membership.truncate(keep);
            }
        }
        if spec.absent {
            self.deferred.push(*path);
            let found = self.satisfy(rest);
            self.deferred.pop();
            if found {
                return true;
            }
        }
        false
    }
}

/// Adds a leaf's trail to the membership if consistent; returns how many pairs were added.
pub(crate) fn join(membership: &mut Vec<(u32, u32)>, trail: &[(u32, u32)]) -> Option<usize> {
    for &(array, index) in trail {
        if membership.iter().any(|&(a, i)| a == array && i != index) {
            return None;
        }
    }
    let before = membership.len();
    for &(array, index) in trail {
        if !membership[..before].iter().any(|&(a, _)| a == array) {
            membership.push((array, index));
        }
    }
    Some(membership.len() - before)
}

/// Whether no leaf of any deferred path is consistent with the membership.
pub(crate) fn absences_hold(flat: &Flat, deferred: &[u32], membership: &[(u32, u32)]) -> bool {
    deferred.iter().all(|&path| {
        flat.at(path).all(|i| {
            let trail = flat.trail(&flat.leaves[i]);
            trail
                .iter()
                .any(|&(array, index)| membership.iter().any(|&(a, i)| a == array && i != index))
        })
    })
}
