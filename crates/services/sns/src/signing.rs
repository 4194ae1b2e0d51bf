//! Message signatures, as AWS signs what SNS posts to HTTP/HTTPS endpoints: the "string to
//! sign" (each signed member's name and value on their own lines, in AWS's order), hashed with
//! SHA1 (`SignatureVersion` 1) or SHA256 (2) and signed with RSA PKCS#1 v1.5; the certificate
//! holding the public key is served at the `SigningCertURL`.
//!
//! The key is tsumiki's own, fixed and published with the source (`signing/`): signatures let
//! subscribers run AWS's verification code unchanged against tsumiki, they prove nothing about
//! who sent a message. Real SNS validators also check that the certificate URL is AWS's, which
//! a local endpoint is not.

use std::sync::LazyLock;

use base64::Engine;
use rsa::pkcs8::DecodePrivateKey;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::Digest;

/// The signing certificate (PEM), served at the `SigningCertURL`.
pub const CERT_PEM: &str = include_str!("../signing/cert.pem");
/// The path the certificate is served at.
pub const CERT_PATH: &str = "/_aws/sns/SimpleNotificationService-tsumiki.pem";

static KEY: LazyLock<Option<RsaPrivateKey>> = LazyLock::new(|| {
    RsaPrivateKey::from_pkcs8_pem(include_str!("../signing/key.pem"))
        .map_err(|e| tracing::error!(error = %e, "The SNS signing key does not load."))
        .ok()
});

/// DER `DigestInfo` prefixes of PKCS#1 v1.5 signatures (RFC 8017, section 9.2, note 1).
const SHA1_PREFIX: &[u8] = &[
    0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
];
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// AWS's string to sign: `name\nvalue\n` for each member, in the order given.
pub fn string_to_sign(members: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (name, value) in members {
        out.push_str(name);
        out.push('\n');
        out.push_str(value);
        out.push('\n');
    }
    out
}

/// The base64 signature of `text` for `version` (`"2"`: SHA256, else SHA1); empty if the key
/// could not be loaded.
pub fn sign(version: &str, text: &str) -> String {
    let Some(key) = KEY.as_ref() else {
        return String::new();
    };
    let (hashed, prefix): (Vec<u8>, &[u8]) = if version == "2" {
        (
            sha2::Sha256::digest(text.as_bytes()).to_vec(),
            SHA256_PREFIX,
        )
    } else {
        (sha1::Sha1::digest(text.as_bytes()).to_vec(), SHA1_PREFIX)
    };
    let scheme = Pkcs1v15Sign {
        hash_len: Some(hashed.len()),
        prefix: prefix.into(),
    };
    match key.sign(scheme, &hashed) {
        Ok(sig) => base64::engine::general_purpose::STANDARD.encode(sig),
        Err(e) => {
            tracing::error!(error = %e, "SNS could not sign a message.");
            String::new()
        }
    }
}

/// Serves the signing certificate at [`CERT_PATH`] (GET), so subscribers can fetch the key
/// that verifies what they receive.
pub struct CertEndpoint;

#[async_trait::async_trait]
impl tsumiki_ports::http::HttpEndpoint for CertEndpoint {
    fn name(&self) -> &'static str {
        "sns-signing-cert"
    }

    fn claims(&self, head: &tsumiki_ports::http::RequestHead<'_>) -> tsumiki_ports::http::Claim {
        if head.parts.uri.path() == CERT_PATH {
            tsumiki_ports::http::Claim::Yes
        } else {
            tsumiki_ports::http::Claim::No
        }
    }

    async fn handle(
        &self,
        _ctx: tsumiki_core::RequestContext,
        req: http::Request<tsumiki_ports::http::HttpBody>,
    ) -> http::Response<tsumiki_ports::http::HttpBody> {
        let ok = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        let (status, body) = if ok {
            (200, CERT_PEM)
        } else {
            (405, "Method Not Allowed")
        };
        http::Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/x-pem-file")
            .body(tsumiki_ports::http::full_body(body))
            .expect("a static response builds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_to_sign_is_name_value_lines() {
        assert_eq!(
            string_to_sign(&[("Message", "hi"), ("Type", "Notification")]),
            "Message\nhi\nType\nNotification\n"
        );
    }

    #[test]
    fn signatures_verify_with_the_certificates_key() {
        use rsa::RsaPublicKey;
        let key = KEY.as_ref().expect("the key loads");
        let public = RsaPublicKey::from(key);
        for (version, prefix) in [("1", SHA1_PREFIX), ("2", SHA256_PREFIX)] {
            let sig = base64::engine::general_purpose::STANDARD
                .decode(sign(version, "Message\nx\n"))
                .unwrap();
            let hashed: Vec<u8> = if version == "2" {
                sha2::Sha256::digest(b"Message\nx\n").to_vec()
            } else {
                sha1::Sha1::digest(b"Message\nx\n").to_vec()
            };
            let scheme = Pkcs1v15Sign {
                hash_len: Some(hashed.len()),
                prefix: prefix.into(),
            };
            public.verify(scheme, &hashed, &sig).expect("verifies");
        }
    }
}
