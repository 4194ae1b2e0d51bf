"""Kinesis Data Streams through boto3: stream lifecycle, records in order per shard, every
shard iterator type, PutRecords' per-record failures, durability across kill -9, and the
Lambda event source mapping's shard poller (order, a failing batch blocking its shard,
retries, the on-failure destination).

Assertions follow AWS's Kinesis API reference and Lambda's "Using Lambda with Kinesis" guide.
Streams and functions use unique names on the shared real-clock server.
"""

import base64
import json
import re
import subprocess
import time
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, tsumiki_bin
from lambda_util import create_function, unique

FIRST_SHARD = "shardId-000000000000"


@pytest.fixture(scope="module")
def kin(server):
    return server.client("kinesis")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


@pytest.fixture(scope="module")
def sqs_client(server):
    return server.client("sqs")


def stream_arn(name):
    return f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{name}"


def read_all(kin, name, shard, kind="TRIM_HORIZON", **kw):
    it = kin.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType=kind,
                                **kw)["ShardIterator"]
    return kin.get_records(ShardIterator=it)["Records"]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_stream_lifecycle(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=3)
    desc = kin.describe_stream(StreamName=name)["StreamDescription"]
    assert desc["StreamStatus"] == "ACTIVE"
    assert desc["StreamARN"] == stream_arn(name)
    assert desc["RetentionPeriodHours"] == 24
    assert desc["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    shards = desc["Shards"]
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012}" for i in range(3)]
    # The 128-bit hash key space split evenly, contiguous, as AWS does.
    assert shards[0]["HashKeyRange"]["StartingHashKey"] == "0"
    assert shards[0]["HashKeyRange"]["EndingHashKey"] == "113427455640312821154458202477256070484"
    assert shards[2]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    for a, b in zip(shards, shards[1:]):
        assert int(a["HashKeyRange"]["EndingHashKey"]) + 1 == int(b["HashKeyRange"]["StartingHashKey"])

    with pytest.raises(ClientError) as e:
        kin.create_stream(StreamName=name, ShardCount=1)
    assert error_code(e) == "ResourceInUseException"

    # Addressed by ARN as well as by name.
    summary = kin.describe_stream_summary(StreamARN=stream_arn(name))["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 3 and summary["StreamName"] == name
    assert [s["ShardId"] for s in kin.list_shards(StreamARN=stream_arn(name))["Shards"]] == \
        [s["ShardId"] for s in shards]
    page = kin.list_shards(StreamName=name, MaxResults=2)
    assert len(page["Shards"]) == 2
    rest = kin.list_shards(NextToken=page["NextToken"])
    assert [s["ShardId"] for s in rest["Shards"]] == ["shardId-000000000002"]
    assert name in kin.list_streams()["StreamNames"]

    # On-demand streams start with 4 shards.
    od = unique("ondemand")
    kin.create_stream(StreamName=od, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    summary = kin.describe_stream_summary(StreamName=od)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 4
    assert summary["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}

    # Retention: up only with Increase, down only with Decrease, 24 h at least.
    kin.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=48)
    assert kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 48
    with pytest.raises(ClientError) as e:
        kin.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=30)
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kin.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=12)
    assert error_code(e) in ("InvalidArgumentException", "ValidationException")
    kin.decrease_stream_retention_period(StreamName=name, RetentionPeriodHours=24)

    # Tags.
    kin.add_tags_to_stream(StreamName=name, Tags={"team": "a", "env": "test"})
    kin.remove_tags_from_stream(StreamName=name, TagKeys=["env"])
    tags = kin.list_tags_for_stream(StreamName=name)
    assert tags["Tags"] == [{"Key": "team", "Value": "a"}] and tags["HasMoreTags"] is False

    kin.delete_stream(StreamName=name)
    kin.delete_stream(StreamName=od)
    with pytest.raises(ClientError) as e:
        kin.describe_stream(StreamName=name)
    assert error_code(e) == "ResourceNotFoundException"
    assert name not in kin.list_streams()["StreamNames"]

    with pytest.raises(ClientError) as e:
        kin.start_stream_encryption(StreamName=od, EncryptionType="KMS", KeyId="k")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] in (404, 501)


