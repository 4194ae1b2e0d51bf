"""SQS event source mappings through boto3, for what the Rust e2e suite (esm.rs) does not
cover: FIFO queues (batches of at most 10, no batching window, each message group processed
in order, one batch per group at a time), SNS on-failure destinations of stream mappings, and
the validation of DynamoDB stream mappings (which run once DynamoDB Streams is served).

Assertions follow Lambda's "Using Lambda with Amazon SQS" guide. Resources use unique names
on the shared real-clock server.
"""

import json
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from lambda_util import create_function, unique

# Logs each batch: (group, body) per record, in the order the event lists them.
RECORDER_PY = r'''
import json

def handler(event, context):
    print("BATCH " + json.dumps([[r["attributes"].get("MessageGroupId"), r["body"]]
                                 for r in event["Records"]]))
    return {}
'''


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def logged_batches(logs, function, want_records, timeout=40):
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}",
                                            filterPattern='"BATCH"')["events"]
        except ClientError:
            events = []
        events.sort(key=lambda e: (e["timestamp"], e.get("eventId", "")))
        found = [json.loads(e["message"].split("BATCH ", 1)[1]) for e in events]
        if sum(len(b) for b in found) >= want_records:
            return found
        time.sleep(0.3)
    return found


def test_fifo_mapping_keeps_each_group_in_order(sqs, lam, logs):
    name = unique("fifo") + ".fifo"
    url = sqs.create_queue(QueueName=name, Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    function = unique("fifo-consumer")
    create_function(lam, function, {"app.py": RECORDER_PY})
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                        BatchSize=11, MaximumBatchingWindowInSeconds=5)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                        BatchSize=5, MaximumBatchingWindowInSeconds=2)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    groups = ["g1", "g2", "g3"]
    sent = {g: [f"{g}-{i}" for i in range(7)] for g in groups}
    for i in range(7):
        for g in groups:
            sqs.send_message(QueueUrl=url, MessageBody=sent[g][i], MessageGroupId=g)
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function, BatchSize=4)
    got = logged_batches(logs, function, 21, timeout=100)
    seen = {g: [] for g in groups}
    for batch in got:
        assert len(batch) <= 4
        for group, body in batch:
            seen[group].append(body)
    assert seen == sent
    # Everything processed was deleted.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        if attrs == {"ApproximateNumberOfMessages": "0",
                     "ApproximateNumberOfMessagesNotVisible": "0"}:
            break
        time.sleep(0.2)
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_stream_mappings_take_sns_on_failure_destinations(server, lam):
    kin = server.client("kinesis")
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    function = unique("consumer")
    create_function(lam, function, {"app.py": RECORDER_PY})
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{unique('alerts')}"
    m = lam.create_event_source_mapping(
        EventSourceArn=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
        FunctionName=function, StartingPosition="LATEST", Enabled=False,
        DestinationConfig={"OnFailure": {"Destination": topic}})
    assert m["DestinationConfig"]["OnFailure"]["Destination"] == topic
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(
            EventSourceArn=f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}",
            FunctionName=function, StartingPosition="LATEST",
            DestinationConfig={"OnFailure": {"Destination": "arn:aws:s3:::bucket"}})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_dynamodb_stream_mappings_are_validated_as_aws_does(lam):
    function = unique("ddb-consumer")
    create_function(lam, function, {"app.py": RECORDER_PY})
    stream = (f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{unique('orders')}"
              "/stream/2026-11-29T00:00:00.000")
    m = lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=function,
                                        StartingPosition="TRIM_HORIZON",
                                        ParallelizationFactor=2, TumblingWindowInSeconds=60,
                                        Enabled=False)
    assert m["EventSourceArn"] == stream
    assert m["BatchSize"] == 100
    assert m["StartingPosition"] == "TRIM_HORIZON"
    assert m["ParallelizationFactor"] == 2 and m["TumblingWindowInSeconds"] == 60
    assert m["MaximumRetryAttempts"] == -1
    for bad in [dict(StartingPosition="AT_TIMESTAMP", StartingPositionTimestamp=1),
                dict(StartingPosition="LATEST", BatchSize=10001)]:
        with pytest.raises(ClientError) as e:
            lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=function, **bad)
        assert e.value.response["Error"]["Code"] in (
            "InvalidParameterValueException", "ValidationException")
    # A table is not a stream; StartingPosition is required.
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(
            EventSourceArn=f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/t",
            FunctionName=function, StartingPosition="LATEST")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError):
        lam.create_event_source_mapping(EventSourceArn=stream, FunctionName=function)
    # Stream-only settings are refused for queues.
    queue = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{unique('q')}"
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=queue, FunctionName=function,
                                        ParallelizationFactor=2)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    lam.delete_event_source_mapping(UUID=m["UUID"])
