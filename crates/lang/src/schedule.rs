//! Schedule expressions: `rate(N unit)`, AWS's six-field `cron(...)`, and Scheduler's
//! `at(yyyy-mm-ddThh:mm:ss)`, with AWS's validation, and the occurrence arithmetic the
//! schedule loops run on.
//!
//! Cron fields are checked here against AWS's grammar (croner alone accepts more: five fields,
//! POSIX weekdays, seconds) and then normalised for croner: a seconds field is prepended, a
//! bare `n/step` becomes `n-max/step`, a lone `L` in day-of-week becomes `7` (Saturday in
//! AWS's 1 = Sunday numbering, which is croner's Quartz mode).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed schedule expression.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Every `every_ms`, counted from an anchor (the rule's or schedule's creation or start).
    Rate { every_ms: i64 },
    /// A cron expression, evaluated in a time zone.
    Cron(Box<croner::Cron>),
    /// Once, at a wall-clock time in the schedule's time zone.
    At(NaiveDateTime),
}

/// Which expressions an API accepts: rules take `rate` and `cron`; Scheduler adds `at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Rule,
    Scheduler,
}

impl Schedule {
    /// Parses `text`; `None` when it is not a valid expression of `flavor` (callers word the
    /// error as their API does).
    pub fn parse(text: &str, flavor: Flavor) -> Option<Schedule> {
        let text = text.trim();
        if let Some(inner) = strip_call(text, "rate") {
            return parse_rate(inner);
        }
        if let Some(inner) = strip_call(text, "cron") {
            return parse_cron(inner).map(|c| Schedule::Cron(Box::new(c)));
        }
        if flavor == Flavor::Scheduler
            && let Some(inner) = strip_call(text, "at")
        {
            return NaiveDateTime::parse_from_str(inner, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(Schedule::At);
        }
        None
    }

    /// The first occurrence strictly after `after_ms`. `anchor_ms` is where a rate counts
    /// from; `tz` is the zone cron and at expressions are read in.
    pub fn next_after(&self, after_ms: i64, anchor_ms: i64, tz: Tz) -> Option<i64> {
        match self {
            Schedule::Rate { every_ms } => {
                if after_ms < anchor_ms {
                    return Some(anchor_ms + every_ms);
                }
                let k = (after_ms - anchor_ms) / every_ms + 1;
                Some(anchor_ms + k * every_ms)
            }
            Schedule::Cron(cron) => {
                let start = tz.timestamp_millis_opt(after_ms).single()?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp_millis())
            }
            Schedule::At(local) => {
                let at = local_to_utc_ms(*local, tz)?;
                (at > after_ms).then_some(at)
            }
        }
    }

    /// The latest occurrence in `(after_ms, now_ms]`, if any: when several came due while
    /// nothing ran (a restart, a jump of the manual clock), they coalesce into this one.
    pub fn latest_due(&self, after_ms: i64, now_ms: i64, anchor_ms: i64, tz: Tz) -> Option<i64> {
        let first = self.next_after(after_ms, anchor_ms, tz)?;
        if first > now_ms {
            return None;
        }
        match self {
            Schedule::Rate { every_ms } => {
                Some(anchor_ms + (now_ms - anchor_ms) / every_ms * every_ms)
            }
            Schedule::Cron(cron) => {
                let now = tz.timestamp_millis_opt(now_ms).single()?;
                let prev = cron
                    .find_previous_occurrence(&now, true)
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(first);
                Some(prev.max(first))
            }
            Schedule::At(_) => Some(first),
        }
    }

    pub fn is_one_time(&self) -> bool {
        matches!(self, Schedule::At(_))
    }
}

/// An `at()` wall-clock time in `tz`, resolved as AWS resolves a gap or fold: the earlier
/// instant of a fold, and the time just after a gap.
fn local_to_utc_ms(local: NaiveDateTime, tz: Tz) -> Option<i64> {
    match tz.from_local_datetime(&local) {
        chrono::LocalResult::Single(t) => Some(t.timestamp_millis()),
        chrono::LocalResult::Ambiguous(a, _) => Some(a.timestamp_millis()),
        chrono::LocalResult::None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.timestamp_millis()),
    }
}

