//! S3 object keys as Firehose names them: `<evaluated prefix><stream>-<version>-<yyyy-MM-dd-HH-mm-ss>-<random>`.
//!
//! A prefix without expressions gets AWS's default time path `yyyy/MM/dd/HH/` appended; a
//! prefix with `!{timestamp:<Java DateTimeFormatter>}` or `!{firehose:random-string}`
//! expressions replaces it. Error objects go under `ErrorOutputPrefix`, whose
//! `!{firehose:error-output-type}` names the failure (`processing-failed`); without one they go
//! under `<Prefix>processing-failed/yyyy/MM/dd/HH/`. Times are UTC, taken from the arrival of
//! the oldest record in the object. Pure: no IO, no clock.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// What names one object.
pub struct Naming<'a> {
    pub stream: &'a str,
    pub version: u32,
    /// Arrival of the oldest record in the object, ms since the epoch.
    pub at_ms: i64,
    /// The flush's random part (a UUID).
    pub random: &'a str,
    /// `.gz` for GZIP, or the configured `FileExtension`.
    pub extension: &'a str,
}

fn time(at_ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at_ms).unwrap_or_default()
}

fn default_path(at_ms: i64) -> String {
    let t = time(at_ms);
    format!(
        "{:04}/{:02}/{:02}/{:02}/",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    )
}

fn name(n: &Naming) -> String {
    let t = time(n.at_ms);
    format!(
        "{}-{}-{:04}-{:02}-{:02}-{:02}-{:02}-{:02}-{}{}",
        n.stream,
        n.version,
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        n.random,
        n.extension
    )
}

/// Whether a prefix holds `!{...}` expressions.
pub fn has_expressions(prefix: &str) -> bool {
    prefix.contains("!{")
}

/// The key of a delivered object.
pub fn object_key(prefix: &str, n: &Naming) -> Result<String, String> {
    let evaluated = if has_expressions(prefix) {
        evaluate(prefix, n.at_ms, n.random, None)?
    } else {
        format!("{prefix}{}", default_path(n.at_ms))
    };
    Ok(evaluated + &name(n))
}

/// The key of an object of failed records (`error_type`: `processing-failed`).
pub fn error_key(
    error_prefix: Option<&str>,
    prefix: &str,
    error_type: &str,
    n: &Naming,
) -> Result<String, String> {
    let evaluated = match error_prefix.filter(|p| !p.is_empty()) {
        Some(p) if has_expressions(p) => evaluate(p, n.at_ms, n.random, Some(error_type))?,
        Some(p) => format!("{p}{error_type}/{}", default_path(n.at_ms)),
        None => {
            let base = if has_expressions(prefix) { "" } else { prefix };
            format!("{base}{error_type}/{}", default_path(n.at_ms))
        }
    };
    Ok(evaluated + &name(n))
}

/// Checks a destination's prefixes as CreateDeliveryStream does; the message is AWS's
/// `InvalidArgumentException` text.
pub fn validate(prefix: &str, error_prefix: Option<&str>) -> Result<(), String> {
    evaluate(prefix, 0, "x", None)?;
    let error_prefix = error_prefix.filter(|p| !p.is_empty());
    if has_expressions(prefix) && error_prefix.is_none() {
        return Err(
            "ErrorOutputPrefix cannot be null or empty when Prefix contains expressions"
                .to_string(),
        );
    }
    if let Some(p) = error_prefix {
        evaluate(p, 0, "x", Some("processing-failed"))?;
        if has_expressions(p) && !p.contains("!{firehose:error-output-type}") {
            return Err(
                "ErrorOutputPrefix must contain !{firehose:error-output-type} when it contains expressions"
                    .to_string(),
            );
        }
    }
    Ok(())
}

