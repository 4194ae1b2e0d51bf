"""CloudWatch Logs subscription filters through boto3: the API with AWS's limits and errors,
and delivery of matching events to Lambda (the gzip+base64 ``awslogs`` payload) and Kinesis."""

import gzip
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from lambda_util import create_function, unique


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def kin(server):
    return server.client("kinesis")


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


HANDLER = r'''
import base64, gzip, json

def handler(event, context):
    doc = json.loads(gzip.decompress(base64.b64decode(event["awslogs"]["data"])))
    print("AWSLOGS " + json.dumps(doc))
    return {}
'''


def test_subscription_filter_api_limits_and_errors(logs):
    group = f"/sub/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    dest = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:whatever"
    logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="ERROR",
                                 destinationArn=dest)
    logs.put_subscription_filter(logGroupName=group, filterName="b", filterPattern="",
                                 destinationArn=dest)
    # Replacing an existing filter is fine; a third is not.
    logs.put_subscription_filter(logGroupName=group, filterName="a", filterPattern="WARN",
                                 destinationArn=dest)
    with pytest.raises(ClientError) as e:
        logs.put_subscription_filter(logGroupName=group, filterName="c", filterPattern="",
                                     destinationArn=dest)
    assert code_of(e) == "LimitExceededException"
    out = logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
    assert [(f["filterName"], f["filterPattern"]) for f in out] == [("a", "WARN"), ("b", "")]
    assert out[0]["destinationArn"] == dest and out[0]["logGroupName"] == group
    assert out[0]["distribution"] == "ByLogStream"
    with pytest.raises(ClientError) as e:
        logs.put_subscription_filter(logGroupName=group, filterName="x", filterPattern="{ $.a = ",
                                     destinationArn=dest)
    assert code_of(e) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        logs.put_subscription_filter(logGroupName=group + "-missing", filterName="x",
                                     filterPattern="", destinationArn=dest)
    assert code_of(e) == "ResourceNotFoundException"
    logs.delete_subscription_filter(logGroupName=group, filterName="a")
    with pytest.raises(ClientError) as e:
        logs.delete_subscription_filter(logGroupName=group, filterName="a")
    assert code_of(e) == "ResourceNotFoundException"
    assert [f["filterName"] for f in
            logs.describe_subscription_filters(logGroupName=group)["subscriptionFilters"]] == ["b"]


def test_json_filter_pattern_delivers_to_lambda(logs, lam):
    function = unique("logsub")
    fn_arn = create_function(lam, function, {"app.py": HANDLER})["FunctionArn"]
    group = f"/app/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s1")
    logs.put_subscription_filter(logGroupName=group, filterName="errors",
                                 filterPattern='{ $.level = "ERROR" && $.latency > 100 }',
                                 destinationArn=fn_arn)
    now = int(time.time() * 1000)
    messages = [
        {"level": "ERROR", "latency": 250, "n": 1},
        {"level": "ERROR", "latency": 50, "n": 2},
        {"level": "INFO", "latency": 500, "n": 3},
        {"level": "ERROR", "latency": 101, "n": 4},
    ]
    logs.put_log_events(logGroupName=group, logStreamName="s1", logEvents=[
        {"timestamp": now + i, "message": json.dumps(m)} for i, m in enumerate(messages)])
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline and not found:
        try:
            found = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}",
                                           filterPattern='"AWSLOGS"')["events"]
        except ClientError:
            pass
        time.sleep(0.2)
    assert found, "the function never ran"
    doc = json.loads(found[0]["message"].split("AWSLOGS ", 1)[1])
    assert doc["messageType"] == "DATA_MESSAGE"
    assert doc["owner"] == ACCOUNT
    assert doc["logGroup"] == group and doc["logStream"] == "s1"
    assert doc["subscriptionFilters"] == ["errors"]
    assert [json.loads(e["message"])["n"] for e in doc["logEvents"]] == [1, 4]
    assert [e["timestamp"] for e in doc["logEvents"]] == [now, now + 3]
    assert all(e["id"] for e in doc["logEvents"])


def test_terms_filter_delivers_to_kinesis(logs, kin):
    stream = unique("logs-stream")
    kin.create_stream(StreamName=stream, ShardCount=1)
    stream_arn = kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    group = f"/k/{uuid.uuid4().hex[:8]}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_subscription_filter(logGroupName=group, filterName="f",
                                 filterPattern='?timeout ?refused -debug', destinationArn=stream_arn)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "connection refused"},
        {"timestamp": now + 1, "message": "all good"},
        {"timestamp": now + 2, "message": "debug timeout"},
        {"timestamp": now + 3, "message": "read timeout"},
    ])
    shard = kin.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    it = kin.get_shard_iterator(StreamName=stream, ShardId=shard,
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not records:
        out = kin.get_records(ShardIterator=it)
        records += out["Records"]
        it = out["NextShardIterator"]
        time.sleep(0.1)
    assert len(records) == 1
    doc = json.loads(gzip.decompress(records[0]["Data"]))
    assert [e["message"] for e in doc["logEvents"]] == ["connection refused", "read timeout"]
