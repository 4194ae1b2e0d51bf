//! Reading SigV4 credentials from the `Authorization` header and presigned query strings.
//!
//! Only the credential scope is read (who, where, which service); verifying the signature is
//! a later step and will sit beside this parser, since both need the same canonical request.

/// The credential scope of a SigV4-signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/sqs/aws4_request, SignedHeaders=..., Signature=...`
pub fn from_authorization(header: &str) -> Option<Credential> {
    let rest = header.strip_prefix("AWS4-HMAC-SHA256")?;
    let scope = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    parse_scope(scope)
}

/// `X-Amz-Credential=AKID%2F20240101%2Fus-east-1%2Fs3%2Faws4_request` in a presigned URL.
pub fn from_query(query: &str) -> Option<Credential> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "X-Amz-Credential")
        .and_then(|(_, v)| parse_scope(&v))
}

fn parse_scope(scope: &str) -> Option<Credential> {
    let mut parts = scope.split('/');
    let access_key = parts.next()?.to_string();
    let date = parts.next()?.to_string();
    let region = parts.next()?.to_string();
    let service = parts.next()?.to_string();
    if access_key.is_empty() || region.is_empty() || service.is_empty() {
        return None;
    }
    Some(Credential {
        access_key,
        date,
        region,
        service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";
        assert_eq!(
            from_authorization(h),
            Some(Credential {
                access_key: "AKIDEXAMPLE".into(),
                date: "20150830".into(),
                region: "us-east-1".into(),
                service: "iam".into(),
            })
        );
        assert_eq!(from_authorization("Bearer x"), None);
        assert_eq!(from_authorization("AWS4-HMAC-SHA256 Credential=//"), None);
    }

    #[test]
    fn presigned() {
        let q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=123456789012%2F20240101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z";
        let c = from_query(q).expect("credential");
        assert_eq!(c.access_key, "123456789012");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.service, "s3");
    }
}
