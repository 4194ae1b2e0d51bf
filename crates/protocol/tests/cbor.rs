//! CBOR for awsJson services (Kinesis as the AWS SDK for Java speaks it): golden bytes for a
//! request and a response, round trips through the decoder and encoder, and errors.
//!
//! The golden request bytes are written out by hand from RFC 8949 (map, text and byte
//! strings, tag 1), so the decoder is checked against the standard, not against itself.

use http::{HeaderMap, HeaderValue, Method, Uri};
use serde_json::{Value, json};
use tsumiki_core::AwsError;
use tsumiki_protocol::{
    Model, Protocol, Request, decode_request, encode_error, encode_response, identify_operation,
};

fn kinesis() -> Model {
    // The vendored model the server loads (the golden cases use a trimmed copy).
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/kinesis.json");
    let text = std::fs::read_to_string(path).expect("the kinesis model");
    Model::from_json("kinesis", &text).expect("a model")
}

fn headers(target: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "x-amz-target",
        HeaderValue::from_str(target).expect("ascii"),
    );
    h.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-cbor-1.1"),
    );
    h
}

fn decode(model: &Model, target: &str, body: &[u8]) -> Result<Value, AwsError> {
    let (method, uri, headers) = (Method::POST, Uri::from_static("/"), headers(target));
    let req = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body,
    };
    let protocol = Protocol::Json.for_request(&req);
    assert_eq!(protocol, Protocol::JsonCbor);
    let op = identify_operation(model, protocol, &req)?;
    decode_request(model, protocol, op, &req)
}

/// A CBOR text string of fewer than 24 bytes.
fn text(s: &str) -> Vec<u8> {
    let mut out = vec![0x60 + s.len() as u8];
    out.extend_from_slice(s.as_bytes());
    out
}

#[test]
fn put_record_decodes_from_hand_written_cbor() {
    // {"StreamName": "s1", "Data": h'010203', "PartitionKey": "pk"}
    let mut body = vec![0xa3];
    body.extend(text("StreamName"));
    body.extend(text("s1"));
    body.extend(text("Data"));
    body.extend([0x43, 1, 2, 3]);
    body.extend(text("PartitionKey"));
    body.extend(text("pk"));
    let v = decode(&kinesis(), "Kinesis_20131202.PutRecord", &body).expect("decoded");
    assert_eq!(
        v,
        json!({"StreamName": "s1", "Data": "AQID", "PartitionKey": "pk"})
    );
}

#[test]
fn timestamps_are_tag_one_epoch_seconds_and_half_floats_read() {
    // {"StreamName": "s", "ShardId": "x", "ShardIteratorType": "AT_TIMESTAMP",
    //  "Timestamp": 1(1700000000)} then the same with a float and an indefinite-length map.
    let mut body = vec![0xa4];
    body.extend(text("StreamName"));
    body.extend(text("s"));
    body.extend(text("ShardId"));
    body.extend(text("x"));
    body.extend(text("ShardIteratorType"));
    body.extend(text("AT_TIMESTAMP"));
    body.extend(text("Timestamp"));
    body.extend([0xc1, 0x1a]);
    body.extend(1_700_000_000u32.to_be_bytes());
    let v = decode(&kinesis(), "Kinesis_20131202.GetShardIterator", &body).expect("decoded");
    assert_eq!(v["Timestamp"], json!(1_700_000_000));

    let mut body = vec![0xbf];
    body.extend(text("StreamName"));
    body.extend(text("s"));
    body.extend(text("MaxResults"));
    body.extend([0xf9, 0x3c, 0x00]); // half float 1.0
    body.push(0xff);
    let v = decode(&kinesis(), "Kinesis_20131202.ListShards", &body).expect("decoded");
    assert_eq!(v, json!({"StreamName": "s", "MaxResults": 1}));
}

#[test]
fn malformed_and_mistyped_bodies_are_serialization_errors() {
    let model = kinesis();
    let e = decode(&model, "Kinesis_20131202.PutRecord", &[0xa1, 0x61]).expect_err("short");
    assert_eq!(e.code, "SerializationException");
    let e = decode(&model, "Kinesis_20131202.PutRecord", &[0x01]).expect_err("not a map");
    assert_eq!(e.code, "SerializationException");
    // Data as a number instead of bytes.
    let mut body = vec![0xa1];
    body.extend(text("Data"));
    body.push(0x05);
    let e = decode(&model, "Kinesis_20131202.PutRecord", &body).expect_err("wrong type");
    assert_eq!(e.code, "SerializationException");
    // A CBOR request with every member missing fails validation as JSON would.
    let e = decode(&model, "Kinesis_20131202.PutRecord", &[0xa0]).expect_err("required");
    assert_eq!(e.status, 400);
}

#[test]
fn get_records_output_encodes_blobs_as_bytes_and_timestamps_as_tag_one() {
    let model = kinesis();
    let op = model.operation("GetRecords").expect("GetRecords");
    let output = json!({
        "Records": [{
            "SequenceNumber": "49",
            "ApproximateArrivalTimestamp": 1.5,
            "Data": "AQID",
            "PartitionKey": "pk",
        }],
        "NextShardIterator": "it",
        "MillisBehindLatest": 0,
    });
    let resp = encode_response(&model, Protocol::JsonCbor, op, &output, "rid");
    assert_eq!(resp.headers()["content-type"], "application/x-amz-cbor-1.1");
    let body = resp.body().to_vec();
    // The record's data is the byte string h'010203', its timestamp tag 1 over a double.
    assert!(body.windows(4).any(|w| w == [0x43, 1, 2, 3]));
    let mut tagged = vec![0xc1, 0xfb];
    tagged.extend(1.5f64.to_be_bytes());
    assert!(body.windows(tagged.len()).any(|w| w == tagged.as_slice()));
    // And it decodes back to the same value.
    let back = tsumiki_protocol::cbor::to_json(&body).expect("CBOR");
    assert_eq!(back, output);
}

#[test]
fn errors_are_cbor_maps_with_type_and_message() {
    let err = AwsError::new("ResourceNotFoundException", 400, "Stream s not found.");
    let resp = encode_error(Some(&kinesis()), Protocol::JsonCbor, &err, "rid");
    assert_eq!(resp.status(), 400);
    let body = tsumiki_protocol::cbor::to_json(resp.body()).expect("CBOR");
    assert_eq!(
        body,
        json!({"__type": "ResourceNotFoundException", "message": "Stream s not found."})
    );
}

#[test]
fn json_requests_stay_json() {
    let (method, uri) = (Method::POST, Uri::from_static("/"));
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    let req = Request {
        method: &method,
        uri: &uri,
        headers: &headers,
        body: b"{}",
    };
    assert_eq!(Protocol::Json.for_request(&req), Protocol::Json);
    assert_eq!(Protocol::Query.for_request(&req), Protocol::Query);
}

proptest::proptest! {
    /// Any bytes: an answer or a SerializationException, never a panic.
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
        let _ = tsumiki_protocol::cbor::to_json(&body);
    }

    /// Nested arrays deeper than any model are refused, not followed to a stack overflow.
    #[test]
    fn deep_nesting_is_refused(depth in 65usize..5000) {
        let mut body = vec![0x81; depth];
        body.push(0x00);
        proptest::prop_assert!(tsumiki_protocol::cbor::to_json(&body).is_err());
    }
}
