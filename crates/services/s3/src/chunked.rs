//! The `aws-chunked` content encoding (`x-amz-content-sha256: STREAMING-...`), decoded as the
//! body streams in. tsumiki accepts any signature, so chunk signatures are skipped rather than
//! verified (s3s would verify them, which needs the caller's secret key); the trailer
//! (`x-amz-checksum-crc32: ...`) is kept for the handler that checks checksums.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use parking_lot::Mutex;
use tsumiki_ports::http::{BoxError, HttpBody};

/// Where the decoder leaves the trailing headers once the body has been read.
#[derive(Clone, Default)]
pub struct Trailers(pub Arc<Mutex<Option<HeaderMap>>>);

impl Trailers {
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .lock()
            .as_ref()
            .and_then(|h| h.get(name))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
    }
}

enum State {
    /// Expecting `hex-size[;extensions]\r\n`.
    Header,
    /// Inside a chunk's data.
    Data(usize),
    /// Expecting the `\r\n` after a chunk's data.
    DataEnd,
    /// After the zero-size chunk: trailer lines until an empty line.
    Trailers,
    Done,
}

/// Longest chunk header or trailer line accepted.
const MAX_LINE: usize = 16 * 1024;

pub struct AwsChunked {
    inner: HttpBody,
    buf: BytesMut,
    state: State,
    trailers: Trailers,
    inner_done: bool,
}

impl AwsChunked {
    pub fn new(inner: HttpBody, trailers: Trailers) -> AwsChunked {
        AwsChunked {
            inner,
            buf: BytesMut::new(),
            state: State::Header,
            trailers,
            inner_done: false,
        }
    }

    fn take_line(&mut self) -> Result<Option<Bytes>, BoxError> {
        match self.buf.windows(2).position(|w| w == b"\r\n") {
            Some(i) => {
                let line = self.buf.split_to(i).freeze();
                self.buf.advance(2);
                Ok(Some(line))
            }
            None if self.buf.len() > MAX_LINE => Err("aws-chunked line too long".into()),
            None => Ok(None),
        }
    }

    /// Makes progress on what is buffered: `Some(data)` to hand out, `None` when more input is
    /// needed (or the stream is done).
    fn step(&mut self) -> Result<Option<Bytes>, BoxError> {
        loop {
            match self.state {
                State::Header => {
                    let Some(line) = self.take_line()? else {
                        return Ok(None);
                    };
                    let text = std::str::from_utf8(&line).map_err(|_| "bad aws-chunked header")?;
                    let size_text = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .map_err(|_| "bad aws-chunked chunk size")?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if self.buf.is_empty() {
                        return Ok(None);
                    }
                    let n = left.min(self.buf.len());
                    let data = self.buf.split_to(n).freeze();
                    self.state = if n == left {
                        State::DataEnd
                    } else {
                        State::Data(left - n)
                    };
                    return Ok(Some(data));
                }
                State::DataEnd => {
                    if self.buf.len() < 2 {
                        return Ok(None);
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err("aws-chunked data not followed by CRLF".into());
                    }
                    self.buf.advance(2);
                    self.state = State::Header;
                }
                State::Trailers => {
                    let line = match self.take_line()? {
                        Some(line) => line,
                        // Some clients end the body without the final empty line.
                        None if self.inner_done && !self.buf.is_empty() => {
                            self.buf.split().freeze()
                        }
                        None if self.inner_done => {
                            self.state = State::Done;
                            continue;
                        }
                        None => return Ok(None),
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    if let Some((name, value)) = text.split_once(':')
                        && let (Ok(name), Ok(value)) = (
                            http::HeaderName::from_bytes(name.trim().as_bytes()),
                            http::HeaderValue::from_str(value.trim()),
                        )
                    {
                        self.trailers
                            .0
                            .lock()
                            .get_or_insert_with(HeaderMap::new)
                            .insert(name, value);
                    }
                }
                State::Done => return Ok(None),
            }
        }
    }
}

impl Body for AwsChunked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match this.step() {
                Err(e) => return Poll::Ready(Some(Err(e))),
                Ok(Some(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                Ok(None) => {}
            }
            if matches!(this.state, State::Done) {
                // Trailers are recorded even when the client sent none, so the reader can
                // tell "read to the end" from "not read".
                this.trailers.0.lock().get_or_insert_with(HeaderMap::new);
                return Poll::Ready(None);
            }
            if this.inner_done {
                return Poll::Ready(Some(Err("aws-chunked body ended early".into())));
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.inner_done = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        this.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tsumiki_ports::http::full_body;

    async fn decode(raw: &'static str) -> (Result<Bytes, BoxError>, Trailers) {
        let trailers = Trailers::default();
        let body = AwsChunked::new(full_body(raw), trailers.clone());
        let out = body.collect().await.map(|c| c.to_bytes());
        (out, trailers)
    }

    #[tokio::test]
    async fn signed_chunks_and_unsigned_trailers_decode() {
        let (out, _) = decode(
            "5;chunk-signature=ab\r\nhello\r\n6;chunk-signature=cd\r\n world\r\n0;chunk-signature=ef\r\n\r\n",
        )
        .await;
        assert_eq!(out.expect("decodes"), Bytes::from("hello world"));

        let (out, trailers) =
            decode("3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n").await;
        assert_eq!(out.expect("decodes"), Bytes::from("abc"));
        assert_eq!(
            trailers.get("x-amz-checksum-crc32").as_deref(),
            Some("NSRBwg==")
        );
    }

    #[tokio::test]
    async fn truncated_and_malformed_bodies_fail() {
        assert!(decode("5\r\nhel").await.0.is_err());
        assert!(decode("zz\r\nhello\r\n0\r\n\r\n").await.0.is_err());
        assert!(decode("5\r\nhelloXX0\r\n\r\n").await.0.is_err());
    }
}
