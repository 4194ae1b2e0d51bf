"""Malformed and hostile input gets a client error, never a server error, and never takes
the server down."""

import json
import uuid

import pytest
import requests

from sqs_util import query

JSON = "application/x-amz-json-1.0"
AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sqs/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def post_json(server, target, body, content_type=JSON, extra_headers=None):
    headers = {"Content-Type": content_type, "Authorization": AUTH, "X-Amz-Date": "20250101T000000Z"}
    if target is not None:
        headers["X-Amz-Target"] = target
    headers.update(extra_headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(server.endpoint + "/", data=data, headers=headers, timeout=30)


def assert_client_error(resp):
    assert 400 <= resp.status_code < 500, f"{resp.status_code}: {resp.text[:300]}"


@pytest.fixture
def queue_url(sqs):
    return sqs.create_queue(QueueName=f"bad-{uuid.uuid4().hex[:10]}")["QueueUrl"]


@pytest.fixture(autouse=True)
def still_alive(server):
    yield
    assert server.health()["status"] == "running"


@pytest.mark.parametrize("body", [
    b"{not json",
    b"",
    b"[]",
    b"null",
    b"\"a string\"",
    b"\xff\xfe\x00garbage",
    b"{\"QueueName\": \"x\"",
    b"[" * 100_000 + b"]" * 100_000,
])
def test_malformed_json_bodies(server, body):
    resp = post_json(server, "AmazonSQS.CreateQueue", body)
    assert_client_error(resp)
    assert "__type" in resp.json()


def test_malformed_json_error_shape(server):
    resp = post_json(server, "AmazonSQS.ListQueues", b"{oops")
    assert resp.status_code == 400
    assert resp.headers["Content-Type"].startswith("application/x-amz-json")
    assert "SerializationException" in resp.json()["__type"] or "Malformed" in resp.text


@pytest.mark.parametrize("body", [
    {"QueueName": 12345},
    {"QueueName": ["a", "b"]},
    {"QueueName": None},
    {"QueueName": "ok", "Attributes": "not a map"},
    {"QueueName": "ok", "Attributes": {"VisibilityTimeout": 30}},
    {"QueueName": "ok", "tags": [1, 2, 3]},
    {},
])
def test_wrong_types_and_missing_members(server, body):
    assert_client_error(post_json(server, "AmazonSQS.CreateQueue", body))


@pytest.mark.parametrize("target,body", [
    ("AmazonSQS.ReceiveMessage", {"QueueUrl": "QURL", "MaxNumberOfMessages": "ten"}),
    ("AmazonSQS.ReceiveMessage", {"QueueUrl": "QURL", "MaxNumberOfMessages": 1e300}),
    ("AmazonSQS.ReceiveMessage", {"QueueUrl": "QURL", "WaitTimeSeconds": -5}),
    ("AmazonSQS.ReceiveMessage", {"QueueUrl": "QURL", "MaxNumberOfMessages": 2 ** 80}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "QURL"}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "QURL", "MessageBody": "x", "DelaySeconds": "soon"}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "QURL", "MessageBody": "x",
                               "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": "!!not base64!!"}}}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "QURL", "MessageBody": "x", "MessageAttributes": {"a": "flat"}}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "QURL", "MessageBody": "x", "MessageAttributes": {"a": {}}}),
    ("AmazonSQS.SendMessageBatch", {"QueueUrl": "QURL", "Entries": "nope"}),
    ("AmazonSQS.SendMessageBatch", {"QueueUrl": "QURL", "Entries": [{"Id": "a"}]}),
    ("AmazonSQS.SendMessageBatch", {"QueueUrl": "QURL", "Entries": [None]}),
    ("AmazonSQS.DeleteMessage", {"QueueUrl": "QURL", "ReceiptHandle": ""}),
    ("AmazonSQS.DeleteMessage", {"QueueUrl": "QURL", "ReceiptHandle": "\u0000\u0001"}),
    ("AmazonSQS.DeleteMessage", {"QueueUrl": "QURL", "ReceiptHandle": "A" * 100_000}),
    ("AmazonSQS.DeleteMessageBatch", {"QueueUrl": "QURL", "Entries": [{"Id": "a", "ReceiptHandle": 7}]}),
    ("AmazonSQS.ChangeMessageVisibility", {"QueueUrl": "QURL", "ReceiptHandle": "zz"}),
    ("AmazonSQS.GetQueueAttributes", {"QueueUrl": "QURL", "AttributeNames": "All"}),
    ("AmazonSQS.StartMessageMoveTask", {"SourceArn": "not an arn"}),
    ("AmazonSQS.CancelMessageMoveTask", {"TaskHandle": "%%%"}),
    ("AmazonSQS.ListQueues", {"NextToken": "!!!not-a-token!!!"}),
    ("AmazonSQS.ListQueues", {"MaxResults": 0}),
    ("AmazonSQS.GetQueueUrl", {"QueueName": "x" * 10_000}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "", "MessageBody": "x"}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "http://", "MessageBody": "x"}),
    ("AmazonSQS.SendMessage", {"QueueUrl": "/" * 50, "MessageBody": "x"}),
])
def test_bad_parameters(server, queue_url, target, body):
    body = json.loads(json.dumps(body).replace("QURL", queue_url))
    assert_client_error(post_json(server, target, body))


@pytest.mark.parametrize("target", [
    "AmazonSQS.Frobnicate",
    "AmazonSQS.",
    "AmazonSQS",
    "NotAService.ListQueues",
    "",
])
def test_unknown_operations_over_json(server, target):
    assert_client_error(post_json(server, target, {}))


def test_json_without_target(server):
    assert_client_error(post_json(server, None, {}))


def test_unknown_action_over_query_unsigned(server):
    """No credential scope names SQS: still the client's mistake, not a server fault."""
    assert_client_error(query(server.endpoint, "Frobnicate", auth=False).http)


@pytest.mark.parametrize("params", [
    {"QueueName": "%%%"},
    {"QueueName": "q", "Attribute.1.Name": "VisibilityTimeout"},
    {"QueueName": "q", "Attribute.x.Name": "VisibilityTimeout", "Attribute.x.Value": "1"},
    {"QueueName": "q", "Attribute.99999999999999999999.Name": "DelaySeconds"},
    {"QueueName": "q", "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "forever"},
])
def test_odd_query_parameters(server, params):
    r = query(server.endpoint, "CreateQueue", params)
    assert r.status < 500, r.text


def test_raw_garbage_query_body(server):
    resp = requests.post(server.endpoint + "/", data=b"Action=SendMessage&%zz%&&==&QueueUrl",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert_client_error(resp)


def test_oversized_request_body(server, queue_url):
    body = {"QueueUrl": queue_url, "MessageBody": "x" * (3 * 1024 * 1024)}
    assert_client_error(post_json(server, "AmazonSQS.SendMessage", body))


def test_oversized_batch_entries(server, queue_url):
    body = {"QueueUrl": queue_url,
            "Entries": [{"Id": f"e{i}", "MessageBody": "x" * 300_000} for i in range(5)]}
    assert_client_error(post_json(server, "AmazonSQS.SendMessageBatch", body))


def test_unknown_paths_and_methods(server):
    for method, path in (("GET", "/nothing/here"), ("DELETE", "/"), ("PUT", "/123456789012/q"),
                         ("GET", "/_tsumiki/nope"), ("PATCH", "/")):
        resp = requests.request(method, server.endpoint + path, timeout=10)
        assert resp.status_code < 500, f"{method} {path}: {resp.status_code} {resp.text[:200]}"
