//! Browser form POSTs (PostObject), prepared for s3s. tsumiki accepts any signature, as it does
//! for signed headers and presigned URLs, but s3s checks a form's signature fields against a
//! secret key it would have to know. So the signature fields are dropped before s3s reads the
//! form; the policy stays, and s3s still enforces its expiry and conditions. s3s also leaves a
//! key's `${filename}` as it is; S3 puts the uploaded file's name there, and so does this pass.
//!
//! S3 requires the `file` field to be the form's last, so only the fields before it are
//! buffered; the file streams through untouched.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, BodyStream, StreamBody};
use tsumiki_ports::http::HttpBody;

/// Fields before the file above this size are passed on as they are (s3s refuses them).
const MAX_FIELDS: usize = 1 << 20;

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// A parameter (`name`, `filename`) of a part's `Content-Disposition`.
fn disposition(headers: &[u8], param: &str) -> Option<String> {
    let text = String::from_utf8_lossy(headers);
    text.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))?
        .split(';')
        .find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case(param)
                .then(|| v.trim().trim_matches('"').to_string())
        })
}

fn part_name(headers: &[u8]) -> Option<String> {
    disposition(headers, "name").map(|n| n.to_ascii_lowercase())
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Where the `file` part's delimiter starts, once its headers are buffered, and the file's
/// name.
fn file_part_start(buf: &[u8], delimiter: &[u8]) -> Option<(usize, String)> {
    let mut at = 0;
    while let Some(d) = find(buf, delimiter, at) {
        let headers_start = d + delimiter.len();
        let headers_end = find(buf, b"\r\n\r\n", headers_start)?;
        let headers = &buf[headers_start..headers_end];
        if part_name(headers).as_deref() == Some("file") {
            // Browsers send a bare name; some old ones sent a whole path.
            let name = disposition(headers, "filename").unwrap_or_default();
            let name = name.rsplit(['/', '\\']).next().unwrap_or("").to_string();
            return Some((d, name));
        }
        at = headers_end;
    }
    None
}

/// The fields before the file without `signature` and `x-amz-signature`, and with the file's
/// name in the key.
fn prepare_fields(fields: &[u8], delimiter: &[u8], file_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.len());
    let mut starts = Vec::new();
    let mut at = 0;
    while let Some(d) = find(fields, delimiter, at) {
        starts.push(d);
        at = d + delimiter.len();
    }
    let Some(&first) = starts.first() else {
        return fields.to_vec();
    };
    out.extend_from_slice(&fields[..first]);
    for (i, &s) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(fields.len());
        let part = &fields[s..end];
        let body_start = s + delimiter.len();
        let name = find(fields, b"\r\n\r\n", body_start)
            .filter(|&e| e < end)
            .and_then(|e| part_name(&fields[body_start..e]));
        match name.as_deref() {
            Some("signature" | "x-amz-signature") => {}
            Some("key") if find(part, b"${filename}", 0).is_some() => {
                let text = String::from_utf8_lossy(part).replace("${filename}", file_name);
                out.extend_from_slice(text.as_bytes());
            }
            _ => out.extend_from_slice(part),
        }
    }
    out
}

/// The form prepared for s3s; the file part and all after it stream on.
pub(crate) async fn prepare(body: HttpBody, boundary: &str) -> HttpBody {
    let delimiter = format!("--{boundary}").into_bytes();
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut split = None;
    while buf.len() <= MAX_FIELDS {
        if let Some(found) = file_part_start(&buf, &delimiter) {
            split = Some(found);
            break;
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            // A broken or short body: let s3s say what is wrong with it.
            Some(Err(_)) | None => break,
        }
    }
    let buf = buf.freeze();
    let head = match split {
        Some((at, file_name)) => {
            let mut head = prepare_fields(&buf[..at], &delimiter, &file_name);
            head.extend_from_slice(&buf[at..]);
            Bytes::from(head)
        }
        None => buf,
    };
    let rest = BodyStream::new(body);
    let stream = futures_util::stream::once(async move {
        Ok::<_, tsumiki_ports::http::BoxError>(http_body::Frame::data(head))
    })
    .chain(rest);
    StreamBody::new(stream).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsumiki_ports::http::full_body;

    fn form(fields: &[(&str, &str)], file: &str) -> Vec<u8> {
        let mut out = String::new();
        for (k, v) in fields {
            out += &format!("--XyZ\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n");
        }
        out += &format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\n{file}\r\n--XyZ--\r\n"
        );
        out.into_bytes()
    }

    #[test]
    fn boundaries_come_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(
            boundary("Multipart/Form-Data;boundary=x").as_deref(),
            Some("x")
        );
        assert_eq!(boundary("text/plain; boundary=x"), None);
    }

    #[tokio::test]
    async fn signature_fields_go_the_file_name_fills_the_key_the_rest_stays() {
        let input = form(
            &[
                ("key", "up/${filename}"),
                ("X-Amz-Signature", "abc"),
                ("policy", "cG9s"),
                ("signature", "def"),
            ],
            "the file body",
        );
        let out = prepare(full_body(input), "XyZ")
            .await
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(
            out.as_ref(),
            form(&[("key", "up/a.txt"), ("policy", "cG9s")], "the file body").as_slice()
        );
    }

    #[tokio::test]
    async fn a_form_without_a_file_passes_unchanged() {
        let input =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"signature\"\r\n\r\nv\r\n--XyZ--\r\n";
        let out = prepare(full_body(input.to_vec()), "XyZ")
            .await
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(out.as_ref(), input);
    }
}
