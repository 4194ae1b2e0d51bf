//! `tsumiki logs [-f] FUNCTION_NAME`: prints a function's log group (`/aws/lambda/NAME`, every
//! stream, interleaved by time) from a running server, and with `-f` keeps polling for more.
//!
//! It is a plain client of the server's wire API: unsigned FilterLogEvents calls over HTTP/1.1
//! (the gateway accepts them, in its default account and region), so it needs no SDK. "Now"
//! is the server's clock (`GET /_tsumiki/clock`), so `--since` means the same thing on a
//! server whose clock is manual.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tsumiki_core::Clock;

#[derive(clap::Args)]
pub struct LogsArgs {
    /// Keep polling for new events until interrupted.
    #[arg(short, long)]
    follow: bool,
    /// The function whose log group (/aws/lambda/FUNCTION_NAME) to print; a name that starts
    /// with / is taken as a log group name.
    function_name: String,
    /// The tsumiki server.
    #[arg(long, default_value = "http://127.0.0.1:4566")]
    endpoint: String,
    /// How far back to start, as 45s, 10m, 2h, 1d or 1w.
    #[arg(long, default_value = "10m")]
    since: String,
    /// Only events that match this CloudWatch Logs filter pattern.
    #[arg(long)]
    filter_pattern: Option<String>,
}

/// How long `-f` waits between polls (real time: this is a client, not a business timer).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for one HTTP exchange.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: LogsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(tail(args))
}

async fn tail(args: LogsArgs) -> anyhow::Result<()> {
    let since_ms = parse_since(&args.since)?;
    let authority = authority(&args.endpoint)?;
    let group = if args.function_name.starts_with('/') {
        args.function_name.clone()
    } else {
        format!("/aws/lambda/{}", args.function_name)
    };
    let now = server_now(&authority).await?;
    let mut cursor = Cursor {
        start: now.saturating_sub(since_ms),
        seen: HashSet::new(),
    };
    let mut told_missing = false;
    loop {
        match poll(
            &authority,
            &group,
            args.filter_pattern.as_deref(),
            &mut cursor,
        )
        .await?
        {
            Poll::Printed => {}
            Poll::StdoutClosed => return Ok(()),
            Poll::NoGroup if !args.follow => bail!("the log group {group} does not exist"),
            Poll::NoGroup => {
                if !told_missing {
                    eprintln!("tsumiki logs: waiting for the log group {group} to exist...");
                    told_missing = true;
                }
            }
        }
        if !args.follow {
            return Ok(());
        }
        Clock::pause_real(POLL_EVERY).await;
    }
}

/// Where the next poll starts: events at `start` whose ids are in `seen` were printed.
struct Cursor {
    start: i64,
    seen: HashSet<String>,
}

enum Poll {
    Printed,
    NoGroup,
    StdoutClosed,
}

/// Prints every event since the cursor, following `nextToken` to the end.
async fn poll(
    authority: &str,
    group: &str,
    pattern: Option<&str>,
    cursor: &mut Cursor,
) -> anyhow::Result<Poll> {
    let mut token: Option<String> = None;
    let mut out = std::io::stdout();
    loop {
        let mut body = json!({"logGroupName": group, "startTime": cursor.start});
        if let Some(p) = pattern {
            body["filterPattern"] = json!(p);
        }
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let (status, reply) = filter_log_events(authority, &body).await?;
        if status != 200 {
            let code = reply["__type"].as_str().unwrap_or_default();
            if code.ends_with("ResourceNotFoundException") {
                return Ok(Poll::NoGroup);
            }
            let message = reply["message"]
                .as_str()
                .or(reply["Message"].as_str())
                .unwrap_or_default();
            bail!("FilterLogEvents answered {status} {code}: {message}");
        }
        for e in reply["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let ts = e["timestamp"].as_i64().unwrap_or_default();
            let id = e["eventId"].as_str().unwrap_or_default().to_string();
            if ts < cursor.start || (ts == cursor.start && cursor.seen.contains(&id)) {
                continue;
            }
            if ts > cursor.start {
                cursor.start = ts;
                cursor.seen.clear();
            }
            cursor.seen.insert(id);
            let line = format!(
                "{} {} {}",
                tsumiki_core::clock::iso8601_ms(ts),
                e["logStreamName"].as_str().unwrap_or_default(),
                e["message"]
                    .as_str()
                    .unwrap_or_default()
                    .trim_end_matches(['\n', '\r'])
            );
            if let Err(err) = writeln!(out, "{line}") {
                if err.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(Poll::StdoutClosed);
                }
                return Err(err).context("writing to stdout");
            }
        }
        if let Err(err) = out.flush() {
            if err.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(Poll::StdoutClosed);
            }
            return Err(err).context("writing to stdout");
        }
        match reply["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(Poll::Printed),
        }
    }
}