def test_put_and_get_in_order_per_shard(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=2)
    shards = kin.list_shards(StreamName=name)["Shards"]
    sent = {}
    for i in range(40):
        out = kin.put_record(StreamName=name, Data=f"r{i}".encode(), PartitionKey=f"key-{i % 7}")
        sent.setdefault(out["ShardId"], []).append((out["SequenceNumber"], f"r{i}", f"key-{i % 7}"))
    assert len(sent) == 2, "seven partition keys land on both shards"
    for shard in shards:
        got = read_all(kin, name, shard["ShardId"])
        assert [(r["SequenceNumber"], r["Data"].decode(), r["PartitionKey"]) for r in got] == \
            sent[shard["ShardId"]]
        seqs = [int(r["SequenceNumber"]) for r in got]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(isinstance(r["ApproximateArrivalTimestamp"], datetime) for r in got)
    # The same partition key always lands on the same shard; the hash key range decides.
    by_key = {}
    for shard, recs in sent.items():
        for _, _, pk in recs:
            by_key.setdefault(pk, set()).add(shard)
    assert all(len(s) == 1 for s in by_key.values())
    # ExplicitHashKey overrides the partition key's hash.
    out = kin.put_record(StreamName=name, Data=b"x", PartitionKey="key-0",
                         ExplicitHashKey=str(2**128 - 1))
    assert out["ShardId"] == "shardId-000000000001"
    out = kin.put_record(StreamName=name, Data=b"x", PartitionKey="key-0", ExplicitHashKey="0")
    assert out["ShardId"] == FIRST_SHARD


