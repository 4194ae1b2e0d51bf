//! Timestamps travel as epoch seconds inside tsumiki and in one of three formats on the wire.

use chrono::{DateTime, NaiveDateTime, Utc};

/// Parses an ISO 8601 / RFC 3339 timestamp, an RFC 7231 HTTP date, or epoch seconds.
pub fn parse(text: &str) -> Option<f64> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Some(secs);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis() as f64 / 1000.0);
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc().timestamp_millis() as f64 / 1000.0);
    }
    if let Ok(t) = DateTime::parse_from_rfc2822(text) {
        return Some(t.timestamp_millis() as f64 / 1000.0);
    }
    None
}

fn datetime(secs: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((secs * 1000.0).round() as i64).unwrap_or_default()
}

/// ISO 8601 as AWS XML writes it: `2024-01-02T03:04:05.678Z` (millis only when present).
pub fn iso8601(secs: f64) -> String {
    let t = datetime(secs);
    if t.timestamp_subsec_millis() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// RFC 7231 HTTP date, for headers.
pub fn http_date(secs: f64) -> String {
    datetime(secs)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// Formats for `format` (`iso8601`, `rfc822`, `unixTimestamp`) as a JSON value or text.
pub fn format_text(secs: f64, format: &str) -> String {
    match format {
        "rfc822" => http_date(secs),
        "unixTimestamp" => format_epoch(secs),
        _ => iso8601(secs),
    }
}

pub fn format_epoch(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}", secs as i64)
    } else {
        format!("{secs:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1.5), "1970-01-01T00:00:01.500Z");
        assert_eq!(parse("1970-01-01T00:00:01.500Z"), Some(1.5));
        assert_eq!(parse("Thu, 01 Jan 1970 00:00:02 GMT"), Some(2.0));
        assert_eq!(parse("12.25"), Some(12.25));
        assert_eq!(http_date(0.0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(parse("garbage"), None);
    }
}