async fn filter_log_events(authority: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let (status, bytes) = http(
        authority,
        "POST",
        "/",
        &[
            ("X-Amz-Target", "Logs_20140328.FilterLogEvents"),
            ("Content-Type", "application/x-amz-json-1.1"),
        ],
        body.to_string().as_bytes(),
    )
    .await?;
    let reply = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, reply))
}

/// The server's clock, in epoch milliseconds.
async fn server_now(authority: &str) -> anyhow::Result<i64> {
    let (status, bytes) = http(authority, "GET", "/_tsumiki/clock", &[], b"").await?;
    let reply: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    match reply["now_ms"].as_i64() {
        Some(now) if status == 200 => Ok(now),
        _ => bail!("{authority} did not tell its time (is it a tsumiki server?)"),
    }
}

/// `host:port` of an `http://` endpoint.
fn authority(endpoint: &str) -> anyhow::Result<String> {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        bail!("the endpoint must be an http:// URL, got {endpoint:?}");
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        bail!("the endpoint {endpoint:?} names no host");
    }
    Ok(if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    })
}

/// `45s`, `10m`, `2h`, `1d`, `1w` (or plain seconds) as milliseconds.
fn parse_since(text: &str) -> anyhow::Result<i64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits
        .parse()
        .with_context(|| format!("--since {text:?}: expected a number and a unit, as 10m"))?;
    let unit_ms = match unit {
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        _ => bail!("--since {text:?}: the unit must be s, m, h, d or w"),
    };
    n.checked_mul(unit_ms)
        .with_context(|| format!("--since {text:?} is too far back"))
}

/// One HTTP/1.1 exchange on a fresh connection; returns (status, body).
async fn http(
    authority: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, Vec<u8>)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_response(&raw)
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .with_context(|| format!("{authority} did not answer within {HTTP_TIMEOUT:?}"))?
}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("a malformed HTTP response");
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("an HTTP response without a status")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    Ok((
        status,
        if chunked {
            dechunk(body)?
        } else {
            body.to_vec()
        },
    ))
}

fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("a truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("a bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            bail!("a truncated chunked body");
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since() {
        assert_eq!(parse_since("10m").expect("10m"), 600_000);
        assert_eq!(parse_since("45s").expect("45s"), 45_000);
        assert_eq!(parse_since("2h").expect("2h"), 7_200_000);
        assert_eq!(parse_since("1d").expect("1d"), 86_400_000);
        assert_eq!(parse_since("30").expect("30"), 30_000);
        assert!(parse_since("m").is_err());
        assert!(parse_since("10y").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            authority("http://127.0.0.1:4566").expect("a"),
            "127.0.0.1:4566"
        );
        assert_eq!(authority("http://localhost/").expect("a"), "localhost:80");
        assert!(authority("https://x").is_err());
    }

    #[test]
    fn responses() {
        let (status, body) =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").expect("plain");
        assert_eq!((status, body.as_slice()), (200, &b"{}"[..]));
        let (status, body) = parse_response(
            b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((status, body.as_slice()), (400, &b"abcde"[..]));
        assert!(parse_response(b"garbage").is_err());
    }
}