def test_iterators_of_every_type(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    seqs = [kin.put_record(StreamName=name, Data=f"a{i}".encode(), PartitionKey="p")["SequenceNumber"]
            for i in range(5)]
    data = lambda recs: [r["Data"].decode() for r in recs]
    assert data(read_all(kin, name, FIRST_SHARD)) == [f"a{i}" for i in range(5)]
    assert data(read_all(kin, name, FIRST_SHARD, "AT_SEQUENCE_NUMBER",
                         StartingSequenceNumber=seqs[2])) == ["a2", "a3", "a4"]
    assert data(read_all(kin, name, FIRST_SHARD, "AFTER_SEQUENCE_NUMBER",
                         StartingSequenceNumber=seqs[2])) == ["a3", "a4"]
    # LATEST sees only what comes after it.
    latest = kin.get_shard_iterator(StreamName=name, ShardId=FIRST_SHARD,
                                    ShardIteratorType="LATEST")["ShardIterator"]
    assert kin.get_records(ShardIterator=latest)["Records"] == []
    # botocore sends timestamps in whole seconds: start the next second before writing.
    now = time.time()
    mark = datetime.fromtimestamp(int(now) + 1, timezone.utc)
    time.sleep(int(now) + 1.02 - now)
    kin.put_record(StreamName=name, Data=b"late", PartitionKey="p")
    out = kin.get_records(ShardIterator=latest)
    assert data(out["Records"]) == ["late"]
    assert out["MillisBehindLatest"] == 0
    # The next iterator continues after what was read.
    assert kin.get_records(ShardIterator=out["NextShardIterator"])["Records"] == []
    assert data(read_all(kin, name, FIRST_SHARD, "AT_TIMESTAMP", Timestamp=mark)) == ["late"]
    assert len(read_all(kin, name, FIRST_SHARD, "AT_TIMESTAMP",
                        Timestamp=mark - timedelta(hours=1))) == 6
    # Limit and MillisBehindLatest.
    it = kin.get_shard_iterator(StreamName=name, ShardId=FIRST_SHARD,
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    page = kin.get_records(ShardIterator=it, Limit=2)
    assert data(page["Records"]) == ["a0", "a1"]
    assert page["MillisBehindLatest"] >= 0
    page = kin.get_records(ShardIterator=page["NextShardIterator"], Limit=10)
    assert data(page["Records"]) == ["a2", "a3", "a4", "late"]

    with pytest.raises(ClientError) as e:
        kin.get_shard_iterator(StreamName=name, ShardId="shardId-000000000009",
                               ShardIteratorType="TRIM_HORIZON")
    assert error_code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        kin.get_shard_iterator(StreamName=name, ShardId=FIRST_SHARD,
                               ShardIteratorType="AT_SEQUENCE_NUMBER")
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kin.get_records(ShardIterator="bm90IGFuIGl0ZXJhdG9y")
    assert error_code(e) == "InvalidArgumentException"


def test_iterators_expire_after_five_minutes(clock_server):
    kin = clock_server.client("kinesis")
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    kin.put_record(StreamName=name, Data=b"x", PartitionKey="p")
    it = kin.get_shard_iterator(StreamName=name, ShardId=FIRST_SHARD,
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    clock_server.advance(301)
    with pytest.raises(ClientError) as e:
        kin.get_records(ShardIterator=it)
    assert error_code(e) == "ExpiredIteratorException"
    # Records past retention (24 h) are gone.
    clock_server.advance(24 * 3600)
    assert read_all(kin, name, FIRST_SHARD) == []


def test_put_records_partial_failure(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    out = kin.put_records(StreamName=name, Records=[
        {"Data": b"first", "PartitionKey": "a"},
        # 1 MiB of data plus a partition key is over the 1 MiB record limit.
        {"Data": b"x" * (1024 * 1024), "PartitionKey": "big"},
        {"Data": b"third", "PartitionKey": "b"},
    ])
    assert out["FailedRecordCount"] == 1
    first, failed, third = out["Records"]
    assert "SequenceNumber" in first and "SequenceNumber" in third
    assert failed["ErrorCode"] == "InvalidArgumentException" and failed["ErrorMessage"]
    assert "SequenceNumber" not in failed
    assert [r["Data"] for r in read_all(kin, name, FIRST_SHARD)] == [b"first", b"third"]
    # A single oversized PutRecord fails as a whole.
    with pytest.raises(ClientError) as e:
        kin.put_record(StreamName=name, Data=b"x" * (1024 * 1024), PartitionKey="big")
    assert error_code(e) == "InvalidArgumentException"


def test_put_records_survive_kill_9(tmp_path):
    """An acknowledged PutRecords is durable: kill -9 the server, start it on the same data
    directory, and every record is there in order."""
    import boto3

    def start():
        proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                                 "--data-dir", str(tmp_path / "data")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
        client = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION,
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        return proc, client

    proc, kin = start()
    try:
        kin.create_stream(StreamName="durable", ShardCount=2)
        sent = []
        for batch in range(5):
            out = kin.put_records(StreamName="durable", Records=[
                {"Data": f"{batch}-{i}".encode(), "PartitionKey": f"k{i}"} for i in range(20)])
            assert out["FailedRecordCount"] == 0
            sent += [r["SequenceNumber"] for r in out["Records"]]
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    proc, kin = start()
    try:
        got = []
        for shard in kin.list_shards(StreamName="durable")["Shards"]:
            got += [r["SequenceNumber"] for r in read_all(kin, "durable", shard["ShardId"])]
        assert sorted(got) == sorted(sent)
        # Sequence numbers keep growing after the restart.
        seq = kin.put_record(StreamName="durable", Data=b"after", PartitionKey="k0")
        assert int(seq["SequenceNumber"]) > max(int(s) for s in sent
                                                  if s[:14] == seq["SequenceNumber"][:14])
    finally:
        proc.kill()
        proc.wait()


# A function that logs each batch it sees and fails on records whose data starts with "poison".
CONSUMER_PY = r'''
import base64
import json

def handler(event, context):
    datas = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    print("BATCH " + json.dumps({"data": datas, "first": event["Records"][0]}))
    if any(d.startswith("poison") for d in datas):
        raise ValueError("poison")
    return {}
'''


def batches(logs, function, want, timeout=30):
    """The batches the function logged, waiting until there are at least ``want``."""
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
        if len(found) >= want:
            return found
        time.sleep(0.2)
    return found


def test_mapping_delivers_records_in_order(kin, lam, logs):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": CONSUMER_PY})
    sent = [f"m{i}" for i in range(12)]
    kin.put_records(StreamName=name, Records=[{"Data": d.encode(), "PartitionKey": "p"}
                                              for d in sent])
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function)
    assert error_code(e) in ("InvalidParameterValueException", "ValidationException")
    m = lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="TRIM_HORIZON", BatchSize=5)
    assert m["BatchSize"] == 5 and m["StartingPosition"] == "TRIM_HORIZON"
    assert m["MaximumRetryAttempts"] == -1 and m["MaximumRecordAgeInSeconds"] == -1
    assert lam.get_event_source_mapping(UUID=m["UUID"])["EventSourceArn"] == stream_arn(name)
    got = batches(logs, function, 3)
    assert [d for b in got for d in b["data"]] == sent
    assert [len(b["data"]) for b in got] == [5, 5, 2]
    first = got[0]["first"]
    assert first["eventSource"] == "aws:kinesis"
    assert first["eventName"] == "aws:kinesis:record"
    assert first["eventVersion"] == "1.0"
    assert first["eventSourceARN"] == stream_arn(name)
    assert first["awsRegion"] == REGION
    assert first["kinesis"]["partitionKey"] == "p"
    assert first["kinesis"]["kinesisSchemaVersion"] == "1.0"
    assert first["eventID"] == f"{FIRST_SHARD}:{first['kinesis']['sequenceNumber']}"
    assert isinstance(first["kinesis"]["approximateArrivalTimestamp"], float)

    # Later records flow to the same function, after the checkpoint.
    kin.put_record(StreamName=name, Data=b"later", PartitionKey="p")
    got = batches(logs, function, 4)
    assert got[3]["data"] == ["later"]
    lam.delete_event_source_mapping(UUID=m["UUID"])

    default = lam.create_event_source_mapping(EventSourceArn=stream_arn(name),
                                              FunctionName=function, StartingPosition="LATEST",
                                              Enabled=False)
    assert default["BatchSize"] == 100
    with pytest.raises(ClientError):
        lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="LATEST", BatchSize=10001)
    lam.delete_event_source_mapping(UUID=default["UUID"])


def test_failing_batch_blocks_the_shard_then_goes_to_the_destination(kin, lam, logs, sqs_client):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": CONSUMER_PY})
    dlq = sqs_client.create_queue(QueueName=unique("onfail"))["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    seqs = [kin.put_record(StreamName=name, Data=d.encode(), PartitionKey="p")["SequenceNumber"]
            for d in ["ok1", "poison", "ok2"]]
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn(name), FunctionName=function, StartingPosition="TRIM_HORIZON",
        BatchSize=1, MaximumRetryAttempts=2,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}})
    got = batches(logs, function, 5, timeout=40)
    # ok1, then the poison batch: the first attempt and two retries, and nothing else runs on
    # the shard meanwhile; then ok2.
    assert [b["data"] for b in got] == [["ok1"], ["poison"], ["poison"], ["poison"], ["ok2"]]

    msgs = sqs_client.receive_message(QueueUrl=dlq, WaitTimeSeconds=5)["Messages"]
    record = json.loads(msgs[0]["Body"])
    info = record["KinesisBatchInfo"]
    assert info["shardId"] == FIRST_SHARD
    assert info["startSequenceNumber"] == seqs[1] and info["endSequenceNumber"] == seqs[1]
    assert info["batchSize"] == 1
    assert info["streamArn"] == stream_arn(name)
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    ctx = record["requestContext"]
    assert ctx["condition"] == "RetryAttemptsExhausted"
    assert ctx["approximateInvokeCount"] == 3
    assert ctx["functionArn"].endswith(f":function:{function}")
    assert record["responseContext"]["functionError"] == "Unhandled"
    assert record["version"] == "1.0"
    # Only metadata: the record's data is not in the message.
    assert "poison" not in msgs[0]["Body"]


