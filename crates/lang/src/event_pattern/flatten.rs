//! Event text to leaves: `(path, value, array trail)` for every value a rule can look at.
//!
//! A hand-written single-pass parser over the event bytes (quamina's approach) instead of a
//! general JSON parser, for two reasons: numbers must reach the matcher as their lexemes
//! (serde_json without `arbitrary_precision` rounds them, and that feature would change
//! serde_json for the whole workspace), and most of a typical event is irrelevant to the rules,
//! so members whose path no rule names are skipped by a bracket-counting scan instead of being
//! parsed. The paths rules name form a [`PathTrie`] that is walked alongside the event.
//!
//! Values the matcher reads are validated strictly; skipped members are only checked for
//! structure (terminated strings, balanced brackets), not for the grammar of their numbers
//! and literals or for each bracket closing one of its own kind. Events are validated as JSON when they are accepted
//! (PutEvents), so this trades nothing real for speed.
//!
//! Paths are the member names joined with `.` (arrays add nothing), which is how EventBridge
//! makes `{"a": {"b": 1}}` and `{"a.b": 1}` the same field for `{"a": {"b": [1]}}` and for
//! `{"a.b": [1]}`. Each leaf carries its array trail: for every enclosing array whose element
//! is an object or array on the way down, the array's number and the element's index. Two
//! leaves may serve the same match only if their trails agree on every array they share.

use super::hash::FxHashMap;
use super::json::{MAX_DEPTH, unescape_into};
use super::number::is_json_number;
use super::value::Scalar;
use crate::event_pattern::EventError;

pub(crate) const NO_PATH: u32 = u32::MAX;

/// The field paths rules name, as a trie over member names. A node stands for a dotted prefix
/// of some path; its children are keyed by member name, and a member name may itself contain
/// dots (`{"a.b": …}` steps from the root straight to the node for `a.b`).
#[derive(Clone, Debug)]
pub(crate) struct PathTrie {
    nodes: Vec<PathNode>,
    by_prefix: FxHashMap<Box<str>, u32>,
}

#[derive(Clone, Debug, Default)]
struct PathNode {
    leaf: u32,
    children: Children,
}

/// A node's children. Rules usually name a handful of members per object, and comparing a
/// few short names beats hashing every member name the event has.
#[derive(Clone, Debug)]
enum Children {
    /// (first bytes of the name, name, node): the packed head rejects most names unread.
    Few(Vec<(u64, Box<str>, u32)>),
    Many(FxHashMap<Box<str>, u32>),
}

