//! Paging: GetLogEvents' forward and backward tokens, and the opaque tokens of the describe
//! and filter operations.
//!
//! A GetLogEvents token is a boundary between two events of a stream: `f/N/s` asks for the
//! events at or after boundary N, `b/N/s` for those before it. N packs an [`EventKey`]
//! (timestamp, sequence) into one number, so the token is digits as AWS's are. As on AWS, a
//! page that reaches the end hands back the very token it was given, which is how clients know
//! to stop (or, following a stream, to ask again later).

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::EventKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Forward(EventKey),
    Backward(EventKey),
}

impl Cursor {
    pub fn encode(self) -> String {
        match self {
            Cursor::Forward(k) => format!("f/{:039}/s", pack(k)),
            Cursor::Backward(k) => format!("b/{:039}/s", pack(k)),
        }
    }

    pub fn decode(token: &str) -> Option<Cursor> {
        let (dir, rest) = token.split_at_checked(2)?;
        let digits = rest.strip_suffix("/s").unwrap_or(rest);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let key = unpack(digits.parse::<u128>().ok()?);
        match dir {
            "f/" => Some(Cursor::Forward(key)),
            "b/" => Some(Cursor::Backward(key)),
            _ => None,
        }
    }
}

fn pack((ts, seq): EventKey) -> u128 {
    ((((ts as u64) ^ (1 << 63)) as u128) << 64) | seq as u128
}

fn unpack(n: u128) -> EventKey {
    ((((n >> 64) as u64) ^ (1 << 63)) as i64, n as u64)
}

/// The boundary just after `key`.
fn after((ts, seq): EventKey) -> EventKey {
    match seq.checked_add(1) {
        Some(s) => (ts, s),
        None => (ts.saturating_add(1), 0),
    }
}

/// Where a GetLogEvents call starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// `startFromHead`: the earliest events of the window.
    Head,
    /// The default: the latest events of the window.
    Tail,
    Token(Cursor),
}

pub struct Page<'a, V> {
    pub items: Vec<(EventKey, &'a V)>,
    pub forward: Cursor,
    pub backward: Cursor,
}

/// One page of `events` within the window `[lo, hi)`: at most `limit` events whose `cost`
/// adds up to at most `budget` (the first event always fits), in ascending order.
pub fn page<'a, V>(
    events: &'a BTreeMap<EventKey, V>,
    lo: EventKey,
    hi: EventKey,
    start: Start,
    limit: usize,
    budget: usize,
    cost: impl Fn(&V) -> usize,
) -> Page<'a, V> {
    let cursor = match start {
        Start::Head => Cursor::Forward(lo),
        Start::Tail => Cursor::Backward(hi),
        Start::Token(c) => c,
    };
    let mut spent = 0usize;
    let mut fits = |v: &V, n: usize| {
        spent = spent.saturating_add(cost(v));
        n == 0 || (n < limit && spent <= budget)
    };
    match cursor {
        Cursor::Forward(b) => {
            let from = b.max(lo);
            let mut items = Vec::new();
            if from < hi {
                for (k, v) in events.range(from..hi) {
                    if !fits(v, items.len()) {
                        break;
                    }
                    items.push((*k, v));
                }
            }
            match (items.first(), items.last()) {
                (Some(first), Some(last)) => Page {
                    forward: Cursor::Forward(after(last.0)),
                    backward: Cursor::Backward(first.0),
                    items,
                },
                _ => Page {
                    items,
                    forward: cursor,
                    backward: Cursor::Backward(b),
                },
            }
        }
        Cursor::Backward(b) => {
            let to = b.min(hi);
            let mut items = Vec::new();
            if lo < to {
                for (k, v) in events.range(lo..to).rev() {
                    if !fits(v, items.len()) {
                        break;
                    }
                    items.push((*k, v));
                }
            }
            items.reverse();
            match (items.first(), items.last()) {
                (Some(first), Some(last)) => Page {
                    forward: Cursor::Forward(after(last.0)),
                    backward: Cursor::Backward(first.0),
                    items,
                },
                // An empty stream read from its tail: new events will come after the window's
                // start, so the forward token must not point past them.
                _ if matches!(start, Start::Tail) => Page {
                    items,
                    forward: Cursor::Forward(lo),
                    backward: Cursor::Backward(lo),
                },
                _ => Page {
                    items,
                    forward: Cursor::Forward(b),
                    backward: cursor,
                },
            }
        }
    }
}

/// An opaque token carrying `value` (base64 of its JSON).
pub fn encode_token<T: Serialize + ?Sized>(value: &T) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(value).unwrap_or_default())
}