def test_failing_batch_is_retried_until_it_succeeds(kin, lam, logs):
    """With the default MaximumRetryAttempts (-1) a failing batch holds its shard; once the
    function is fixed the same batch runs again and the records behind it follow."""
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": CONSUMER_PY})
    kin.put_record(StreamName=name, Data=b"poison-1", PartitionKey="p")
    kin.put_record(StreamName=name, Data=b"after", PartitionKey="p")
    lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                    StartingPosition="TRIM_HORIZON", BatchSize=1)
    got = batches(logs, function, 2)
    assert [b["data"] for b in got[:2]] == [["poison-1"], ["poison-1"]]
    fixed = CONSUMER_PY.replace('d.startswith("poison")', 'False')
    from lambda_util import make_zip, wait_updated
    lam.update_function_code(FunctionName=function, ZipFile=make_zip({"app.py": fixed}))
    wait_updated(lam, function)
    got = batches(logs, function, len(got) + 2, timeout=40)
    datas = [b["data"] for b in got]
    assert datas[-1] == ["after"]
    assert all(d == ["poison-1"] for d in datas[:-1])


# Reports records whose data starts with "once-" as failed the first time it sees them.
PARTIAL_PY = r'''
import base64
import json
import os
import tempfile

def handler(event, context):
    datas = [base64.b64decode(r["kinesis"]["data"]).decode() for r in event["Records"]]
    print("BATCH " + json.dumps({"data": datas, "first": event["Records"][0]}))
    failures = []
    for r, d in zip(event["Records"], datas):
        marker = os.path.join(tempfile.gettempdir(), "seen-" + d)
        if d.startswith("once-") and not os.path.exists(marker):
            open(marker, "w").close()
            failures.append({"itemIdentifier": r["kinesis"]["sequenceNumber"]})
    return {"batchItemFailures": failures}
'''


def test_report_batch_item_failures_retries_from_the_first_failed_record(kin, lam, logs):
    name = unique("stream")
    function = unique("partial")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": PARTIAL_PY})
    once = unique("once")  # the marker's name is unique even if two runs share a /tmp
    kin.put_records(StreamName=name, Records=[{"Data": d.encode(), "PartitionKey": "p"}
                                              for d in ["a", "b", once, "d"]])
    m = lam.create_event_source_mapping(
        EventSourceArn=stream_arn(name), FunctionName=function, StartingPosition="TRIM_HORIZON",
        BatchSize=4, FunctionResponseTypes=["ReportBatchItemFailures"])
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    got = batches(logs, function, 2)
    # The records before the first reported failure are checkpointed; the rest is retried.
    assert [b["data"] for b in got] == [["a", "b", once, "d"], [once, "d"]]