/// Replaces each `!{namespace:value}` of `template`.
pub fn evaluate(
    template: &str,
    at_ms: i64,
    random: &str,
    error_type: Option<&str>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("!{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("Unterminated expression in prefix: {template}"));
        };
        let expr = &after[..end];
        let (namespace, value) = expr.split_once(':').unwrap_or((expr, ""));
        match (namespace, value) {
            ("timestamp", format) => out.push_str(&java_format(format, at_ms)?),
            ("firehose", "random-string") => {
                out.extend(random.chars().filter(char::is_ascii_alphanumeric).take(11))
            }
            ("firehose", "error-output-type") => match error_type {
                Some(t) => out.push_str(t),
                None => {
                    return Err(
                        "The expression !{firehose:error-output-type} is only allowed in ErrorOutputPrefix"
                            .to_string(),
                    );
                }
            },
            ("partitionKeyFromQuery" | "partitionKeyFromLambda", _) => {
                return Err(format!(
                    "The expression !{{{expr}}} needs dynamic partitioning, which tsumiki does not offer"
                ));
            }
            _ => return Err(format!("Invalid expression in prefix: !{{{expr}}}")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A Java `DateTimeFormatter` pattern's common letters (`yyyy`, `yy`, `MM`, `dd`, `HH`, `mm`,
/// `ss`, `SSS`), `'quoted'` literals and other punctuation as is.
fn java_format(pattern: &str, at_ms: i64) -> Result<String, String> {
    if pattern.is_empty() {
        return Err("The timestamp expression needs a format".to_string());
    }
    let t = time(at_ms);
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            let close = chars[i + 1..].iter().position(|&x| x == '\'');
            let Some(close) = close else {
                return Err(format!("Unterminated quote in timestamp format: {pattern}"));
            };
            if close == 0 {
                out.push('\'');
            } else {
                out.extend(&chars[i + 1..i + 1 + close]);
            }
            i += close + 2;
            continue;
        }
        let run = chars[i..].iter().take_while(|&&x| x == c).count();
        let text = match c {
            'y' | 'u' if run == 2 => format!("{:02}", t.year() % 100),
            'y' | 'u' => format!("{:0run$}", t.year()),
            'M' => format!("{:0run$}", t.month()),
            'd' => format!("{:0run$}", t.day()),
            'H' => format!("{:0run$}", t.hour()),
            'm' => format!("{:0run$}", t.minute()),
            's' => format!("{:0run$}", t.second()),
            'S' => format!("{:03}", t.timestamp_subsec_millis())
                .chars()
                .take(run)
                .collect(),
            c if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "Unsupported letter '{c}' in timestamp format: {pattern}"
                ));
            }
            c => c.to_string().repeat(run),
        };
        out.push_str(&text);
        i += run;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-03-04T05:06:07.089Z
    const AT: i64 = 1_772_600_767_089;

    fn naming(extension: &'static str) -> Naming<'static> {
        Naming {
            stream: "s",
            version: 1,
            at_ms: AT,
            random: "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
            extension,
        }
    }

    #[test]
    fn default_keys_have_the_hour_path_and_the_aws_name() {
        assert_eq!(
            object_key("", &naming("")).unwrap(),
            "2026/03/04/05/s-1-2026-03-04-05-06-07-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
        );
        assert_eq!(
            object_key("logs/", &naming(".gz")).unwrap(),
            "logs/2026/03/04/05/s-1-2026-03-04-05-06-07-0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.gz"
        );
    }

    #[test]
    fn expressions_replace_the_default_path() {
        let key = object_key(
            "year=!{timestamp:yyyy}/month=!{timestamp:MM}/d=!{timestamp:yyyy'-'MM'-'dd}/!{firehose:random-string}/",
            &naming(""),
        )
        .unwrap();
        assert!(
            key.starts_with("year=2026/month=03/d=2026-03-04/0f1e2d3c4b5/s-1-"),
            "{key}"
        );
    }

    #[test]
    fn error_keys() {
        let n = naming("");
        assert!(
            error_key(None, "p/", "processing-failed", &n)
                .unwrap()
                .starts_with("p/processing-failed/2026/03/04/05/s-1-")
        );
        assert!(
            error_key(
                Some("err/!{firehose:error-output-type}/!{timestamp:yyyy}/"),
                "x/",
                "processing-failed",
                &n
            )
            .unwrap()
            .starts_with("err/processing-failed/2026/s-1-")
        );
        assert!(
            error_key(Some("err/"), "x/", "processing-failed", &n)
                .unwrap()
                .starts_with("err/processing-failed/2026/03/04/05/")
        );
    }

    #[test]
    fn validation() {
        assert!(validate("a/", None).is_ok());
        assert!(validate("!{timestamp:yyyy}/", None).is_err());
        assert!(validate("!{timestamp:yyyy}/", Some("e/")).is_ok());
        assert!(validate("!{timestamp:yyyy}/", Some("e/!{timestamp:yyyy}/")).is_err());
        assert!(validate("!{firehose:error-output-type}/", Some("e/")).is_err());
        assert!(validate("!{timestamp:}/", Some("e/")).is_err());
        assert!(validate("!{nope:x}/", Some("e/")).is_err());
        assert!(validate("!{timestamp:yyyy", Some("e/")).is_err());
    }
}
