#!/usr/bin/env python3
"""Golden cases for tsumiki-protocol, made with botocore so the client side is ground truth.

    python3 tools/protocol/gen_golden.py                  # 1. models and case files
    UPDATE_GOLDEN=1 cargo test -p tsumiki-protocol --test golden   # 2. Rust writes responses
    python3 tools/protocol/gen_golden.py --check          # 3. botocore reads them back

Step 1 writes small models under crates/protocol/test_data/models/ (botocore models cut down
to a few operations and the shapes they reach, documentation stripped) and one JSON file per
case under crates/protocol/test_data/<protocol>/. A case holds the HTTP request botocore's own
serializer produces for sample parameters, the value tsumiki must decode it into (the same
parameters, blobs as base64 and timestamps as epoch seconds), an output value, and the
response tsumiki encodes for it. Responses already in a case file are kept, so regenerating
does not discard blessed output; the Rust test fails if they no longer match.

Step 2 (the golden test in crates/protocol/tests/golden.rs) decodes every request and compares
with the expected value, then encodes every output and error and compares with the stored
response, or stores it when UPDATE_GOLDEN=1.

Step 3 parses every stored response with botocore's response parser and checks that a real
client reads back exactly the output value (or error code and message) the case started from.

Case kinds: "ok" (request, decoded value, output, response), "error" (an error shape encoded
for an operation), "bad_request" (a request tsumiki must refuse with a 4xx error).
"""
import argparse
import base64
import datetime
import gzip
import io
import json
import math
import os
import sys
from urllib.parse import urlsplit

import botocore
from botocore import parsers, serialize
from botocore.awsrequest import HeadersDict, create_request_object, prepare_request_dict
from botocore.model import ServiceModel
from botocore.response import StreamingBody

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_DATA = os.path.join(ROOT, "crates", "protocol", "test_data")
BOTOCORE_DATA = os.path.join(os.path.dirname(botocore.__file__), "data")
DROP = {"documentation", "documentationUrl", "examples", "deprecatedMessage"}

# Test models: service -> operations kept. Everything the operations reach comes along.
SUBSETS = {
    "lambda": [
        "Invoke", "CreateFunction", "GetFunction", "ListFunctions", "DeleteFunction", "ListTags",
        "TagResource", "UntagResource", "CreateEventSourceMapping", "ListDurableExecutionsByFunction",
    ],
    "apigateway": ["GetExport", "GetRestApis", "CreateRestApi"],
    "iot-data": ["Publish", "GetRetainedMessage"],
    "s3": [
        "ListBuckets", "CreateBucket", "DeleteBucket", "PutObject", "GetObject", "HeadObject",
        "DeleteObject", "CopyObject", "UploadPart", "ListParts", "ListObjects", "ListObjectsV2",
        "PutBucketTagging", "GetBucketTagging", "DeleteObjects", "GetBucketAcl", "PutBucketAcl",
        "GetBucketPolicy", "PutBucketPolicy", "GetObjectTagging", "CompleteMultipartUpload",
    ],
    "s3control": ["CreateJob"],
    "route53": ["ChangeTagsForResource", "ListTagsForResource", "GetHostedZone"],
    "dynamodb": ["PutItem", "GetItem", "Query", "DescribeTable"],
    "kinesis": ["PutRecord", "PutRecords", "GetRecords", "DescribeStreamSummary"],
    "sns": ["Publish", "CreateTopic", "GetTopicAttributes", "ListTopics", "Subscribe"],
}

# The served SQS model (json + query, with the awsQuery overlay) lives at the repo root.
SQS = "../../../models/sqs.json"

REQUEST_ID = "f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
ENDPOINT = "https://aws.example"


def utc(*args):
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc)


def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k not in DROP}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node


def load_botocore(service):
    base = os.path.join(BOTOCORE_DATA, service)
    version = sorted(v for v in os.listdir(base) if os.path.isdir(os.path.join(base, v)))[-1]
    with gzip.open(os.path.join(base, version, "service-2.json.gz")) as f:
        return json.load(f)


def subset(service, operations):
    model = load_botocore(service)
    shapes = model["shapes"]
    keep, stack = set(), []
    for name in operations:
        op = model["operations"][name]
        for ref in [op.get("input"), op.get("output")] + op.get("errors", []):
            if ref:
                stack.append(ref["shape"])
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        shape = shapes[name]
        refs = list(shape.get("members", {}).values())
        refs += [shape[k] for k in ("member", "key", "value") if k in shape]
        stack.extend(r["shape"] for r in refs)
    out = {
        "version": model.get("version", "2.0"),
        "metadata": dict(model["metadata"], botocoreVersion=botocore.__version__),
        "operations": {name: model["operations"][name] for name in operations},
        "shapes": {name: shapes[name] for name in sorted(keep)},
    }
    return strip(out)


def write_models():
    os.makedirs(os.path.join(TEST_DATA, "models"), exist_ok=True)
    for service, operations in SUBSETS.items():
        path = os.path.join(TEST_DATA, "models", service + ".json")
        with open(path, "w") as f:
            json.dump(subset(service, operations), f, indent=1)
            f.write("\n")


_models = {}


def service_model(ref, protocol=None):
    """The botocore ServiceModel behind a model reference (`models/x.json` or `botocore:x`).

    For awsQuery, output references without a `resultWrapper` get `<Operation>Result`: the
    served SQS model comes from the json model and lost the wrappers its query model had, and
    without them botocore looks for the members directly under `<Operation>Response`."""
    key = (ref, protocol)
    if key not in _models:
        if ref.startswith("botocore:"):
            data = load_botocore(ref.split(":", 1)[1])
        else:
            with open(os.path.join(TEST_DATA, ref)) as f:
                data = json.load(f)
        if protocol == "query":
            for name, op in data["operations"].items():
                if "output" in op:
                    op["output"].setdefault("resultWrapper", name + "Result")
        _models[key] = ServiceModel(data)
    return _models[key]


def to_value(x):
    """Python client values to tsumiki's value form: blobs base64, timestamps epoch seconds."""
    if isinstance(x, dict):
        return {k: to_value(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_value(v) for v in x]
    if isinstance(x, (bytes, bytearray)):
        return base64.b64encode(bytes(x)).decode()
    if isinstance(x, datetime.datetime):
        if x.tzinfo is None:
            x = x.replace(tzinfo=datetime.timezone.utc)
        return x.timestamp()
    if isinstance(x, StreamingBody):
        return to_value(x.read())
    return x


def wire_request(model, operation, params, protocol):
    """The HTTP request botocore sends for `params`, as a case records it."""
    op_model = model.operation_model(operation)
    serializer = serialize.create_serializer(protocol, include_validation=True)
    request = serializer.serialize_to_request(params, op_model)
    prepare_request_dict(request, endpoint_url=ENDPOINT)
    prepared = create_request_object(request).prepare()
    url = urlsplit(prepared.url)
    uri = url.path + ("?" + url.query if url.query else "")
    # Content-Length is the transport's; the body below is the whole body.
    headers = {k: v for k, v in prepared.headers.items() if k.lower() != "content-length"}
    out = {"method": prepared.method, "uri": uri, "headers": headers}
    out.update(body_fields(prepared.body))
    return out


def body_fields(body):
    if body is None:
        body = b""
    if isinstance(body, str):
        body = body.encode()
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(body).decode()}