def test_bisect_isolates_the_failing_record(kin, lam, logs, sqs_client):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": CONSUMER_PY})
    dlq = sqs_client.create_queue(QueueName=unique("onfail"))["QueueUrl"]
    dlq_arn = sqs_client.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    out = kin.put_records(StreamName=name, Records=[{"Data": d.encode(), "PartitionKey": "p"}
                                                    for d in ["a", "poison", "b", "c"]])
    poison_seq = out["Records"][1]["SequenceNumber"]
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn(name), FunctionName=function, StartingPosition="TRIM_HORIZON",
        BatchSize=4, MaximumRetryAttempts=0, BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": dlq_arn}})
    got = batches(logs, function, 5, timeout=40)
    assert [b["data"] for b in got] == [["a", "poison", "b", "c"], ["a", "poison"], ["a"],
                                        ["poison"], ["b", "c"]]
    msgs = sqs_client.receive_message(QueueUrl=dlq, WaitTimeSeconds=5)["Messages"]
    info = json.loads(msgs[0]["Body"])["KinesisBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == poison_seq == info["endSequenceNumber"]


def start_durable(data_dir):
    """A server of our own on ``data_dir`` (not in memory), and boto3 clients for it."""
    import boto3

    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)

    def client(service):
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return proc, client


def test_mapping_checkpoints_survive_kill_9(tmp_path):
    """A batch the function finished is not delivered again after kill -9; the mapping
    resumes after its checkpoint."""
    proc, client = start_durable(tmp_path / "data")
    try:
        kin, lam, logs = client("kinesis"), client("lambda"), client("logs")
        kin.create_stream(StreamName="s", ShardCount=1)
        create_function(lam, "consumer", {"app.py": CONSUMER_PY})
        kin.put_records(StreamName="s", Records=[{"Data": d.encode(), "PartitionKey": "p"}
                                                 for d in ["one", "two"]])
        lam.create_event_source_mapping(EventSourceArn=stream_arn("s"), FunctionName="consumer",
                                        StartingPosition="TRIM_HORIZON", BatchSize=10)
        assert [b["data"] for b in batches(logs, "consumer", 1)] == [["one", "two"]]
        time.sleep(0.5)  # the checkpoint commits right after the invocation returns
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    proc, client = start_durable(tmp_path / "data")
    try:
        kin, logs = client("kinesis"), client("logs")
        kin.put_record(StreamName="s", Data=b"three", PartitionKey="p")
        got = batches(logs, "consumer", 2)
        assert [b["data"] for b in got] == [["one", "two"], ["three"]]
    finally:
        proc.kill()
        proc.wait()


def shard_map(kin, name, **kw):
    return {s["ShardId"]: s for s in kin.list_shards(StreamName=name, **kw)["Shards"]}