/// Up to the first 8 bytes of `name`, packed (zero-padded).
#[inline]
fn head(name: &str) -> u64 {
    let bytes = name.as_bytes();
    let n = bytes.len().min(8);
    let mut word = [0u8; 8];
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

const FEW: usize = 8;

impl Default for Children {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

impl Children {
    fn is_empty(&self) -> bool {
        match self {
            Children::Few(list) => list.is_empty(),
            Children::Many(map) => map.is_empty(),
        }
    }

    #[inline]
    fn get(&self, key: &str) -> Option<u32> {
        match self {
            Children::Few(list) => {
                let key_head = head(key);
                list.iter()
                    .find(|(h, name, _)| {
                        *h == key_head && name.len() == key.len() && **name == *key
                    })
                    .map(|&(_, _, node)| node)
            }
            Children::Many(map) => map.get(key).copied(),
        }
    }

    fn insert_if_absent(&mut self, key: String, node: u32) {
        if self.get(&key).is_some() {
            return;
        }
        match self {
            Children::Few(list) if list.len() < FEW => list.push((head(&key), key.into(), node)),
            Children::Few(list) => {
                let mut map: FxHashMap<Box<str>, u32> =
                    list.drain(..).map(|(_, name, node)| (name, node)).collect();
                map.insert(key.into(), node);
                *self = Children::Many(map);
            }
            Children::Many(map) => {
                map.insert(key.into(), node);
            }
        }
    }
}

const ROOT: u32 = 0;

impl Default for PathTrie {
    fn default() -> Self {
        PathTrie {
            nodes: vec![PathNode {
                leaf: NO_PATH,
                children: Children::default(),
            }],
            by_prefix: FxHashMap::default(),
        }
    }
}

impl PathTrie {
    /// Adds `path` with the id leaves at it get.
    pub(crate) fn insert(&mut self, path: &str, id: u32) {
        let segments: Vec<&str> = path.split('.').collect();
        // nodes[j] is the node for the first j segments (0 is the root).
        let mut prefix_nodes = vec![ROOT];
        for j in 1..=segments.len() {
            let prefix = segments[..j].join(".");
            let node = match self.by_prefix.get(prefix.as_str()) {
                Some(&node) => node,
                None => {
                    let node = self.nodes.len() as u32;
                    self.nodes.push(PathNode {
                        leaf: NO_PATH,
                        children: Children::default(),
                    });
                    self.by_prefix.insert(prefix.into(), node);
                    node
                }
            };
            prefix_nodes.push(node);
        }
        for i in 0..segments.len() {
            for j in i + 1..=segments.len() {
                let key = segments[i..j].join(".");
                self.nodes[prefix_nodes[i] as usize]
                    .children
                    .insert_if_absent(key, prefix_nodes[j]);
            }
        }
        self.nodes[prefix_nodes[segments.len()] as usize].leaf = id;
    }

    #[inline]
    fn child(&self, node: u32, key: &str) -> Option<u32> {
        self.nodes[node as usize].children.get(key)
    }

    #[inline]
    fn leaf(&self, node: u32) -> u32 {
        self.nodes[node as usize].leaf
    }

    #[inline]
    fn has_children(&self, node: u32) -> bool {
        !self.nodes[node as usize].children.is_empty()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string without escapes: `start..end` of the event text.
    Str,
    /// A string that had escapes: `start..end` of [`Flat::text`].
    Unescaped,
    Num,
    True,
    False,
    Null,
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Leaf {
    pub(crate) path: u32,
    pub(crate) kind: Kind,
    start: u32,
    end: u32,
    trail_start: u32,
    trail_len: u32,
}

/// A flattened event: leaves sorted by path, with their trails. Reused between events.
#[derive(Default, Debug)]
pub(crate) struct Flat {
    pub(crate) leaves: Vec<Leaf>,
    trails: Vec<(u32, u32)>,
    text: String,
    current_trail: Vec<(u32, u32)>,
    /// Per array: the one path whose leaves it holds, or a mark for several.
    array_paths: Vec<u32>,
    spare_trails: Vec<(u32, u32)>,
    key: String,
    arrays: u32,
}

impl Flat {
    pub(crate) fn scalar<'a>(&'a self, leaf: &Leaf, event: &'a str) -> Scalar<'a> {
        let range = leaf.start as usize..leaf.end as usize;
        match leaf.kind {
            Kind::Str => Scalar::Str(&event[range]),
            Kind::Unescaped => Scalar::Str(&self.text[range]),
            Kind::Num => Scalar::Num(&event[range]),
            Kind::True => Scalar::True,
            Kind::False => Scalar::False,
            Kind::Null => Scalar::Null,
        }
    }

    pub(crate) fn trail(&self, leaf: &Leaf) -> &[(u32, u32)] {
        let start = leaf.trail_start as usize;
        &self.trails[start..start + leaf.trail_len as usize]
    }

    /// The leaves at `path` (leaves are sorted by path).
    pub(crate) fn at(&self, path: u32) -> std::ops::Range<usize> {
        let start = self.leaves.partition_point(|l| l.path < path);
        let end = start + self.leaves[start..].partition_point(|l| l.path == path);
        start..end
    }

    /// Removes from the trails every array whose elements hold leaves of one path only. A
    /// sub-rule takes each path once, so such an array can never make two leaves
    /// inconsistent; dropping it keeps the match search from telling apart choices that are
    /// really the same (three fields in three unrelated arrays are one choice each, not the
    /// product of the array lengths).
    fn keep_shared_arrays(&mut self) {
        const NONE: u32 = u32::MAX;
        const SHARED: u32 = u32::MAX - 1;
        self.array_paths.clear();
        self.array_paths.resize(self.arrays as usize, NONE);
        for leaf in &self.leaves {
            let start = leaf.trail_start as usize;
            for &(array, _) in &self.trails[start..start + leaf.trail_len as usize] {
                let seen = &mut self.array_paths[array as usize];
                if *seen == NONE {
                    *seen = leaf.path;
                } else if *seen != leaf.path {
                    *seen = SHARED;
                }
            }
        }
        // Leaves are sorted by path now, not in trail order, so compact into a second buffer.
        let mut kept = std::mem::take(&mut self.spare_trails);
        kept.clear();
        for leaf in &mut self.leaves {
            let start = leaf.trail_start as usize;
            let new_start = kept.len();
            for &pair in &self.trails[start..start + leaf.trail_len as usize] {
                if self.array_paths[pair.0 as usize] == SHARED {
                    kept.push(pair);
                }
            }
            leaf.trail_start = new_start as u32;
            leaf.trail_len = (kept.len() - new_start) as u32;
        }
        self.spare_trails = std::mem::replace(&mut self.trails, kept);
    }

    fn clear(&mut self) {
        self.leaves.clear();
        self.trails.clear();
        self.text.clear();
        self.current_trail.clear();
        self.arrays = 0;
    }
}

/// Flattens `event` (a JSON object) into `flat`, keeping only leaves at paths of `trie`.
pub(crate) fn flatten(event: &str, trie: &PathTrie, flat: &mut Flat) -> Result<(), EventError> {
    flat.clear();
    if event.len() >= u32::MAX as usize {
        return Err(EventError::new("event too large", 0));
    }
    let mut parser = Parser {
        text: event,
        b: event.as_bytes(),
        pos: 0,
        trie,
        flat,
    };
    parser.skip_ws();
    if parser.peek() != Some(b'{') {
        return Err(EventError::new(
            "an event must be a JSON object",
            parser.pos,
        ));
    }
    if trie.has_children(ROOT) {
        parser.object(ROOT, 1)?;
    } else {
        parser.skip_value(0)?;
    }
    parser.skip_ws();
    if parser.pos != parser.b.len() {
        return Err(parser.error("unexpected content after the event"));
    }
    parser.flat.leaves.sort_by_key(|l| l.path);
    if !parser.flat.trails.is_empty() {
        parser.flat.keep_shared_arrays();
    }
    Ok(())
}

/// Skipping scans eight bytes at a time (SWAR): the skipped part of an event is most of its
/// bytes, and portable SIMD is not available on stable Rust without `unsafe`.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit set in each byte of `word` equal to `byte`; exact for the lowest such byte
/// (the borrow can only set false bits above a true one, and callers use the lowest).
#[inline(always)]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGHS
}

#[inline(always)]
fn word_at(b: &[u8], i: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(word)
}

/// The first position at or after `i` holding a quote or a backslash, or `b.len()`.
#[inline]
fn next_quote_or_backslash(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() {
        let word = word_at(b, i);
        let hits = bytes_equal(word, b'"') | bytes_equal(word, b'\\');
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' {
        i += 1;
    }
    i
}

/// The first position at or after `i` holding a byte that ends a plain run of string
/// content (a quote, a backslash or a control character), or `b.len()`.
#[inline]
fn next_string_special(b: &[u8], mut i: usize) -> usize {
    while i + 8 <= b.len() {
        let word = word_at(b, i);
        let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
        let hits = bytes_equal(word, b'"') | bytes_equal(word, b'\\') | control;
        if hits != 0 {
            return i + (hits.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < b.len() && b[i] != b'"' && b[i] != b'\\' && b[i] >= 0x20 {
        i += 1;
    }
    i
}

struct Parser<'e, 'f> {
    text: &'e str,
    b: &'e [u8],
    pos: usize,
    trie: &'f PathTrie,
    flat: &'f mut Flat,
}

impl Parser<'_, '_> {
    fn error(&self, what: &str) -> EventError {
        EventError::new(what, self.pos)
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8, what: &str) -> Result<(), EventError> {
        self.skip_ws();
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    /// An object at `pos` (its `{`) whose path is `node`.
    fn object(&mut self, node: u32, depth: usize) -> Result<(), EventError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a member name"));
            }
            let child = self.member_name(node)?;
            self.expect(b':', "expected ':'")?;
            self.skip_ws();
            match child {
                Some(child) => self.value(child, depth)?,
                None => self.skip_value(depth)?,
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    /// Reads a member name at `pos` (its quote) and looks it up under `node`.
    fn member_name(&mut self, node: u32) -> Result<Option<u32>, EventError> {
        let start = self.pos + 1;
        let i = next_string_special(self.b, start);
        match self.b.get(i) {
            Some(b'"') => {
                self.pos = i + 1;
                Ok(self.trie.child(node, &self.text[start..i]))
            }
            Some(b'\\') => {
                let mut key = std::mem::take(&mut self.flat.key);
                key.clear();
                key.push_str(&self.text[start..i]);
                let end = unescape_into(self.text, i, &mut key).map_err(|at| {
                    self.pos = at;
                    self.error("invalid member name")
                })?;
                self.pos = end;
                let child = self.trie.child(node, &key);
                self.flat.key = key;
                Ok(child)
            }
            _ => {
                self.pos = i;
                Err(self.error("invalid member name"))
            }
        }
    }

    /// A value at `pos` whose path is `node`.
    fn value(&mut self, node: u32, depth: usize) -> Result<(), EventError> {
        match self.peek() {
            Some(b'{') => {
                if self.trie.has_children(node) {
                    self.object(node, depth + 1)
                } else {
                    self.skip_value(depth)
                }
            }
            Some(b'[') => self.array(node, depth + 1),
            Some(_) => {
                let path = self.trie.leaf(node);
                if path == NO_PATH {
                    self.skip_value(depth)
                } else {
                    self.scalar(path)
                }
            }
            None => Err(self.error("unexpected end of the event")),
        }
    }

    fn array(&mut self, node: u32, depth: usize) -> Result<(), EventError> {
        if depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let id = self.flat.arrays;
        self.flat.arrays += 1;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        let mut index = 0u32;
        loop {
            self.skip_ws();
            if let Some(b'{' | b'[') = self.peek() {
                self.flat.current_trail.push((id, index));
                self.value(node, depth)?;
                self.flat.current_trail.pop();
            } else {
                self.value(node, depth)?;
            }
            index += 1;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A scalar at `pos`, recorded as a leaf at `path`.
    fn scalar(&mut self, path: u32) -> Result<(), EventError> {
        let start = self.pos;
        let (kind, from, to) = match self.b[start] {
            b'"' => {
                let content = start + 1;
                let i = next_string_special(self.b, content);
                match self.b.get(i) {
                    Some(b'"') => {
                        self.pos = i + 1;
                        (Kind::Str, content, i)
                    }
                    Some(b'\\') => {
                        let text_start = self.flat.text.len();
                        self.flat.text.push_str(&self.text[content..i]);
                        let end =
                            unescape_into(self.text, i, &mut self.flat.text).map_err(|at| {
                                self.pos = at;
                                self.error("invalid string")
                            })?;
                        self.pos = end;
                        (Kind::Unescaped, text_start, self.flat.text.len())
                    }
                    _ => {
                        self.pos = i;
                        return Err(self.error("invalid string"));
                    }
                }
            }
            b'-' | b'0'..=b'9' => {
                let mut i = start;
                while i < self.b.len()
                    && matches!(self.b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                if !is_json_number(&self.text[start..i]) {
                    return Err(self.error("invalid number"));
                }
                self.pos = i;
                (Kind::Num, start, i)
            }
            b't' => self.literal(b"true", Kind::True)?,
            b'f' => self.literal(b"false", Kind::False)?,
            b'n' => self.literal(b"null", Kind::Null)?,
            _ => return Err(self.error("unexpected character")),
        };
        if let Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_') = self.peek() {
            return Err(self.error("unexpected character"));
        }
        let trail_start = self.flat.trails.len() as u32;
        self.flat.trails.extend_from_slice(&self.flat.current_trail);
        self.flat.leaves.push(Leaf {
            path,
            kind,
            start: from as u32,
            end: to as u32,
            trail_start,
            trail_len: self.flat.current_trail.len() as u32,
        });
        Ok(())
    }

    fn literal(&mut self, word: &[u8], kind: Kind) -> Result<(Kind, usize, usize), EventError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok((kind, 0, 0))
        } else {
            Err(self.error("unrecognized literal"))
        }
    }

    /// Skips the value at `pos`, checking only its structure.
    fn skip_value(&mut self, depth: usize) -> Result<(), EventError> {
        match self.peek() {
            Some(b'"') => self.skip_string(),
            Some(b'{' | b'[') => self.skip_container(depth),
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.pos += 1;
                }
                Ok(())
            }
            Some(_) => Err(self.error("unexpected character")),
            None => Err(self.error("unexpected end of the event")),
        }
    }

    /// Skips a string at `pos` (its opening quote).
    #[inline]
    fn skip_string(&mut self) -> Result<(), EventError> {
        let b = self.b;
        let mut i = self.pos + 1;
        loop {
            i = next_quote_or_backslash(b, i);
            match b.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(());
                }
                Some(_) => i += 2,
                None => {
                    self.pos = b.len();
                    return Err(self.error("unterminated string"));
                }
            }
        }
    }

    /// Skips an object or array at `pos`, counting brackets outside strings.
    fn skip_container(&mut self, depth: usize) -> Result<(), EventError> {
        match skip_block(self.b, self.pos, MAX_DEPTH.saturating_sub(depth)) {
            Ok(end) => {
                self.pos = end;
                Ok(())
            }
            Err((at, what)) => {
                self.pos = at;
                Err(self.error(what))
            }
        }
    }
}

/// The bit of each byte of an 8-byte word whose high bit is set in `high_bits`, packed into
/// the low 8 bits (the byte at the lowest address in bit 0).
#[inline(always)]
fn pack(high_bits: u64) -> u64 {
    ((high_bits >> 7).wrapping_mul(0x0102_0408_1020_4080)) >> 56
}

/// Bitmasks of one 64-byte block: quotes, opening brackets, closing brackets, and whether it
/// holds any backslash (or `|`, which shares its test and only costs a slower scan).
#[inline(always)]
fn classify(block: &[u8; 64]) -> (u64, u64, u64, bool) {
    let (mut quotes, mut opens, mut closes, mut backslash) = (0u64, 0u64, 0u64, 0u64);
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(bytes);
        // With bit 5 set, `[ \ ] { | }` are the ASCII bytes 0x7B..=0x7D; bits 0 and 1 then
        // tell them apart (11 opens, 01 closes, 00 is a backslash or `|`).
        let low7 = (word | (ONES * 0x20)) & (ONES * 0x7f);
        let at_least_7b = low7 + ONES * 0x05;
        let at_least_7e = low7 + ONES * 0x02;
        let special = at_least_7b & !at_least_7e & !word & HIGHS;
        let bit0 = word << 7;
        let bit1 = word << 6;
        quotes |= pack(bytes_equal(word, b'"')) << (8 * k);
        opens |= pack(special & bit0 & bit1) << (8 * k);
        closes |= pack(special & bit0 & !bit1) << (8 * k);
        backslash |= special & !bit0;
    }
    (quotes, opens, closes, backslash != 0)
}

/// Bit k set when an odd number of bits at or below k are set in `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// The scan state carried from block to block.
struct Scan {
    depth: u64,
    in_string: bool,
    escaped: bool,
    max_depth: u64,
}

/// What one block did to the scan.
enum Step {
    /// The container closed at this offset in the block.
    Closed(usize),
    Continue,
    TooDeep(usize),
}

impl Scan {
    /// Scans one block by masks; `None` if it holds a backslash (scan it byte by byte).
    #[inline(always)]
    fn block(&mut self, block: &[u8; 64]) -> Option<Step> {
        let (quotes, opens, closes, backslash) = classify(block);
        if backslash {
            return None;
        }
        let mut strings = prefix_xor(quotes);
        if self.in_string {
            strings = !strings;
        }
        self.in_string = strings >> 63 == 1;
        let opens = opens & !strings;
        let closes = closes & !strings;
        let closing = u64::from(closes.count_ones());
        if closing < self.depth {
            // The depth cannot reach zero in this block.
            self.depth = self.depth + u64::from(opens.count_ones()) - closing;
            if self.depth > self.max_depth {
                return Some(Step::TooDeep(0));
            }
            return Some(Step::Continue);
        }
        let mut brackets = opens | closes;
        while brackets != 0 {
            let bit = brackets.trailing_zeros() as usize;
            let open = (opens >> bit) & 1;
            self.depth = self.depth + 2 * open - 1;
            if self.depth == 0 {
                return Some(Step::Closed(bit));
            }
            if self.depth > self.max_depth {
                return Some(Step::TooDeep(bit));
            }
            brackets &= brackets - 1;
        }
        Some(Step::Continue)
    }

    /// Scans bytes one by one; `Some(offset)` where the container closed.
    fn bytes(&mut self, bytes: &[u8]) -> Result<Option<usize>, (usize, &'static str)> {
        for (offset, &byte) in bytes.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    self.depth += 1;
                    if self.depth > self.max_depth {
                        return Err((offset, "nesting too deep"));
                    }
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err((offset, "unbalanced brackets"));
                    }
                    self.depth -= 1;
                    if self.depth == 0 {
                        return Ok(Some(offset));
                    }
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

/// Skips the object or array whose opening bracket is at `start`; returns the position after
/// its closing bracket, or the error position and reason.
///
/// Skipped parts are most of a typical event, so this scans 64 bytes per step in the manner
/// of simdjson, with 64-bit words instead of SIMD registers: masks of quotes and brackets, a
/// prefix XOR over the quotes for the bytes inside strings, and popcounts of the brackets
/// outside strings; the block is walked bracket by bracket only when the depth may reach zero
/// in it. A block containing a backslash (an escaped quote, maybe) is scanned byte by byte,
/// and so is the rest of a block after one. The last partial block is padded with spaces.
/// Only nesting is checked here, not that each bracket closes one of its own kind.
fn skip_block(b: &[u8], start: usize, max_depth: usize) -> Result<usize, (usize, &'static str)> {
    let mut scan = Scan {
        depth: 0,
        in_string: false,
        escaped: false,
        max_depth: max_depth as u64,
    };
    let mut i = start;
    while i < b.len() {
        let end = (i + 64).min(b.len());
        let mut padded = [b' '; 64];
        let block: &[u8; 64] = if end - i == 64 {
            b[i..end].try_into().expect("a 64-byte slice")
        } else {
            padded[..end - i].copy_from_slice(&b[i..end]);
            &padded
        };
        let step = if scan.escaped {
            None
        } else {
            scan.block(block)
        };
        match step {
            Some(Step::Closed(offset)) if i + offset < end => return Ok(i + offset + 1),
            Some(Step::Closed(_)) => break,
            Some(Step::TooDeep(offset)) => return Err((i + offset, "nesting too deep")),
            Some(Step::Continue) => {}
            None => {
                if let Some(offset) = scan.bytes(&b[i..end]).map_err(|(o, what)| (i + o, what))? {
                    return Ok(i + offset + 1);
                }
            }
        }
        i = end;
    }
    Err((b.len(), "unexpected end of the event"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trie(paths: &[&str]) -> PathTrie {
        let mut t = PathTrie::default();
        for (i, p) in paths.iter().enumerate() {
            t.insert(p, i as u32);
        }
        t
    }

    /// (path id, value text, trail) of one leaf.
    type Described = (u32, String, Vec<(u32, u32)>);

    fn leaves(paths: &[&str], event: &str) -> Vec<Described> {
        let t = trie(paths);
        let mut flat = Flat::default();
        flatten(event, &t, &mut flat).expect("valid event");
        flat.leaves
            .iter()
            .map(|l| {
                let v = match flat.scalar(l, event) {
                    Scalar::Str(s) => format!("{s:?}"),
                    Scalar::Num(n) => n.to_owned(),
                    Scalar::True => "true".to_owned(),
                    Scalar::False => "false".to_owned(),
                    Scalar::Null => "null".to_owned(),
                };
                (l.path, v, flat.trail(l).to_vec())
            })
            .collect()
    }

    #[test]
    fn dotted_keys_meet_nested_ones() {
        let got = leaves(
            &["detail.state.status"],
            r#"{"detail": {"state.status": "a", "state": {"status": "b"}}, "detail.state": {"status": "c"}, "detail.state.status": "d"}"#,
        );
        let values: Vec<&str> = got.iter().map(|(_, v, _)| v.as_str()).collect();
        assert_eq!(values, [r#""a""#, r#""b""#, r#""c""#, r#""d""#]);
    }

    #[test]
    fn numbers_keep_their_lexemes_and_strings_are_unescaped() {
        let got = leaves(
            &["n", "s"],
            r#"{"n": [300.0, 3.0e2, 37.807807921694092, 1E400], "s": "a\"b\u00e9"}"#,
        );
        let values: Vec<&str> = got.iter().map(|(_, v, _)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "300.0",
                "3.0e2",
                "37.807807921694092",
                "1E400",
                r#""a\"bé""#
            ]
        );
    }

    #[test]
    fn array_trails_record_container_elements_only() {
        let got = leaves(
            &["e.name", "e.ids"],
            r#"{"e": [{"name": "a", "ids": [1, 2]}, [{"name": "b"}], {"name": "c"}]}"#,
        );
        assert_eq!(
            got,
            vec![
                (0, r#""a""#.to_owned(), vec![(0, 0)]),
                // Array 2 holds leaves of one path only, so it is left out.
                (0, r#""b""#.to_owned(), vec![(0, 1)]),
                (0, r#""c""#.to_owned(), vec![(0, 2)]),
                (1, "1".to_owned(), vec![(0, 0)]),
                (1, "2".to_owned(), vec![(0, 0)]),
            ]
        );
    }

    #[test]
    fn unused_members_are_skipped_but_checked_for_structure() {
        let t = trie(&["a"]);
        let mut flat = Flat::default();
        let ok = r#"{"x": {"y": [1, "]}\"", {"z": null}]}, "a": 1}"#;
        flatten(ok, &t, &mut flat).expect("valid");
        assert_eq!(flat.leaves.len(), 1);
        for bad in [
            r#"{"x": [1, {"y": 2], "a": 1}"#,
            r#"{"x": [1, 2, "a": 1}"#,
            r#"{"x": "unterminated}"#,
            r#"{"a": 1} trailing"#,
            r#"{"a": 01}"#,
            r#"{"a": tru}"#,
            r#"["a"]"#,
            "",
            r#"{"a" 1}"#,
        ] {
            assert!(flatten(bad, &t, &mut flat).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_skipping_handles_strings_escapes_and_block_edges() {
        let t = trie(&["a"]);
        let mut flat = Flat::default();
        // Skipped members of every length around the 64-byte block size, with brackets and
        // escaped quotes inside strings.
        for pad in 0..140 {
            let filler = "x".repeat(pad);
            for inner in [
                format!(r#"["{filler}", {{"k": "]}}"}}]"#),
                format!(r#"{{"s": "{filler}\"]\\", "t": [[[]]]}}"#),
                format!(r#"[{filler:?}, "\\", "\"", 1]"#),
                format!(r#"{{"p": "{filler}|[é|", "q": ["|", {{"}}": "|]"}}]}}"#),
            ] {
                let event = format!(r#"{{"skip": {inner}, "a": "yes"}}"#);
                flatten(&event, &t, &mut flat).unwrap_or_else(|e| panic!("{event}: {e}"));
                assert_eq!(flat.leaves.len(), 1, "{event}");
                assert!(matches!(
                    flat.scalar(&flat.leaves[0], &event),
                    Scalar::Str("yes")
                ));
                let truncated = &event[..event.len() - 12];
                assert!(flatten(truncated, &t, &mut flat).is_err(), "{truncated}");
            }
        }
    }

    #[test]
    fn objects_and_empty_arrays_are_not_leaves() {
        let got = leaves(&["a", "b"], r#"{"a": {"x": 1}, "b": []}"#);
        assert!(got.is_empty());
    }
}
