//! S3 through the AWS SDK for Rust: its default flexible checksums (CRC32 on every upload,
//! validated on download) and an explicit CRC32C, aws-chunked streaming uploads, a multipart
//! upload, listing with a delimiter, and a presigned GET fetched over plain HTTP.

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use tsumiki_testkit::Server;

use crate::in_memory;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn client(server: &Server) -> Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(&server.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "e2e"))
        .force_path_style(true)
        .build();
    Client::from_conf(config)
}

async fn body(out: aws_sdk_s3::operation::get_object::GetObjectOutput) -> Vec<u8> {
    out.body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec()
}

#[test]
fn checksums_streaming_uploads_and_listing() {
    let server = in_memory();
    let s3 = client(&server);
    rt().block_on(async {
        s3.create_bucket()
            .bucket("sdk")
            .send()
            .await
            .expect("bucket");

        // CRC32C of "123456789" is the check value 0xE3069283.
        let put = s3
            .put_object()
            .bucket("sdk")
            .key("check")
            .body(ByteStream::from_static(b"123456789"))
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .send()
            .await
            .expect("put with CRC32C");
        assert_eq!(put.checksum_crc32_c(), Some("4waSgw=="));
        let got = s3
            .get_object()
            .bucket("sdk")
            .key("check")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get with checksum mode");
        assert_eq!(got.checksum_crc32_c(), Some("4waSgw=="));
        assert_eq!(body(got).await, b"123456789");

        // With no algorithm named, the SDK sends CRC32 in an aws-chunked trailer; a 1 MiB body
        // from a stream takes that path.
        let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let path = tsumiki_testkit::temp_dir("s3-sdk").join("big.bin");
        std::fs::write(&path, &big).expect("write the file");
        let put = s3
            .put_object()
            .bucket("sdk")
            .key("dir/big.bin")
            .body(ByteStream::from_path(&path).await.expect("file stream"))
            .send()
            .await
            .expect("streamed put");
        assert!(put.checksum_crc32().is_some(), "{put:?}");
        let got = s3
            .get_object()
            .bucket("sdk")
            .key("dir/big.bin")
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
            .expect("get big");
        assert_eq!(got.checksum_crc32(), put.checksum_crc32());
        assert_eq!(body(got).await, big);

        // A range read.
        let got = s3
            .get_object()
            .bucket("sdk")
            .key("dir/big.bin")
            .range("bytes=1000-1009")
            .send()
            .await
            .expect("range");
        assert_eq!(got.content_range(), Some("bytes 1000-1009/1048576"));
        assert_eq!(body(got).await, &big[1000..1010]);

        // A wrong checksum is refused and stores nothing.
        let err = s3
            .put_object()
            .bucket("sdk")
            .key("bad")
            .body(ByteStream::from_static(b"abc"))
            .checksum_sha256("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .send()
            .await
            .expect_err("bad checksum");
        assert_eq!(err.code(), Some("BadDigest"), "{err:?}");
        let err = s3
            .head_object()
            .bucket("sdk")
            .key("bad")
            .send()
            .await
            .expect_err("not stored");
        assert!(err.as_service_error().is_some_and(|e| e.is_not_found()));

        for key in ["dir/a", "dir/b", "dir/sub/c", "top"] {
            s3.put_object()
                .bucket("sdk")
                .key(key)
                .body(ByteStream::from_static(b"x"))
                .send()
                .await
                .expect("put");
        }
        let listed = s3
            .list_objects_v2()
            .bucket("sdk")
            .prefix("dir/")
            .delimiter("/")
            .max_keys(2)
            .into_paginator()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .expect("list");
        assert!(listed.len() >= 2, "max-keys 2 pages the listing");
        let keys: Vec<String> = listed
            .iter()
            .flat_map(|p| p.contents())
            .filter_map(|o| o.key().map(String::from))
            .collect();
        let prefixes: Vec<String> = listed
            .iter()
            .flat_map(|p| p.common_prefixes())
            .filter_map(|p| p.prefix().map(String::from))
            .collect();
        assert_eq!(keys, ["dir/a", "dir/b", "dir/big.bin"]);
        assert_eq!(prefixes, ["dir/sub/"]);
    });
}

#[test]
fn multipart_upload_and_presigned_get() {
    let server = in_memory();
    let s3 = client(&server);
    rt().block_on(async {
        s3.create_bucket()
            .bucket("mpart")
            .send()
            .await
            .expect("bucket");
        let upload = s3
            .create_multipart_upload()
            .bucket("mpart")
            .key("large")
            .content_type("application/octet-stream")
            .send()
            .await
            .expect("create upload");
        let id = upload.upload_id().expect("upload id");
        // Every part but the last must be at least 5 MiB.
        let parts: Vec<Vec<u8>> = vec![vec![b'a'; 5 << 20], b"tail".to_vec()];
        let mut done = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let n = i as i32 + 1;
            let out = s3
                .upload_part()
                .bucket("mpart")
                .key("large")
                .upload_id(id)
                .part_number(n)
                .body(ByteStream::from(part.clone()))
                .send()
                .await
                .expect("upload part");
            done.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag().expect("part etag"))
                    .set_checksum_crc32(out.checksum_crc32().map(String::from))
                    .build(),
            );
        }
        let listed = s3
            .list_parts()
            .bucket("mpart")
            .key("large")
            .upload_id(id)
            .send()
            .await
            .expect("list parts");
        assert_eq!(listed.parts().len(), 2);
        let complete = s3
            .complete_multipart_upload()
            .bucket("mpart")
            .key("large")
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(done))
                    .build(),
            )
            .send()
            .await
            .expect("complete");
        // A multipart ETag is the MD5 of the parts' MD5s, then "-" and the part count.
        assert!(
            complete.e_tag().is_some_and(|e| e.ends_with("-2\"")),
            "{complete:?}"
        );
        let head = s3
            .head_object()
            .bucket("mpart")
            .key("large")
            .send()
            .await
            .expect("head");
        assert_eq!(head.content_length(), Some((5 << 20) + 4));

        let presigned = s3
            .get_object()
            .bucket("mpart")
            .key("large")
            .range("bytes=-4")
            .presigned(
                PresigningConfig::expires_in(std::time::Duration::from_secs(300))
                    .expect("presigning config"),
            )
            .await
            .expect("presign");
        let uri = presigned.uri();
        let after_scheme = uri.split_once("://").map_or(uri, |(_, rest)| rest);
        let path = &after_scheme[after_scheme.find('/').expect("a path")..];
        let headers: Vec<(&str, &str)> = presigned.headers().collect();
        let (status, text) = server.http("GET", path, &headers, b"");
        assert_eq!((status, text.as_str()), (206, "tail"));
    });
}