def test_split_and_merge_close_parents_and_route_to_children(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    before = kin.put_record(StreamName=name, Data=b"old", PartitionKey="k")
    mid = str(2 ** 127)
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName=name, ShardToSplit=FIRST_SHARD, NewStartingHashKey="1")
    assert error_code(e) == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        kin.split_shard(StreamName=name, ShardToSplit="shardId-000000000009",
                        NewStartingHashKey=mid)
    assert error_code(e) == "ResourceNotFoundException"
    kin.split_shard(StreamName=name, ShardToSplit=FIRST_SHARD, NewStartingHashKey=mid)
    shards = shard_map(kin, name)
    assert len(shards) == 3
    parent = shards[FIRST_SHARD]
    assert "EndingSequenceNumber" in parent["SequenceNumberRange"]
    left, right = shards["shardId-000000000001"], shards["shardId-000000000002"]
    assert left["ParentShardId"] == FIRST_SHARD == right["ParentShardId"]
    assert left["HashKeyRange"]["EndingHashKey"] == str(2 ** 127 - 1)
    assert right["HashKeyRange"]["StartingHashKey"] == mid
    assert "EndingSequenceNumber" not in left["SequenceNumberRange"]
    summary = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    # A closed shard takes no records; its old ones stay readable, then it names its children
    # and hands out no next iterator.
    low = kin.put_record(StreamName=name, Data=b"low", PartitionKey="x",
                         ExplicitHashKey="5")
    assert low["ShardId"] == "shardId-000000000001"
    it = kin.get_shard_iterator(StreamName=name, ShardId=FIRST_SHARD,
                                ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    out = kin.get_records(ShardIterator=it)
    assert [r["SequenceNumber"] for r in out["Records"]] == [before["SequenceNumber"]]
    assert "NextShardIterator" not in out or out["NextShardIterator"] is None
    assert sorted(c["ShardId"] for c in out["ChildShards"]) == [
        "shardId-000000000001", "shardId-000000000002"]
    assert out["ChildShards"][0]["ParentShards"] == [FIRST_SHARD]
    # ListShards filters.
    assert set(shard_map(kin, name, ShardFilter={"Type": "AT_LATEST"})) == {
        "shardId-000000000001", "shardId-000000000002"}
    assert len(shard_map(kin, name, ShardFilter={"Type": "FROM_TRIM_HORIZON"})) == 3
    assert set(shard_map(kin, name, ShardFilter={"Type": "AT_TRIM_HORIZON"})) == {FIRST_SHARD}
    assert set(shard_map(kin, name, ShardFilter={"Type": "AFTER_SHARD_ID",
                                                 "ShardId": "shardId-000000000001"})) == {
        "shardId-000000000002"}
    with pytest.raises(ClientError) as e:
        kin.list_shards(StreamName=name, ShardFilter={"Type": "AT_TIMESTAMP"})
    assert error_code(e) == "InvalidArgumentException"

    with pytest.raises(ClientError) as e:
        kin.merge_shards(StreamName=name, ShardToMerge=FIRST_SHARD,
                         AdjacentShardToMerge="shardId-000000000001")
    assert error_code(e) == "ResourceInUseException"
    kin.merge_shards(StreamName=name, ShardToMerge="shardId-000000000002",
                     AdjacentShardToMerge="shardId-000000000001")
    merged = shard_map(kin, name)["shardId-000000000003"]
    assert merged["ParentShardId"] == "shardId-000000000001"
    assert merged["AdjacentParentShardId"] == "shardId-000000000002"
    assert merged["HashKeyRange"] == {"StartingHashKey": "0",
                                      "EndingHashKey": str(2 ** 128 - 1)}
    assert kin.put_record(StreamName=name, Data=b"x", PartitionKey="k")["ShardId"] == \
        "shardId-000000000003"


def test_update_shard_count_scales_uniformly(kin):
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=2)
    with pytest.raises(ClientError) as e:
        kin.update_shard_count(StreamName=name, TargetShardCount=5,
                               ScalingType="UNIFORM_SCALING")
    assert error_code(e) == "LimitExceededException"
    out = kin.update_shard_count(StreamName=name, TargetShardCount=3,
                                 ScalingType="UNIFORM_SCALING")
    assert out["CurrentShardCount"] == 2 and out["TargetShardCount"] == 3
    open_shards = kin.list_shards(StreamName=name, ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert len(open_shards) == 3
    third = 2 ** 128 // 3
    starts = sorted(int(s["HashKeyRange"]["StartingHashKey"]) for s in open_shards)
    assert starts == [0, third, 2 * third]
    # Every shard's parents are in the listing and closed.
    shards = shard_map(kin, name)
    for s in shards.values():
        for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")):
            if p:
                assert "EndingSequenceNumber" in shards[p]["SequenceNumberRange"]
    assert kin.describe_stream_summary(StreamName=name)[
        "StreamDescriptionSummary"]["OpenShardCount"] == 3


def test_mapping_reads_children_after_their_parent(kin, lam, logs):
    """Records of one partition key keep their order across a split: the poller finishes the
    parent shard before it reads the children."""
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": CONSUMER_PY})
    before = [f"a{i}" for i in range(5)]
    for d in before:
        kin.put_record(StreamName=name, Data=d.encode(), PartitionKey="key")
    kin.split_shard(StreamName=name, ShardToSplit=FIRST_SHARD,
                    NewStartingHashKey=str(2 ** 127))
    after = [f"b{i}" for i in range(5)]
    for d in after:
        kin.put_record(StreamName=name, Data=d.encode(), PartitionKey="key")
    lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                    StartingPosition="TRIM_HORIZON", BatchSize=2)
    got = batches(logs, function, 6)
    seen = [d for b in got for d in b["data"]]
    assert seen == before + after
    assert got[0]["first"]["eventID"].startswith(FIRST_SHARD + ":")
    assert not got[-1]["first"]["eventID"].startswith(FIRST_SHARD + ":")


# Logs every invocation (records' keys and data, the window fields) and carries a count in
# the tumbling window's state.
WINDOW_PY = r'''
import base64
import json

def handler(event, context):
    recs = [(r["kinesis"]["partitionKey"], base64.b64decode(r["kinesis"]["data"]).decode())
            for r in event["Records"]]
    state = event.get("state") or {}
    count = state.get("count", 0) + len(recs)
    print("BATCH " + json.dumps({
        "data": [d for _, d in recs], "keys": [k for k, _ in recs],
        "window": event.get("window"), "state": event.get("state"),
        "final": event.get("isFinalInvokeForWindow"),
        "early": event.get("isWindowTerminatedEarly"),
        "shardId": event.get("shardId"), "arn": event.get("eventSourceARN"),
        "first": event["Records"][0] if event["Records"] else None}))
    return {"state": {"count": count}}
'''