def body_bytes(fields):
    if "body_base64" in fields:
        return base64.b64decode(fields["body_base64"])
    return fields.get("body", "").encode("utf-8")


CASES = []


def ok(protocol, model, operation, name, params, output=None, *, client=None, decoded=None, parsed=None, note=""):
    """A request botocore makes for `params`, decoded to `decoded` (by default `params`), and an
    `output` encoded into a response that botocore parses back to `parsed` (default `output`)."""
    CASES.append(dict(kind="ok", protocol=protocol, model=model, client=client or model, operation=operation,
                      name=name, params=params, output=output if output is not None else {},
                      decoded=decoded, parsed=parsed, note=note))


def error(protocol, model, operation, name, *, shape=None, code=None, status=None, message, extra=None,
          client=None, note=""):
    """An error (a model error shape, or a bare code and status) encoded for `operation`."""
    CASES.append(dict(kind="error", protocol=protocol, model=model, client=client or model, operation=operation,
                      name=name, shape=shape, code=code, status=status, message=message, extra=extra, note=note))


def bad(protocol, model, name, *, request=None, base=None, change=None, expect_code, expect_status=400,
        client=None, note="", known_gap=None):
    """A request tsumiki must refuse: written out, or botocore's request for `base`
    (operation, params) with `change` applied to it. `known_gap` marks a case tsumiki does not
    pass yet: the Rust test reports it, and fails once it passes so the mark is removed."""
    CASES.append(dict(kind="bad_request", protocol=protocol, model=model, client=client or model, name=name,
                      request=request, base=base, change=change, expect_code=expect_code,
                      expect_status=expect_status, note=note, known_gap=known_gap))


def error_code(model, shape_name):
    shape = model.shape_for(shape_name)
    return shape.metadata.get("error", {}).get("code") or shape_name


def error_status(model, shape_name):
    return model.shape_for(shape_name).metadata.get("error", {}).get("httpStatusCode", 400)


def build(case):
    protocol, client = case["protocol"], service_model(case["client"])
    wire_protocol = "json" if protocol == "json" else protocol
    out = {"kind": case["kind"], "description": case["note"], "model": case["model"], "protocol": protocol}
    if case["client"] != case["model"]:
        out["client_model"] = case["client"]
    if case["kind"] == "ok":
        out["operation"] = case["operation"]
        out["request"] = wire_request(client, case["operation"], case["params"], wire_protocol)
        decoded = case["decoded"] if case["decoded"] is not None else case["params"]
        out["decoded"] = to_value(decoded)
        out["output"] = to_value(case["output"])
        if case["parsed"] is not None:
            out["parsed"] = to_value(case["parsed"])
    elif case["kind"] == "error":
        out["operation"] = case["operation"]
        err = {"message": case["message"]}
        if case["shape"]:
            err["shape"] = case["shape"]
            # Codes and statuses come from the model tsumiki serves: for SQS over json that is
            # the awsQuery code of the overlay, which clients read from x-amzn-query-error.
            served = service_model(case["model"])
            code, status = error_code(served, case["shape"]), error_status(served, case["shape"])
        else:
            err["code"], err["status"] = case["code"], case["status"]
            code, status = case["code"], case["status"]
        if case["extra"]:
            err["extra"] = to_value(case["extra"])
        out["error"] = err
        out["expect"] = {"code": code, "status": status, "message": case["message"]}
    else:
        if case["request"] is not None:
            request = dict(case["request"])
            request.setdefault("headers", {})
            request.setdefault("body", "")
        else:
            operation, params = case["base"]
            out["operation"] = operation
            request = wire_request(client, operation, params, wire_protocol)
        if case["change"]:
            request = case["change"](request)
        out["request"] = request
        out["expect"] = {"code": case["expect_code"], "status": case["expect_status"]}
        if case["known_gap"]:
            out["known_gap"] = case["known_gap"]
    return out


def case_path(case):
    return os.path.join(TEST_DATA, case["protocol"], case["name"] + ".json")