pub fn decode_token<T: DeserializeOwned>(token: &str) -> Option<T> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: (EventKey, EventKey) = ((i64::MIN, 0), (i64::MAX, u64::MAX));

    fn stream(n: i64) -> BTreeMap<EventKey, i64> {
        (0..n).map(|i| ((1000 + i * 10, i as u64), i)).collect()
    }

    fn values(p: &Page<'_, i64>) -> Vec<i64> {
        p.items.iter().map(|(_, v)| **v).collect()
    }

    fn get(events: &BTreeMap<EventKey, i64>, start: Start, limit: usize) -> Page<'_, i64> {
        page(events, ALL.0, ALL.1, start, limit, usize::MAX, |_| 1)
    }

    #[test]
    fn tokens_round_trip() {
        for key in [
            (0, 0),
            (-1, 5),
            (1_700_000_000_000, u64::MAX),
            (i64::MIN, 0),
        ] {
            for c in [Cursor::Forward(key), Cursor::Backward(key)] {
                let token = c.encode();
                assert!(
                    token.starts_with(['f', 'b']) && token.ends_with("/s"),
                    "{token}"
                );
                assert_eq!(Cursor::decode(&token), Some(c));
            }
        }
        assert_eq!(
            Cursor::decode("f/12"),
            Some(Cursor::Forward(unpack(12))),
            "the /s suffix is optional"
        );
        for bad in [
            "",
            "f/",
            "x/12/s",
            "f/12a/s",
            "f/-1/s",
            "b/ 1/s",
            "f/9999999999999999999999999999999999999999/s",
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn head_pages_forward_and_ends_with_the_same_token() {
        let events = stream(5);
        let p1 = get(&events, Start::Head, 2);
        assert_eq!(values(&p1), [0, 1]);
        let p2 = get(&events, Start::Token(p1.forward), 2);
        assert_eq!(values(&p2), [2, 3]);
        let p3 = get(&events, Start::Token(p2.forward), 2);
        assert_eq!(values(&p3), [4]);
        let end = get(&events, Start::Token(p3.forward), 2);
        assert!(end.items.is_empty());
        assert_eq!(end.forward, p3.forward, "the end hands the same token back");
        // Walking back from the middle.
        let back = get(&events, Start::Token(p2.backward), 10);
        assert_eq!(values(&back), [0, 1]);
        let start = get(&events, Start::Token(back.backward), 10);
        assert!(start.items.is_empty());
        assert_eq!(start.backward, back.backward);
    }

    #[test]
    fn tail_pages_backward_then_follows_forward() {
        let mut events = stream(5);
        let p1 = get(&events, Start::Tail, 2);
        assert_eq!(values(&p1), [3, 4], "the latest events, oldest first");
        let tail_forward = p1.forward;
        let p2 = get(&events, Start::Token(p1.backward), 2);
        assert_eq!(values(&p2), [1, 2]);
        let p3 = get(&events, Start::Token(p2.backward), 2);
        assert_eq!(values(&p3), [0]);
        let p4 = get(&events, Start::Token(p3.backward), 2);
        assert!(p4.items.is_empty());
        assert_eq!(p4.backward, p3.backward);
        // Forward from the tail sees only what arrives later.
        let quiet = get(&events, Start::Token(tail_forward), 2);
        assert!(quiet.items.is_empty());
        assert_eq!(quiet.forward, tail_forward);
        events.insert((2000, 9), 99);
        let new = get(&events, Start::Token(tail_forward), 2);
        assert_eq!(values(&new), [99]);
    }

    #[test]
    fn an_empty_stream_read_from_the_tail_later_yields_its_events() {
        let mut events = BTreeMap::new();
        let p = get(&events, Start::Tail, 10);
        assert!(p.items.is_empty());
        let forward = p.forward;
        events.insert((5, 0), 1);
        assert_eq!(values(&get(&events, Start::Token(forward), 10)), [1]);
    }

    #[test]
    fn window_and_budget_bound_a_page() {
        let events = stream(10);
        let p = page(
            &events,
            (1020, 0),
            (1060, 0),
            Start::Head,
            100,
            usize::MAX,
            |_| 1,
        );
        assert_eq!(values(&p), [2, 3, 4, 5]);
        let p = page(
            &events,
            (1020, 0),
            (1060, 0),
            Start::Tail,
            100,
            usize::MAX,
            |_| 1,
        );
        assert_eq!(values(&p), [2, 3, 4, 5]);
        let p = page(&events, ALL.0, ALL.1, Start::Head, 100, 30, |_| 10);
        assert_eq!(values(&p), [0, 1, 2]);
        let p = page(&events, ALL.0, ALL.1, Start::Head, 100, 1, |_| 10);
        assert_eq!(values(&p), [0], "the first event always fits");
        // A window that is empty or inverted is not an error.
        let p = page(
            &events,
            (1060, 0),
            (1020, 0),
            Start::Head,
            100,
            usize::MAX,
            |_| 1,
        );
        assert!(p.items.is_empty());
        let p = page(
            &events,
            (1060, 0),
            (1020, 0),
            Start::Tail,
            100,
            usize::MAX,
            |_| 1,
        );
        assert!(p.items.is_empty());
    }

    #[test]
    fn opaque_tokens_round_trip() {
        let token = encode_token(&("name", 5));
        assert_eq!(
            decode_token::<(String, i64)>(&token),
            Some(("name".into(), 5))
        );
        assert_eq!(decode_token::<(String, i64)>("not a token"), None);
    }
}