def test_parallelization_keeps_order_per_partition_key(kin, lam, logs):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": WINDOW_PY})
    keys = [f"k{i}" for i in range(6)]
    sent = {k: [f"{k}-{j}" for j in range(8)] for k in keys}
    kin.put_records(StreamName=name, Records=[
        {"Data": sent[k][j].encode(), "PartitionKey": k} for j in range(8) for k in keys])
    with pytest.raises(ClientError) as e:
        lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="TRIM_HORIZON",
                                        ParallelizationFactor=11)
    assert error_code(e) in ("InvalidParameterValueException", "ValidationException")
    m = lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="TRIM_HORIZON", BatchSize=3,
                                        ParallelizationFactor=4)
    assert m["ParallelizationFactor"] == 4
    assert lam.get_event_source_mapping(UUID=m["UUID"])["ParallelizationFactor"] == 4
    deadline = time.monotonic() + 40
    got = []
    while time.monotonic() < deadline:
        got = batches(logs, function, 1)
        if sum(len(b["data"]) for b in got) >= 48:
            break
        time.sleep(0.3)
    seen = {k: [] for k in keys}
    for b in got:
        assert len(b["data"]) <= 3
        for k, d in zip(b["keys"], b["data"]):
            seen[k].append(d)
    # Every record once, each key's records in the order they were put.
    assert seen == sent
    # Batches mixed keys only within a lane: more than one batch ran for the 48 records.
    assert len(got) >= 16