fn strip_call<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.strip_prefix(name)?
        .strip_prefix('(')?
        .strip_suffix(')')
        .map(str::trim)
}

fn parse_rate(inner: &str) -> Option<Schedule> {
    let mut parts = inner.split_whitespace();
    let (value, unit) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: i64 = value.parse().ok()?;
    if n < 1 {
        return None;
    }
    // AWS: the unit is singular for 1 and plural otherwise (`rate(1 minutes)` is invalid).
    let unit_ms = match (unit, n == 1) {
        ("minute", true) | ("minutes", false) => 60_000,
        ("hour", true) | ("hours", false) => 3_600_000,
        ("day", true) | ("days", false) => 86_400_000,
        _ => return None,
    };
    Some(Schedule::Rate {
        every_ms: n.checked_mul(unit_ms)?,
    })
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

impl Field {
    fn bounds(self) -> (u32, u32) {
        match self {
            Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (1, 7),
            Field::Year => (1970, 2199),
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &WEEKDAYS,
            _ => &[],
        }
    }
}

/// AWS's cron: `minutes hours day-of-month month day-of-week year`, exactly one of the two
/// day fields `?`.
fn parse_cron(inner: &str) -> Option<croner::Cron> {
    let fields: Vec<String> = inner
        .split_whitespace()
        .map(str::to_ascii_uppercase)
        .collect();
    if fields.len() != 6 {
        return None;
    }
    let kinds = [
        Field::Minute,
        Field::Hour,
        Field::DayOfMonth,
        Field::Month,
        Field::DayOfWeek,
        Field::Year,
    ];
    if (fields[2] == "?") == (fields[4] == "?") {
        return None;
    }
    let mut normalized = vec!["0".to_string()];
    for (text, kind) in fields.iter().zip(kinds) {
        normalized.push(normalize_field(text, kind)?);
    }
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .year(croner::parser::Year::Required)
        .alternative_weekdays(true)
        .build()
        .parse(&normalized.join(" "))
        .ok()
}

/// Checks one field against AWS's grammar and rewrites it in the form croner reads.
fn normalize_field(text: &str, kind: Field) -> Option<String> {
    let day = matches!(kind, Field::DayOfMonth | Field::DayOfWeek);
    if day && text == "?" {
        return Some("*".into());
    }
    if kind == Field::DayOfMonth && (text == "L" || text == "LW") {
        return Some(text.into());
    }
    if kind == Field::DayOfWeek && text == "L" {
        return Some("7".into());
    }
    let (_, hi) = kind.bounds();
    let mut out = Vec::new();
    for item in text.split(',') {
        if kind == Field::DayOfMonth
            && let Some(d) = item.strip_suffix('W')
        {
            value(d, kind)?;
            out.push(item.to_string());
            continue;
        }
        if kind == Field::DayOfWeek {
            if let Some((d, nth)) = item.split_once('#') {
                value(d, kind)?;
                if !matches!(nth, "1" | "2" | "3" | "4" | "5") {
                    return None;
                }
                out.push(item.to_string());
                continue;
            }
            if let Some(d) = item.strip_suffix('L') {
                value(d, kind)?;
                out.push(item.to_string());
                continue;
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().ok().filter(|s: &u32| *s >= 1)?;
                (r, Some(step))
            }
            None => (item, None),
        };
        let range = if range == "*" {
            "*".to_string()
        } else if let Some((a, b)) = range.split_once('-') {
            value(a, kind)?;
            value(b, kind)?;
            format!("{a}-{b}")
        } else {
            value(range, kind)?;
            match step {
                // `0/15` means from 0 to the end of the field, every 15.
                Some(_) => format!("{range}-{hi}"),
                None => range.to_string(),
            }
        };
        out.push(match step {
            Some(s) => format!("{range}/{s}"),
            None => range,
        });
    }
    Some(out.join(","))
}

/// A number within the field's bounds, or a month or weekday name.
fn value(text: &str, kind: Field) -> Option<u32> {
    let (lo, hi) = kind.bounds();
    if let Some(i) = kind.names().iter().position(|n| *n == text) {
        return Some(i as u32 + lo);
    }
    if text.is_empty() || text.len() > 4 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = text.parse().ok()?;
    (lo..=hi).contains(&n).then_some(n)
}

/// Formats epoch milliseconds as EventBridge event times are written: ISO 8601, seconds.
pub fn iso_seconds(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .expect("test time")
            .timestamp_millis()
    }

    fn next(expr: &str, after: &str, tz: Tz) -> Option<String> {
        let s = Schedule::parse(expr, Flavor::Scheduler).expect(expr);
        s.next_after(ms(after), ms(after), tz).map(iso_seconds)
    }

    #[test]
    fn valid_and_invalid_expressions() {
        let table: &[(&str, bool)] = &[
            ("rate(1 minute)", true),
            ("rate(5 minutes)", true),
            ("rate(1 hour)", true),
            ("rate(12 hours)", true),
            ("rate(1 day)", true),
            ("rate(7 days)", true),
            ("rate(1 minutes)", false),
            ("rate(5 minute)", false),
            ("rate(0 minutes)", false),
            ("rate(-1 minutes)", false),
            ("rate(1.5 hours)", false),
            ("rate(1 second)", false),
            ("rate(1 week)", false),
            ("rate()", false),
            ("rate(minutes)", false),
            ("rate 5 minutes", false),
            ("cron(0 12 * * ? *)", true),
            ("cron(15 10 ? * 6L 2019-2022)", true),
            ("cron(0/15 * * * ? *)", true),
            ("cron(0/5 8-17 ? * MON-FRI *)", true),
            ("cron(0 8 1 * ? *)", true),
            ("cron(0 9 ? * 2#1 *)", true),
            ("cron(0 18 ? * MON-FRI *)", true),
            ("cron(0 10 L * ? *)", true),
            ("cron(0 10 15W * ? *)", true),
            ("cron(0 10 ? * L *)", true),
            ("cron(0,30 * ? * SUN,SAT *)", true),
            ("cron(0 0 1 JAN-MAR ? 2030)", true),
            ("cron(0 12 * * * *)", false),
            ("cron(0 12 ? * ? *)", false),
            ("cron(0 12 * * ?)", false),
            ("cron(0 0 12 * * ? *)", false),
            ("cron(60 12 * * ? *)", false),
            ("cron(0 24 * * ? *)", false),
            ("cron(0 0 32 * ? *)", false),
            ("cron(0 0 ? 13 * *)", false),
            ("cron(0 0 ? * 8 *)", false),
            ("cron(0 0 ? * 0 *)", false),
            ("cron(0 0 1 * ? 1969)", false),
            ("cron(0 0 ? * 2#6 *)", false),
            ("cron(0 0 ? * MON#1 *)", true),
            ("cron(a b c d e f)", false),
            ("at(2030-01-01T00:00:00)", false),
            ("every 5 minutes", false),
            ("", false),
        ];
        for (expr, ok) in table {
            assert_eq!(
                Schedule::parse(expr, Flavor::Rule).is_some(),
                *ok,
                "{expr} should be {}",
                if *ok { "valid" } else { "invalid" }
            );
        }
        for (expr, ok) in [
            ("at(2030-01-01T00:00:00)", true),
            ("at(2030-01-01 00:00:00)", false),
            ("at(2030-13-01T00:00:00)", false),
            ("at(2030-01-01T00:00)", false),
        ] {
            assert_eq!(
                Schedule::parse(expr, Flavor::Scheduler).is_some(),
                ok,
                "{expr}"
            );
        }
    }

    #[test]
    fn rates_count_from_their_anchor() {
        let s = Schedule::parse("rate(5 minutes)", Flavor::Rule).expect("valid");
        let anchor = ms("2030-01-01T00:00:30Z");
        assert_eq!(
            s.next_after(anchor, anchor, Tz::UTC),
            Some(anchor + 300_000)
        );
        assert_eq!(
            s.next_after(anchor + 300_000, anchor, Tz::UTC),
            Some(anchor + 600_000)
        );
        assert_eq!(
            s.latest_due(anchor, anchor + 1_000_000, anchor, Tz::UTC),
            Some(anchor + 900_000)
        );
        assert_eq!(
            s.latest_due(anchor, anchor + 299_999, anchor, Tz::UTC),
            None
        );
    }

    #[test]
    fn cron_occurrences_in_utc() {
        let utc = Tz::UTC;
        assert_eq!(
            next("cron(0 12 * * ? *)", "2030-01-01T12:00:00Z", utc).as_deref(),
            Some("2030-01-02T12:00:00Z")
        );
        assert_eq!(
            next("cron(0/15 * * * ? *)", "2030-01-01T12:01:00Z", utc).as_deref(),
            Some("2030-01-01T12:15:00Z")
        );
        // 2030-01-01 is a Tuesday; 6L is the last Friday of the month.
        assert_eq!(
            next("cron(15 10 ? * 6L *)", "2030-01-01T00:00:00Z", utc).as_deref(),
            Some("2030-01-25T10:15:00Z")
        );
        // 2#1: the first Monday.
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", "2030-01-01T00:00:00Z", utc).as_deref(),
            Some("2030-01-07T09:00:00Z")
        );
        assert_eq!(
            next("cron(0 10 L * ? *)", "2030-02-01T00:00:00Z", utc).as_deref(),
            Some("2030-02-28T10:00:00Z")
        );
        // 15W: the weekday nearest the 15th; 2030-06-15 is a Saturday.
        assert_eq!(
            next("cron(0 10 15W * ? *)", "2030-06-01T00:00:00Z", utc).as_deref(),
            Some("2030-06-14T10:00:00Z")
        );
        // L alone in day-of-week is Saturday.
        assert_eq!(
            next("cron(0 10 ? * L *)", "2030-01-01T00:00:00Z", utc).as_deref(),
            Some("2030-01-05T10:00:00Z")
        );
        assert_eq!(
            next("cron(0 8 ? * MON-FRI *)", "2030-01-04T09:00:00Z", utc).as_deref(),
            Some("2030-01-07T08:00:00Z")
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2031)", "2030-01-04T09:00:00Z", utc).as_deref(),
            Some("2031-01-01T00:00:00Z")
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2029)", "2030-01-04T09:00:00Z", utc),
            None
        );
    }

    #[test]
    fn cron_and_at_in_a_time_zone() {
        let tokyo: Tz = "Asia/Tokyo".parse().expect("zone");
        assert_eq!(
            next("cron(0 9 * * ? *)", "2030-01-01T01:00:00Z", tokyo).as_deref(),
            Some("2030-01-02T00:00:00Z")
        );
        assert_eq!(
            next("at(2030-01-01T09:00:00)", "2029-12-31T00:00:00Z", tokyo).as_deref(),
            Some("2030-01-01T00:00:00Z")
        );
        assert_eq!(
            next("at(2030-01-01T09:00:00)", "2030-01-01T00:00:00Z", tokyo),
            None
        );
        let ny: Tz = "America/New_York".parse().expect("zone");
        // 02:30 does not exist on 2030-03-10 in New York; AWS runs it just after the gap.
        assert_eq!(
            next("at(2030-03-10T02:30:00)", "2030-03-01T00:00:00Z", ny).as_deref(),
            Some("2030-03-10T07:30:00Z")
        );
    }

    #[test]
    fn coalesces_missed_cron_occurrences_into_the_latest() {
        let s = Schedule::parse("cron(0 * * * ? *)", Flavor::Rule).expect("valid");
        let after = ms("2030-01-01T00:00:00Z");
        assert_eq!(
            s.latest_due(after, ms("2030-01-01T05:30:00Z"), after, Tz::UTC)
                .map(iso_seconds)
                .as_deref(),
            Some("2030-01-01T05:00:00Z")
        );
        assert_eq!(
            s.latest_due(after, ms("2030-01-01T00:59:59Z"), after, Tz::UTC),
            None
        );
    }
}