def dump(value):
    # serde_json's pretty printer writes the same text, so the Rust test can rewrite these
    # files when blessing without reformatting them.
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate():
    write_models()
    names = set()
    written = set()
    for case in CASES:
        key = (case["protocol"], case["name"])
        if key in names:
            sys.exit(f"duplicate case {key}")
        names.add(key)
        out = build(case)
        path = case_path(case)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            with open(path) as f:
                old = json.load(f)
            if "response" in old:
                out["response"] = old["response"]
        with open(path, "w") as f:
            f.write(dump(out))
        written.add(os.path.abspath(path))
    for protocol in ("json", "query", "rest-json", "rest-xml"):
        folder = os.path.join(TEST_DATA, protocol)
        for name in os.listdir(folder):
            path = os.path.abspath(os.path.join(folder, name))
            if name.endswith(".json") and path not in written:
                os.remove(path)
    counts = {}
    for case in CASES:
        counts[case["protocol"]] = counts.get(case["protocol"], 0) + 1
    print("cases:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


# --- checking responses with botocore's parsers -------------------------------------------


def same(a, b, path="$"):
    """Compares parsed and expected values; numbers by value (epoch seconds may differ in type)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return [] if math.isclose(a, b, rel_tol=0, abs_tol=1e-6) else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, dict) and isinstance(b, dict):
        problems = []
        for k in sorted(set(a) | set(b)):
            if k not in a:
                problems.append(f"{path}.{k}: missing from the parsed response")
            elif k not in b:
                problems.append(f"{path}.{k}: parsed {a[k]!r} but not expected")
            else:
                problems += same(a[k], b[k], f"{path}.{k}")
        return problems
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)}"]
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in same(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def parse_response(case, client):
    resp = case["response"]
    headers = HeadersDict()
    for k, v in resp["headers"].items():
        headers[k] = ", ".join(v) if isinstance(v, list) else v
    body = body_bytes(resp)
    op_model = client.operation_model(case["operation"]) if case.get("operation") else None
    shape = op_model.output_shape if op_model else None
    payload = shape.serialization.get("payload") if shape is not None else None
    if payload and shape.members[payload].type_name == "blob" and resp["status"] < 300:
        # botocore hands blob payloads over as streams and decodes plain bytes as text.
        body = StreamingBody(io.BytesIO(body), len(body))
    wire_protocol = "json" if case["protocol"] == "json" else case["protocol"]
    parser = parsers.create_parser(wire_protocol)
    return parser.parse({"status_code": resp["status"], "headers": headers, "body": body}, shape)


def check():
    failures, counts = [], {}
    for protocol in ("json", "query", "rest-json", "rest-xml"):
        folder = os.path.join(TEST_DATA, protocol)
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".json"):
                continue
            with open(os.path.join(folder, name)) as f:
                case = json.load(f)
            label = f"{protocol}/{name}"
            counts[protocol] = counts.get(protocol, 0) + 1
            if "response" not in case:
                if case.get("known_gap"):
                    continue
                failures.append(f"{label}: no response yet (run the Rust test with UPDATE_GOLDEN=1)")
                continue
            client = service_model(case.get("client_model", case["model"]), protocol)
            try:
                parsed = parse_response(case, client)
            except Exception as e:  # a parser crash is a finding, not a reason to stop
                failures.append(f"{label}: botocore could not parse the response: {e!r}")
                continue
            if case["kind"] == "ok":
                parsed.pop("ResponseMetadata", None)
                problems = same(to_value(parsed), case.get("parsed", case["output"]))
            else:
                got = parsed.get("Error", {})
                want = case["expect"]
                problems = []
                if got.get("Code") != want["code"]:
                    problems.append(f"error code {got.get('Code')!r} != {want['code']!r}")
                if "message" in want and got.get("Message") != want["message"]:
                    problems.append(f"error message {got.get('Message')!r} != {want['message']!r}")
                if case["response"]["status"] != want["status"]:
                    problems.append(f"status {case['response']['status']} != {want['status']}")
            failures += [f"{label}: {p}" for p in problems]
    print("checked:", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print("botocore reads every response as expected")


# --- the cases ------------------------------------------------------------------------------

T0 = utc(2024, 1, 2, 3, 4, 5)
T1 = utc(2024, 2, 29, 23, 59, 58)
T_MS = utc(2024, 1, 2, 3, 4, 5, 678000)


def header(request, name, value):
    headers = {k: v for k, v in request["headers"].items() if k.lower() != name.lower()}
    if value is not None:
        headers[name] = value
    request["headers"] = headers
    return request


def with_body(text):
    def change(request):
        request.pop("body_base64", None)
        request["body"] = text
        return request
    return change


def with_uri(uri):
    def change(request):
        request["uri"] = uri
        return request
    return change


def define_json():
    ddb = "models/dynamodb.json"
    item = {
        "pk": {"S": "user#1"},
        "n": {"N": "12.5"},
        "blob": {"B": b"\x00\x01binary\xff"},
        "tags": {"SS": ["a", "b"]},
        "nums": {"NS": ["1", "2"]},
        "blobs": {"BS": [b"x", b"\xfe"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"NULL": True}, {"BOOL": False}]}}},
        "empty": {"L": []},
    }
    ok("json", ddb, "PutItem", "dynamodb_put_item_nested_attribute_values",
       {"TableName": "users", "Item": item, "ConditionExpression": "attribute_not_exists(pk)",
        "ExpressionAttributeNames": {"#n": "n"}, "ReturnValues": "ALL_OLD"},
       {"Attributes": {"pk": {"S": "user#1"}, "blob": {"B": b"old"}},
        "ConsumedCapacity": {"TableName": "users", "CapacityUnits": 1.5}},
       note="json 1.0: nested maps, lists, blobs and blob sets inside AttributeValue unions")
    ok("json", ddb, "GetItem", "dynamodb_get_item",
       {"TableName": "users", "Key": {"pk": {"S": "user#1"}}, "ConsistentRead": True,
        "ProjectionExpression": "pk, n"},
       {"Item": {"pk": {"S": "user#1"}, "n": {"N": "-1e3"}}})
    ok("json", ddb, "GetItem", "dynamodb_get_item_empty_output",
       {"TableName": "users", "Key": {"pk": {"S": "missing"}}}, {},
       note="an absent item is an empty object")
    ok("json", ddb, "Query", "dynamodb_query_paginated",
       {"TableName": "users", "IndexName": "by-n", "KeyConditionExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": "user#1"}}, "Limit": 2, "ScanIndexForward": False,
        "ExclusiveStartKey": {"pk": {"S": "user#0"}}},
       {"Items": [{"pk": {"S": "user#1"}}, {"pk": {"S": "user#2"}}], "Count": 2, "ScannedCount": 5,
        "LastEvaluatedKey": {"pk": {"S": "user#2"}}})
    ok("json", ddb, "DescribeTable", "dynamodb_describe_table_timestamps",
       {"TableName": "users"},
       {"Table": {"TableName": "users", "TableStatus": "ACTIVE", "CreationDateTime": T_MS,
                  "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                  "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                  "ProvisionedThroughput": {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5,
                                            "NumberOfDecreasesToday": 0, "LastIncreaseDateTime": T0},
                  "TableSizeBytes": 1024, "ItemCount": 3,
                  "TableArn": "arn:aws:dynamodb:us-east-1:000000000000:table/users",
                  "DeletionProtectionEnabled": False}},
       note="timestamps are epoch seconds in json bodies, fractions kept")
    error("json", ddb, "GetItem", "dynamodb_error_resource_not_found",
          shape="ResourceNotFoundException", message="Requested resource not found")
    error("json", ddb, "PutItem", "dynamodb_error_conditional_check_with_item",
          shape="ConditionalCheckFailedException", message="The conditional request failed",
          extra={"Item": {"pk": {"S": "user#1"}}},
          note="extra members of an error travel next to the message")
    bad("json", ddb, "dynamodb_bad_malformed_json", base=("GetItem", {"TableName": "t", "Key": {}}),
        change=with_body('{"TableName": "t", '), expect_code="SerializationException")
    bad("json", ddb, "dynamodb_bad_wrong_type", base=("GetItem", {"TableName": "t", "Key": {}}),
        change=with_body('{"TableName": 5, "Key": {}}'), expect_code="SerializationException")
    bad("json", ddb, "dynamodb_bad_unknown_target", base=("GetItem", {"TableName": "t", "Key": {}}),
        change=lambda r: header(r, "X-Amz-Target", "DynamoDB_20120810.Frobnicate"),
        expect_code="UnknownOperationException")
    bad("json", ddb, "dynamodb_bad_missing_required", base=("GetItem", {"TableName": "t", "Key": {}}),
        change=with_body('{"TableName": "t"}'), expect_code="ValidationException",
        note="validation after decoding: Key is required")

    kin = "models/kinesis.json"
    ok("json", kin, "PutRecord", "kinesis_put_record_blob",
       {"StreamName": "events", "Data": b"\x00hello\xff", "PartitionKey": "pk-1",
        "SequenceNumberForOrdering": "1"},
       {"ShardId": "shardId-000000000000", "SequenceNumber": "4959", "EncryptionType": "NONE"},
       note="json 1.1: blobs are base64 in the body")
    ok("json", kin, "PutRecords", "kinesis_put_records_partial_failure",
       {"StreamName": "events", "Records": [{"Data": b"a", "PartitionKey": "1"},
                                            {"Data": b"", "PartitionKey": "2", "ExplicitHashKey": "7"}]},
       {"FailedRecordCount": 1, "Records": [
           {"SequenceNumber": "1", "ShardId": "shardId-000000000000"},
           {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}]})
    ok("json", kin, "GetRecords", "kinesis_get_records_timestamps_and_blobs",
       {"ShardIterator": "AAAA", "Limit": 10},
       {"Records": [{"SequenceNumber": "1", "ApproximateArrivalTimestamp": T_MS, "Data": b"\x01\x02",
                     "PartitionKey": "pk"}],
        "NextShardIterator": "BBBB", "MillisBehindLatest": 0})
    ok("json", kin, "DescribeStreamSummary", "kinesis_describe_stream_summary_empty_lists",
       {"StreamName": "events"},
       {"StreamDescriptionSummary": {
           "StreamName": "events", "StreamARN": "arn:aws:kinesis:us-east-1:000000000000:stream/events",
           "StreamStatus": "ACTIVE", "StreamModeDetails": {"StreamMode": "PROVISIONED"},
           "RetentionPeriodHours": 24, "StreamCreationTimestamp": T0,
           "EnhancedMonitoring": [{"ShardLevelMetrics": []}], "OpenShardCount": 1, "ConsumerCount": 0}})
    error("json", kin, "PutRecord", "kinesis_error_throughput",
          shape="ProvisionedThroughputExceededException", message="Rate exceeded for shard")
    bad("json", kin, "kinesis_bad_base64_blob", base=("PutRecord", {"StreamName": "s", "Data": b"x",
                                                                     "PartitionKey": "p"}),
        change=with_body('{"StreamName": "s", "Data": "%%%", "PartitionKey": "p"}'),
        expect_code="SerializationException",
        known_gap="json::coerce accepts any string as a blob without checking base64")

    # SQS over json: the wire names come from botocore's own model (member names), tsumiki
    # decodes with its served model, whose query overlay adds locationNames json must ignore.
    sqs_client = "botocore:sqs"
    ok("json", SQS, "SendMessage", "sqs_json_send_message_attributes",
       {"QueueUrl": "http://localhost:4566/000000000000/q", "MessageBody": "hello",
        "DelaySeconds": 5,
        "MessageAttributes": {"s": {"DataType": "String", "StringValue": "v"},
                              "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01"}}},
       {"MD5OfMessageBody": "5d41402abc4b2a76b9719d911017c592", "MessageId": "m-1"},
       client=sqs_client)
    ok("json", SQS, "GetQueueAttributes", "sqs_json_get_queue_attributes",
       {"QueueUrl": "http://localhost:4566/000000000000/q", "AttributeNames": ["All"]},
       {"Attributes": {"VisibilityTimeout": "30", "DelaySeconds": "0"}}, client=sqs_client)
    error("json", SQS, "ReceiveMessage", "sqs_json_error_query_compatible",
          shape="QueueDoesNotExist", message="The specified queue does not exist.", client=sqs_client,
          note="awsQueryCompatible: x-amzn-query-error carries the awsQuery code")
    bad("json", SQS, "sqs_json_bad_missing_queue_url",
        base=("ListQueues", {}), change=lambda r: header(with_body('{"MaxResults": 1}')(r), "X-Amz-Target",
                                                          "AmazonSQS.GetQueueAttributes"),
        expect_code="MissingParameter", client=sqs_client,
        note="query-compatible validation names the awsQuery error")


def define_query():
    sns = "models/sns.json"
    ok("query", sns, "Publish", "sns_publish_message_attributes_map",
       {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t", "Message": "hello & <world>",
        "Subject": "s", "MessageAttributes": {
            "color": {"DataType": "String", "StringValue": "red"},
            "raw": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}}},
       {"MessageId": "m-1", "SequenceNumber": "10000000000000001000"},
       note="non-flattened map: MessageAttributes.entry.N.Name/Value")
    ok("query", sns, "CreateTopic", "sns_create_topic_attributes_and_tags",
       {"Name": "t.fifo", "Attributes": {"FifoTopic": "true", "DisplayName": "T"},
        "Tags": [{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": ""}]},
       {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t.fifo"},
       note="lists are Name.member.N")
    ok("query", sns, "GetTopicAttributes", "sns_get_topic_attributes_map_output",
       {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t"},
       {"Attributes": {"DisplayName": "T", "Policy": "{\"Version\":\"2012-10-17\"}"}})
    ok("query", sns, "ListTopics", "sns_list_topics",
       {"NextToken": "abc"},
       {"Topics": [{"TopicArn": "arn:aws:sns:us-east-1:000000000000:a"},
                   {"TopicArn": "arn:aws:sns:us-east-1:000000000000:b"}], "NextToken": "def"})
    ok("query", sns, "ListTopics", "sns_list_topics_empty_list",
       {}, {"Topics": []}, note="an empty non-flattened list reads back as []")
    ok("query", sns, "Subscribe", "sns_subscribe_booleans",
       {"TopicArn": "arn:aws:sns:us-east-1:000000000000:t", "Protocol": "sqs",
        "Endpoint": "arn:aws:sqs:us-east-1:000000000000:q", "ReturnSubscriptionArn": True,
        "Attributes": {"RawMessageDelivery": "true"}},
       {"SubscriptionArn": "arn:aws:sns:us-east-1:000000000000:t:1"})
    error("query", sns, "Publish", "sns_error_not_found",
          shape="NotFoundException", message="Topic does not exist",
          note="the awsQuery code of the shape (NotFound) is what clients match")
    bad("query", sns, "sns_bad_unknown_action", base=("ListTopics", {}),
        change=with_body("Action=Frobnicate&Version=2010-03-31"), expect_code="InvalidAction")
    bad("query", sns, "sns_bad_missing_required", base=("ListTopics", {}),
        change=with_body("Action=Publish&Version=2010-03-31&TopicArn=x"), expect_code="MissingParameter")

    ok("query", SQS, "SendMessage", "sqs_query_send_message_flattened_attributes",
       {"QueueUrl": "http://localhost:4566/000000000000/q", "MessageBody": "a+b c&d",
        "MessageAttributes": {
            "one": {"DataType": "String", "StringValue": "1"},
            "two": {"DataType": "Binary", "BinaryValue": b"\x00\x01\x02"},
            "list": {"DataType": "String", "StringListValues": ["x", "y"]}},
        "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1"}}},
       {"MD5OfMessageBody": "5d41402abc4b2a76b9719d911017c592", "MessageId": "m-1",
        "MD5OfMessageAttributes": "3ae8f24a165a8cedc005670c81a27295"},
       note="flattened maps: MessageAttribute.N.Name / MessageAttribute.N.Value.DataType")
    ok("query", SQS, "ReceiveMessage", "sqs_query_receive_message",
       {"QueueUrl": "http://localhost:4566/000000000000/q", "MaxNumberOfMessages": 2,
        "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["SentTimestamp"],
        "WaitTimeSeconds": 0},
       {"Messages": [
           {"MessageId": "m-1", "ReceiptHandle": "rh-1", "MD5OfBody": "x", "Body": "<b>&amp;</b>\r\n",
            "Attributes": {"SentTimestamp": "1704164645000", "ApproximateReceiveCount": "1"},
            "MessageAttributes": {"bin": {"DataType": "Binary", "BinaryValue": b"\xff"}}},
           {"MessageId": "m-2", "ReceiptHandle": "rh-2", "MD5OfBody": "y", "Body": "two"}]},
       decoded={"QueueUrl": "http://localhost:4566/000000000000/q", "MaxNumberOfMessages": 2,
                "MessageAttributeNames": ["All"], "MessageSystemAttributeNames": ["SentTimestamp"],
                "AttributeNames": ["SentTimestamp"], "WaitTimeSeconds": 0},
       note="AttributeName.N feeds both AttributeNames and MessageSystemAttributeNames, as in SQS; "
            "flattened list of structures with flattened maps inside; CR survives as &#xD;")
    ok("query", SQS, "GetQueueAttributes", "sqs_query_get_queue_attributes",
       {"QueueUrl": "http://localhost:4566/000000000000/q",
        "AttributeNames": ["VisibilityTimeout", "DelaySeconds"]},
       {"Attributes": {"VisibilityTimeout": "30", "DelaySeconds": "0"}},
       note="flattened list AttributeName.N in, flattened map Attribute.N out")
    ok("query", SQS, "SendMessageBatch", "sqs_query_send_message_batch",
       {"QueueUrl": "http://localhost:4566/000000000000/q", "Entries": [
           {"Id": "a", "MessageBody": "1"},
           {"Id": "b", "MessageBody": "2", "DelaySeconds": 3,
            "MessageAttributes": {"k": {"DataType": "Number", "StringValue": "7"}}}]},
       {"Successful": [{"Id": "a", "MessageId": "m-a", "MD5OfMessageBody": "c4ca4238a0b923820dcc509a6f75849b"}],
        "Failed": [{"Id": "b", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "bad"}]})
    ok("query", SQS, "ListQueues", "sqs_query_list_queues_empty",
       {"QueueNamePrefix": "none"}, {"QueueUrls": []},
       parsed={}, note="an empty flattened list writes no elements; clients see no member")
    ok("query", SQS, "CreateQueue", "sqs_query_create_queue_attributes_tags",
       {"QueueName": "q.fifo", "Attributes": {"FifoQueue": "true", "VisibilityTimeout": "40"},
        "tags": {"env": "dev"}},
       {"QueueUrl": "http://localhost:4566/000000000000/q.fifo"})
    error("query", SQS, "ReceiveMessage", "sqs_query_error_nonexistent_queue",
          shape="QueueDoesNotExist", message="The specified queue does not exist.",
          note="awsQuery code from the overlay: AWS.SimpleQueueService.NonExistentQueue")
    bad("query", SQS, "sqs_query_bad_integer",
        base=("SendMessage", {"QueueUrl": "u", "MessageBody": "b"}),
        change=with_body("Action=SendMessage&Version=2012-11-05&QueueUrl=u&MessageBody=b&DelaySeconds=soon"),
        expect_code="InvalidParameterValue")


def define_rest_json():
    lam = "models/lambda.json"
    fn_arn = "arn:aws:lambda:us-east-1:000000000000:function:my-fn"
    ok("rest-json", lam, "Invoke", "lambda_invoke_blob_payload_headers",
       {"FunctionName": "my-fn", "InvocationType": "RequestResponse", "LogType": "Tail",
        "ClientContext": base64.b64encode(b'{"custom":1}').decode(), "Qualifier": "prod",
        "Payload": b'{"key": "value"}'},
       {"StatusCode": 200, "ExecutedVersion": "$LATEST", "LogResult": base64.b64encode(b"log").decode(),
        "Payload": b'{"ok": true}'},
       note="blob payload is the raw body both ways; StatusCode is the HTTP status")
    ok("rest-json", lam, "Invoke", "lambda_invoke_binary_event_202",
       {"FunctionName": fn_arn + ":1", "InvocationType": "Event", "Payload": b"\x00\xff\xfe binary"},
       {"StatusCode": 202}, parsed={"StatusCode": 202, "Payload": b""},
       note="a function ARN label is percent-encoded; statusCode member 202 overrides 200")
    ok("rest-json", lam, "Invoke", "lambda_invoke_function_error",
       {"FunctionName": "my-fn"},
       {"StatusCode": 200, "FunctionError": "Unhandled", "Payload": b'{"errorMessage":"boom"}'})
    ok("rest-json", lam, "CreateFunction", "lambda_create_function_nested_body",
       {"FunctionName": "my-fn", "Runtime": "python3.12", "Role": "arn:aws:iam::000000000000:role/r",
        "Handler": "app.handler", "Code": {"ZipFile": b"PK\x03\x04zip"}, "Timeout": 30, "MemorySize": 256,
        "Publish": True, "Environment": {"Variables": {"A": "1", "B": "two words"}},
        "Tags": {"team": "core"}, "Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:l:1"],
        "Architectures": ["arm64"], "TracingConfig": {"Mode": "Active"}},
       {"FunctionName": "my-fn", "FunctionArn": fn_arn, "Runtime": "python3.12", "Timeout": 30,
        "MemorySize": 256, "LastModified": "2024-01-02T03:04:05.000+0000", "CodeSize": 1234,
        "Environment": {"Variables": {"A": "1"}}, "State": "Active", "Architectures": ["arm64"],
        "Layers": [{"Arn": "arn:aws:lambda:us-east-1:000000000000:layer:l:1", "CodeSize": 10}]},
       note="responseCode 201; blobs inside JSON are base64")
    ok("rest-json", lam, "GetFunction", "lambda_get_function_qualifier",
       {"FunctionName": "my-fn", "Qualifier": "$LATEST"},
       {"Configuration": {"FunctionName": "my-fn", "Version": "$LATEST"},
        "Code": {"RepositoryType": "S3", "Location": "https://example/code.zip"},
        "Tags": {"a": "b"}, "Concurrency": {"ReservedConcurrentExecutions": 5}},
       note="$ in a query value is percent-encoded")
    ok("rest-json", lam, "ListFunctions", "lambda_list_functions_query_integers",
       {"MaxItems": 50, "Marker": "next/page==", "FunctionVersion": "ALL"},
       {"Functions": [{"FunctionName": "a"}, {"FunctionName": "b"}], "NextMarker": "m2"})
    ok("rest-json", lam, "ListFunctions", "lambda_list_functions_no_params",
       {}, {"Functions": []})
    ok("rest-json", lam, "ListTags", "lambda_list_tags_arn_label",
       {"Resource": fn_arn}, {"Tags": {"team": "core", "cost center": "42"}},
       note="colons in a label travel percent-encoded")
    ok("rest-json", lam, "TagResource", "lambda_tag_resource_204",
       {"Resource": fn_arn, "Tags": {"a": "1"}}, {}, parsed={},
       note="responseCode 204, no output shape: empty body")
    ok("rest-json", lam, "UntagResource", "lambda_untag_resource_query_list",
       {"Resource": fn_arn, "TagKeys": ["a", "b c", "d&e"]}, {},
       note="a querystring list repeats its key")
    ok("rest-json", lam, "DeleteFunction", "lambda_delete_function",
       {"FunctionName": "my-fn", "Qualifier": "1"}, {"StatusCode": 204},
       note="DeleteFunctionResponse's StatusCode member sets the status")
    ok("rest-json", lam, "CreateEventSourceMapping", "lambda_create_esm_timestamps",
       {"FunctionName": "my-fn", "EventSourceArn": "arn:aws:kinesis:us-east-1:000000000000:stream/s",
        "StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": T0, "BatchSize": 100,
        "Enabled": True, "FilterCriteria": {"Filters": [{"Pattern": "{\"a\":[1]}"}]},
        "DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sqs:us-east-1:000000000000:dlq"}},
        "FunctionResponseTypes": ["ReportBatchItemFailures"], "ScalingConfig": {"MaximumConcurrency": 2}},
       {"UUID": "u-1", "StartingPosition": "AT_TIMESTAMP", "StartingPositionTimestamp": T0,
        "LastModified": T_MS, "State": "Creating", "BatchSize": 100, "FunctionArn": fn_arn,
        "FunctionResponseTypes": ["ReportBatchItemFailures"]},
       note="timestamps in JSON bodies are epoch seconds")
    ok("rest-json", lam, "ListDurableExecutionsByFunction", "lambda_query_timestamps_and_lists",
       {"FunctionName": "my-fn", "Statuses": ["RUNNING", "SUCCEEDED"], "StartedAfter": T_MS,
        "StartedBefore": T1, "ReverseOrder": True, "MaxItems": 5},
       {"DurableExecutions": [], "NextMarker": "n"},
       note="querystring timestamps are ISO 8601, booleans lowercase")
    error("rest-json", lam, "GetFunction", "lambda_error_not_found",
          shape="ResourceNotFoundException", message="Function not found: " + fn_arn,
          extra={"Type": "User"}, note="x-amzn-ErrorType plus Message (the shape's casing) in the body")
    error("rest-json", lam, "Invoke", "lambda_error_too_many_requests",
          shape="TooManyRequestsException", message="Rate exceeded", extra={"Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})
    error("rest-json", lam, "Invoke", "lambda_error_not_implemented",
          code="NotImplemented", status=501, message="The operation Lambda.Invoke is not implemented by tsumiki yet.",
          note="a code the model does not know")
    create = ("CreateFunction", {"FunctionName": "f", "Role": "arn:aws:iam::000000000000:role/r",
                                 "Code": {"ZipFile": b"z"}})
    bad("rest-json", lam, "lambda_bad_malformed_json", base=create, change=with_body('{"FunctionName": '),
        expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_body_not_object", base=create, change=with_body('[1, 2]'),
        expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_wrong_type", base=create,
        change=with_body('{"FunctionName": "f", "Role": "r", "Code": {}, "Timeout": "long"}'),
        expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_base64", base=create,
        change=with_body('{"FunctionName": "f", "Role": "r", "Code": {"ZipFile": "not base64!"}}'),
        expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_missing_required", base=create,
        change=with_body('{"FunctionName": "f", "Code": {}}'), expect_code="ValidationException",
        note="Role is required")
    bad("rest-json", lam, "lambda_bad_percent_encoding", base=("GetFunction", {"FunctionName": "f"}),
        change=with_uri("/2015-03-31/functions/bad%zzname"), expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_query_integer", base=("ListFunctions", {}),
        change=with_uri("/2015-03-31/functions/?MaxItems=many"), expect_code="SerializationException")
    bad("rest-json", lam, "lambda_bad_unknown_path", base=("ListFunctions", {}),
        change=with_uri("/2015-03-31/nothing-here"), expect_code="UnknownOperationException",
        expect_status=404)
    bad("rest-json", lam, "lambda_bad_method", base=("GetFunction", {"FunctionName": "f"}),
        change=lambda r: dict(r, method="PATCH"), expect_code="MethodNotAllowed", expect_status=405)

    apigw = "models/apigateway.json"
    ok("rest-json", apigw, "GetExport", "apigateway_get_export_query_map",
       {"restApiId": "a1b2", "stageName": "prod", "exportType": "oas30",
        "parameters": {"extensions": "integrations", "x y": "1&2"}, "accepts": "application/yaml"},
       {"contentType": "application/yaml", "contentDisposition": 'attachment; filename="api.yaml"',
        "body": b"openapi: 3.0.1\n"},
       note="a querystring map takes every other query parameter; Content-Type comes from a member")
    ok("rest-json", apigw, "GetRestApis", "apigateway_get_rest_apis_location_names",
       {"limit": 2, "position": "p1"},
       {"position": "p2", "items": [{"id": "a1", "name": "api", "createdDate": T0,
                                     "endpointConfiguration": {"types": ["REGIONAL"]}, "tags": {"k": "v"}}]},
       note="items is 'item' on the wire")
    ok("rest-json", apigw, "CreateRestApi", "apigateway_create_rest_api",
       {"name": "api", "description": "d", "binaryMediaTypes": ["image/png"], "minimumCompressionSize": 0,
        "endpointConfiguration": {"types": ["EDGE"]}, "tags": {"a": "b"}, "disableExecuteApiEndpoint": False},
       {"id": "a1", "name": "api", "createdDate": T1, "rootResourceId": "r0"})
    error("rest-json", apigw, "GetExport", "apigateway_error_not_found",
          shape="NotFoundException", message="Invalid API identifier specified")

    iot = "models/iot-data.json"
    ok("rest-json", iot, "Publish", "iot_publish_jsonvalue_header_and_encoded_label",
       {"topic": "sensors/room 1/temp", "qos": 1, "retain": True, "payload": b'{"t": 21.5}',
        "userProperties": '[{"deviceName":"alpha"},{"deviceCnt":"45"}]', "payloadFormatIndicator": "UTF8_DATA",
        "contentType": "application/json", "responseTopic": "replies/1", "correlationData": "Y29ycg==",
        "messageExpiry": 3600},
       {}, note="a jsonvalue header is base64 JSON and decodes to the JSON value; '/' in a label is %2F")
    ok("rest-json", iot, "GetRetainedMessage", "iot_get_retained_message_blobs_in_body",
       {"topic": "a/b"},
       {"topic": "a/b", "payload": b"\x01\x02", "qos": 0, "lastModifiedTime": 1704164645678,
        "userProperties": b'[{"k":"v"}]'})
    bad("rest-json", iot, "iot_bad_jsonvalue_header", base=("Publish", {"topic": "t"}),
        change=lambda r: header(r, "x-amz-mqtt5-user-properties", "not-base64!"),
        expect_code="SerializationException")
    bad("rest-json", iot, "iot_bad_boolean_query", base=("Publish", {"topic": "t"}),
        change=with_uri("/topics/t?retain=maybe"), expect_code="SerializationException")


def define_rest_xml():
    s3 = "models/s3.json"
    owner = {"ID": "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a", "DisplayName": "me"}
    ok("rest-xml", s3, "PutObject", "s3_put_object_greedy_key_meta_headers",
       {"Bucket": "my-bucket", "Key": "dir/sub dir/ünï+cødé%.txt", "Body": b"\x00\x01 body \xff",
        "ContentType": "text/plain; charset=utf-8", "Metadata": {"owner": "alice", "purpose": "golden test"},
        "ObjectLockRetainUntilDate": T0, "ACL": "private", "StorageClass": "STANDARD_IA",
        "CacheControl": "no-cache", "Tagging": "a=1&b=2", "BucketKeyEnabled": True},
       {"ETag": '"d41d8cd98f00b204e9800998ecf8427e"', "VersionId": "v1", "ServerSideEncryption": "AES256",
        "BucketKeyEnabled": True, "Size": 42},
       note="greedy label keeps '/', percent-decoded; x-amz-meta- map; iso8601 timestamp header; output all headers")
    ok("rest-xml", s3, "GetObject", "s3_get_object_headers_and_timestamps",
       {"Bucket": "my-bucket", "Key": "a/b.txt", "IfModifiedSince": T0, "Range": "bytes=0-9",
        "ResponseContentType": "application/json", "PartNumber": 1, "VersionId": "v1"},
       {"Body": b"0123456789", "ContentType": "application/json", "ContentLength": 10,
        "LastModified": T1, "ETag": '"etag"', "Metadata": {"owner": "alice"}, "ContentRange": "bytes 0-9/20",
        "AcceptRanges": "bytes", "TagCount": 2, "ObjectLockRetainUntilDate": T0,
        "DeleteMarker": False, "StorageClass": "STANDARD"},
       note="http-date header timestamps by default; the ContentType member sets Content-Type")
    ok("rest-xml", s3, "HeadObject", "s3_head_object_no_body",
       {"Bucket": "my-bucket", "Key": "a"},
       {"ContentLength": 3, "ContentType": "text/plain", "LastModified": T0, "ETag": '"e"',
        "Metadata": {"k": "v"}, "MissingMeta": 1})
    ok("rest-xml", s3, "DeleteObject", "s3_delete_object_204",
       {"Bucket": "my-bucket", "Key": "a b"}, {"DeleteMarker": True, "VersionId": "v2"})
    ok("rest-xml", s3, "CopyObject", "s3_copy_object_chosen_by_required_header",
       {"Bucket": "dst", "Key": "k", "CopySource": "src/k?versionId=1", "MetadataDirective": "REPLACE",
        "CopySourceIfModifiedSince": T1},
       {"CopyObjectResult": {"ETag": '"e"', "LastModified": T_MS}, "VersionId": "v3"},
       note="PUT /{Bucket}/{Key+} with x-amz-copy-source is CopyObject; structure payload output")
    ok("rest-xml", s3, "UploadPart", "s3_upload_part_chosen_by_required_query",
       {"Bucket": "b", "Key": "k", "PartNumber": 3, "UploadId": "up-1", "Body": b"part"},
       {"ETag": '"p3"'}, note="partNumber and uploadId select UploadPart over PutObject")
    ok("rest-xml", s3, "ListParts", "s3_list_parts_chosen_by_required_query",
       {"Bucket": "b", "Key": "k", "UploadId": "up-1", "MaxParts": 2},
       {"Bucket": "b", "Key": "k", "UploadId": "up-1", "MaxParts": 2, "IsTruncated": False,
        "Parts": [{"PartNumber": 1, "ETag": '"p1"', "Size": 5, "LastModified": T0}],
        "Initiator": {"ID": "i", "DisplayName": "d"}, "Owner": owner, "StorageClass": "STANDARD",
        "AbortDate": T1},
       note="GET /{Bucket}/{Key+}?uploadId is ListParts, not GetObject")
    ok("rest-xml", s3, "ListBuckets", "s3_list_buckets",
       {}, {"Buckets": [{"Name": "a", "CreationDate": T0}, {"Name": "b", "CreationDate": T_MS}], "Owner": owner})
    ok("rest-xml", s3, "CreateBucket", "s3_create_bucket_structure_payload",
       {"Bucket": "new-bucket", "ACL": "private",
        "CreateBucketConfiguration": {"LocationConstraint": "eu-west-1",
                                      "Tags": [{"Key": "k", "Value": "v"}]}},
       {"Location": "/new-bucket", "BucketArn": "arn:aws:s3:::new-bucket"},
       note="payload root CreateBucketConfiguration with the S3 namespace")
    ok("rest-xml", s3, "CreateBucket", "s3_create_bucket_no_body", {"Bucket": "plain"}, {"Location": "/plain"})
    ok("rest-xml", s3, "DeleteBucket", "s3_delete_bucket", {"Bucket": "old"}, {})
    ok("rest-xml", s3, "ListObjectsV2", "s3_list_objects_v2_flattened",
       {"Bucket": "my-bucket", "Prefix": "photos/", "Delimiter": "/", "MaxKeys": 2, "StartAfter": "photos/a",
        "FetchOwner": True, "EncodingType": "url"},
       {"Name": "my-bucket", "Prefix": "photos/", "Delimiter": "/", "MaxKeys": 2, "KeyCount": 2,
        "IsTruncated": True, "NextContinuationToken": "tok", "EncodingType": "url",
        "Contents": [{"Key": "photos/b.jpg", "LastModified": T_MS, "ETag": '"1"', "Size": 10,
                      "StorageClass": "STANDARD", "Owner": owner, "ChecksumAlgorithm": ["CRC32"]},
                     {"Key": "photos/c & d.jpg", "LastModified": T0, "ETag": '"2"', "Size": 0,
                      "StorageClass": "STANDARD"}],
        "CommonPrefixes": [{"Prefix": "photos/2024/"}]},
       note="?list-type=2 selects ListObjectsV2; flattened Contents and CommonPrefixes")
    ok("rest-xml", s3, "ListObjects", "s3_list_objects_v1_empty",
       {"Bucket": "my-bucket", "Marker": "m"},
       {"Name": "my-bucket", "Marker": "m", "IsTruncated": False, "MaxKeys": 1000, "Contents": []},
       parsed={"Name": "my-bucket", "Marker": "m", "IsTruncated": False, "MaxKeys": 1000},
       note="an empty flattened list writes nothing")
    ok("rest-xml", s3, "PutBucketTagging", "s3_put_bucket_tagging_query_literal",
       {"Bucket": "my-bucket", "Tagging": {"TagSet": [{"Key": "a", "Value": "1"}, {"Key": "b<", "Value": ""}]}},
       {}, note="?tagging selects the operation; non-flattened TagSet of Tag")
    ok("rest-xml", s3, "GetBucketTagging", "s3_get_bucket_tagging",
       {"Bucket": "my-bucket"}, {"TagSet": [{"Key": "a", "Value": "1"}]})
    ok("rest-xml", s3, "GetObjectTagging", "s3_get_object_tagging_empty_list",
       {"Bucket": "my-bucket", "Key": "k"}, {"TagSet": [], "VersionId": "v"},
       note="an empty non-flattened list reads back as []")
    ok("rest-xml", s3, "DeleteObjects", "s3_delete_objects_flattened",
       {"Bucket": "my-bucket", "Delete": {"Objects": [{"Key": "a"}, {"Key": "b/c", "VersionId": "v"}],
                                           "Quiet": False}},
       {"Deleted": [{"Key": "a"}, {"Key": "b/c", "VersionId": "v", "DeleteMarker": True}],
        "Errors": [{"Key": "x", "Code": "AccessDenied", "Message": "Access Denied"}]},
       note="flattened Object in, flattened Deleted and Error out")
    ok("rest-xml", s3, "GetBucketAcl", "s3_get_bucket_acl_xsi_type_attribute",
       {"Bucket": "my-bucket"},
       {"Owner": owner, "Grants": [
           {"Grantee": {"ID": owner["ID"], "DisplayName": "me", "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"},
           {"Grantee": {"URI": "http://acs.amazonaws.com/groups/global/AllUsers", "Type": "Group"},
            "Permission": "READ"}]},
       note="xsi:type is an attribute with its namespace prefix declared on Grantee")
    ok("rest-xml", s3, "PutBucketAcl", "s3_put_bucket_acl_xsi_type_attribute",
       {"Bucket": "my-bucket", "AccessControlPolicy": {
           "Owner": owner,
           "Grants": [{"Grantee": {"ID": "abc", "Type": "CanonicalUser"}, "Permission": "READ"}]}},
       {})
    ok("rest-xml", s3, "GetBucketPolicy", "s3_get_bucket_policy_string_payload",
       {"Bucket": "my-bucket"}, {"Policy": '{"Version":"2012-10-17","Statement":[]}'},
       note="a string payload is the raw body")
    ok("rest-xml", s3, "PutBucketPolicy", "s3_put_bucket_policy_string_payload",
       {"Bucket": "my-bucket", "Policy": '{"Version": "2012-10-17", "Statement": []}'}, {})
    ok("rest-xml", s3, "CompleteMultipartUpload", "s3_complete_multipart_upload",
       {"Bucket": "b", "Key": "k", "UploadId": "up-1", "MultipartUpload": {
           "Parts": [{"ETag": '"1"', "PartNumber": 1}, {"ETag": '"2"', "PartNumber": 2}]}},
       {"Location": "http://b.s3.amazonaws.com/k", "Bucket": "b", "Key": "k", "ETag": '"3-2"'},
       note="flattened Part list inside a structure payload")
    error("rest-xml", s3, "GetObject", "s3_error_no_such_key",
          shape="NoSuchKey", message="The specified key does not exist.", extra={"Key": "a/b.txt"},
          note="S3 errors are a bare <Error> with extra members as elements")
    error("rest-xml", s3, "CreateBucket", "s3_error_bucket_exists",
          shape="BucketAlreadyExists", message="The requested bucket name is not available.")
    error("rest-xml", s3, "GetObject", "s3_error_access_denied",
          code="AccessDenied", status=403, message="Access Denied", extra={"Resource": "/b/k"})
    tagging = ("PutBucketTagging", {"Bucket": "b", "Tagging": {"TagSet": []}})
    bad("rest-xml", s3, "s3_bad_malformed_xml", base=tagging, change=with_body("<Tagging><TagSet>"),
        expect_code="MalformedXML")
    bad("rest-xml", s3, "s3_bad_xml_not_utf8", base=tagging,
        change=lambda r: dict(with_body("")(r), body_base64=base64.b64encode(b"<Tagging>\xff</Tagging>").decode()),
        expect_code="MalformedXML")
    bad("rest-xml", s3, "s3_bad_xml_boolean",
        base=("DeleteObjects", {"Bucket": "b", "Delete": {"Objects": [{"Key": "a"}]}}),
        change=with_body("<Delete><Object><Key>a</Key></Object><Quiet>maybe</Quiet></Delete>"),
        expect_code="MalformedXML")
    bad("rest-xml", s3, "s3_bad_xml_entity", base=tagging,
        change=with_body('<!DOCTYPE t [<!ENTITY x "y">]><Tagging><TagSet><Tag><Key>&x;</Key><Value/></Tag></TagSet></Tagging>'),
        expect_code="MalformedXML", note="no DTD entities")
    bad("rest-xml", s3, "s3_bad_query_integer", base=("ListObjectsV2", {"Bucket": "b"}),
        change=with_uri("/b?list-type=2&max-keys=lots"), expect_code="InvalidArgument")
    bad("rest-xml", s3, "s3_bad_key_percent_encoding", base=("GetObject", {"Bucket": "b", "Key": "k"}),
        change=with_uri("/b/bad%e2%82"), expect_code="InvalidArgument")
    bad("rest-xml", s3, "s3_bad_timestamp_header", base=("GetObject", {"Bucket": "b", "Key": "k"}),
        change=lambda r: header(r, "If-Modified-Since", "yesterday"), expect_code="InvalidArgument")
    bad("rest-xml", s3, "s3_bad_method", base=("ListBuckets", {}),
        change=lambda r: dict(r, method="POST"), expect_code="MethodNotAllowed", expect_status=405)

    s3c = "models/s3control.json"
    ok("rest-xml", s3c, "CreateJob", "s3control_create_job_root_and_map",
       {"AccountId": "000000000000", "ConfirmationRequired": False, "ClientRequestToken": "tok-1", "Priority": 10,
        "RoleArn": "arn:aws:iam::000000000000:role/batch",
        "Operation": {"LambdaInvoke": {"FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f",
                                       "InvocationSchemaVersion": "2.0",
                                       "UserArguments": {"k1": "v1", "k2": "v & 2"}}},
        "Report": {"Enabled": False},
        "Manifest": {"Spec": {"Format": "S3BatchOperations_CSV_20180820", "Fields": ["Bucket", "Key"]},
                     "Location": {"ObjectArn": "arn:aws:s3:::b/manifest.csv", "ETag": "e"}},
        "Tags": [{"Key": "k", "Value": "v"}]},
       {"JobId": "job-1"},
       note="a body of members: root element is the input's locationName; a non-flattened map")

    r53 = "models/route53.json"
    ok("rest-xml", r53, "ChangeTagsForResource", "route53_change_tags_lists",
       {"ResourceType": "hostedzone", "ResourceId": "Z123",
        "AddTags": [{"Key": "a", "Value": "1"}], "RemoveTagKeys": ["b", "c"]},
       {}, note="Route 53: members body under ChangeTagsForResourceRequest with its namespace")
    ok("rest-xml", r53, "ListTagsForResource", "route53_list_tags_for_resource",
       {"ResourceType": "healthcheck", "ResourceId": "h-1"},
       {"ResourceTagSet": {"ResourceType": "healthcheck", "ResourceId": "h-1",
                           "Tags": [{"Key": "a", "Value": "1"}]}})
    error("rest-xml", r53, "GetHostedZone", "route53_error_wrapped",
          shape="NoSuchHostedZone", message="No hosted zone found with ID: Z1",
          note="non-S3 restXml errors are wrapped in ErrorResponse")
    bad("rest-xml", r53, "route53_bad_malformed_xml",
        base=("ChangeTagsForResource", {"ResourceType": "hostedzone", "ResourceId": "Z1"}),
        change=with_body("<ChangeTagsForResourceRequest><AddTags>"), expect_code="MalformedXML")


define_json()
define_query()
define_rest_json()
define_rest_xml()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="parse the stored responses with botocore")
    args = ap.parse_args()
    if args.check:
        check()
    else:
        generate()


if __name__ == "__main__":
    main()