def test_tumbling_window_carries_state_and_ends_with_a_final_invoke(kin, lam, logs):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": WINDOW_PY})
    with pytest.raises(ClientError):
        lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="TRIM_HORIZON",
                                        TumblingWindowInSeconds=901)
    m = lam.create_event_source_mapping(EventSourceArn=stream_arn(name), FunctionName=function,
                                        StartingPosition="TRIM_HORIZON", BatchSize=2,
                                        TumblingWindowInSeconds=2)
    assert m["TumblingWindowInSeconds"] == 2
    for i in range(5):
        kin.put_record(StreamName=name, Data=f"r{i}".encode(), PartitionKey="p")
    deadline = time.monotonic() + 30
    got = []
    while time.monotonic() < deadline:
        got = batches(logs, function, 1)
        finals = [b for b in got if b["final"]]
        if sum(b["state"]["count"] for b in finals) >= 5:
            break
        time.sleep(0.3)
    finals = [b for b in got if b["final"]]
    assert finals, got
    # The final invocations carry no records and the window's accumulated state.
    assert all(b["data"] == [] for b in finals)
    assert sum(b["state"]["count"] for b in finals) == 5
    # Every record once (their order shows in the state chain below).
    assert sorted(d for b in got for d in b["data"]) == [f"r{i}" for i in range(5)]
    for b in got:
        assert b["shardId"] == FIRST_SHARD and b["arn"] == stream_arn(name)
        assert b["early"] is False
        start = datetime.fromisoformat(b["window"]["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(b["window"]["end"].replace("Z", "+00:00"))
        assert end - start == timedelta(seconds=2)
        assert start.timestamp() % 2 == 0
    # Within a window, each invocation sees the state the previous one returned (log lines
    # of one millisecond may sort either way, so the chain is checked by its counts).
    by_window = {}
    for b in got:
        by_window.setdefault(b["window"]["start"], []).append(b)
    for invocations in by_window.values():
        count = 0
        for b in sorted(invocations, key=lambda b: ((b["state"] or {}).get("count", 0),
                                                    b["final"])):
            assert (b["state"] or {}).get("count", 0) == count
            count += len(b["data"])


def test_filter_criteria_match_kinesis_data_as_json(kin, lam, logs):
    name = unique("stream")
    function = unique("consumer")
    kin.create_stream(StreamName=name, ShardCount=1)
    create_function(lam, function, {"app.py": WINDOW_PY})
    records = [json.dumps({"kind": "keep", "n": 1}), "not json", json.dumps({"kind": "drop"}),
               json.dumps({"kind": "keep", "n": 2})]
    for d in records:
        kin.put_record(StreamName=name, Data=d.encode(), PartitionKey="p")
    lam.create_event_source_mapping(
        EventSourceArn=stream_arn(name), FunctionName=function, StartingPosition="TRIM_HORIZON",
        BatchSize=10, FilterCriteria={"Filters": [{"Pattern": json.dumps(
            {"data": {"kind": ["keep"]}})}]})
    got = batches(logs, function, 1)
    kept = [json.loads(d)["n"] for b in got for d in b["data"]]
    assert kept == [1, 2]
    # The filtered-out records were checkpointed past: a later match arrives alone.
    kin.put_record(StreamName=name, Data=json.dumps({"kind": "keep", "n": 3}).encode(),
                   PartitionKey="p")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        got = batches(logs, function, 1)
        kept = [json.loads(d)["n"] for b in got for d in b["data"]]
        if len(kept) >= 3:
            break
        time.sleep(0.3)
    assert kept == [1, 2, 3]


# A minimal CBOR codec (RFC 8949) for the subset AWS's CBOR protocol uses, so the test needs
# no package beyond boto3: maps, arrays, text and byte strings, integers, doubles, tag 1.
def cbor_encode(v):
    def head(major, n):
        if n < 24:
            return bytes([major << 5 | n])
        for size, code in ((1, 24), (2, 25), (4, 26), (8, 27)):
            if n < 256 ** size:
                return bytes([major << 5 | code]) + n.to_bytes(size, "big")
        raise ValueError(n)
    if isinstance(v, bool):
        return b"\xf5" if v else b"\xf4"
    if isinstance(v, int):
        return head(0, v) if v >= 0 else head(1, -1 - v)
    if isinstance(v, float):
        import struct
        return b"\xfb" + struct.pack(">d", v)
    if isinstance(v, bytes):
        return head(2, len(v)) + v
    if isinstance(v, str):
        b = v.encode()
        return head(3, len(b)) + b
    if isinstance(v, list):
        return head(4, len(v)) + b"".join(cbor_encode(x) for x in v)
    if isinstance(v, dict):
        return head(5, len(v)) + b"".join(cbor_encode(k) + cbor_encode(x) for k, x in v.items())
    if isinstance(v, tuple) and v[0] == "tag1":
        return b"\xc1" + cbor_encode(v[1])
    raise TypeError(type(v))


def cbor_decode(data):
    import struct

    def item(i):
        ib = data[i]
        major, info = ib >> 5, ib & 31
        i += 1
        if major == 7:
            if info == 27:
                return struct.unpack(">d", data[i:i + 8])[0], i + 8
            if info == 26:
                return struct.unpack(">f", data[i:i + 4])[0], i + 4
            return {20: False, 21: True, 22: None}[info], i
        if info < 24:
            n = info
        else:
            size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
            n, i = int.from_bytes(data[i:i + size], "big"), i + size
        if major == 0:
            return n, i
        if major == 1:
            return -1 - n, i
        if major == 2:
            return bytes(data[i:i + n]), i + n
        if major == 3:
            return data[i:i + n].decode(), i + n
        if major == 4:
            out = []
            for _ in range(n):
                x, i = item(i)
                out.append(x)
            return out, i
        if major == 5:
            out = {}
            for _ in range(n):
                k, i = item(i)
                out[k], i = item(i)
            return out, i
        if major == 6:
            x, i = item(i)
            return ("tag", n, x), i
        raise ValueError(ib)

    v, end = item(0)
    assert end == len(data)
    return v


def cbor_call(server, target, body):
    import urllib.request
    req = urllib.request.Request(server.endpoint + "/", data=cbor_encode(body), method="POST",
                                 headers={"X-Amz-Target": f"Kinesis_20131202.{target}",
                                          "Content-Type": "application/x-amz-cbor-1.1"})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.headers["Content-Type"], cbor_decode(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], cbor_decode(e.read())


def test_cbor_requests_put_and_get_records(server, kin):
    """The AWS SDK for Java speaks CBOR to Kinesis: same targets, CBOR bodies, blobs as byte
    strings and timestamps as tag 1. boto3 (JSON) reads what CBOR wrote and back."""
    name = unique("stream")
    kin.create_stream(StreamName=name, ShardCount=1)
    status, ctype, out = cbor_call(server, "PutRecord", {
        "StreamName": name, "Data": b"\x00\x01binary\xff", "PartitionKey": "pk"})
    assert status == 200 and ctype == "application/x-amz-cbor-1.1"
    assert out["ShardId"] == FIRST_SHARD
    seq = out["SequenceNumber"]
    kin.put_record(StreamName=name, Data=b"from json", PartitionKey="pk")
    # JSON readers see the CBOR record's bytes.
    assert [r["Data"] for r in read_all(kin, name, FIRST_SHARD)] == [
        b"\x00\x01binary\xff", b"from json"]
    status, _, out = cbor_call(server, "GetShardIterator", {
        "StreamName": name, "ShardId": FIRST_SHARD, "ShardIteratorType": "AT_TIMESTAMP",
        "Timestamp": ("tag1", 0)})
    assert status == 200
    status, _, out = cbor_call(server, "GetRecords", {"ShardIterator": out["ShardIterator"]})
    assert status == 200
    recs = out["Records"]
    assert [r["Data"] for r in recs] == [b"\x00\x01binary\xff", b"from json"]
    assert recs[0]["SequenceNumber"] == seq
    tag, number, when = recs[0]["ApproximateArrivalTimestamp"]
    assert (tag, number) == ("tag", 1) and abs(when - time.time()) < 600
    # Errors are CBOR too.
    status, ctype, out = cbor_call(server, "DescribeStreamSummary",
                                   {"StreamName": unique("missing")})
    assert status == 400 and ctype == "application/x-amz-cbor-1.1"
    assert out["__type"] == "ResourceNotFoundException"
