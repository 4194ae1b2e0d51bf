"""Amazon Data Firehose through boto3: delivery streams, Direct PUT buffering to S3 flushed by
size and by the (manual) clock, AWS's object keys and prefixes, GZIP, a Lambda transformation
with Ok/Dropped/ProcessingFailed records, a Kinesis stream as source, and Firehose as the
destination of a CloudWatch Logs subscription filter and of an SNS subscription."""

import base64
import gzip
import json
import re
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from lambda_util import create_function, unique

ROLE = f"arn:aws:iam::{ACCOUNT}:role/firehose"
KEY = re.compile(
    r"^(?P<prefix>.*?)(?P<y>\d{4})/(?P<m>\d\d)/(?P<d>\d\d)/(?P<h>\d\d)/"
    r"(?P<name>[\w.-]+?)-1-(?P=y)-(?P=m)-(?P=d)-(?P=h)-\d\d-\d\d-"
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(?P<ext>\.gz)?$")

TRANSFORM = """
import base64

def handler(event, context):
    out = []
    for r in event["records"]:
        text = base64.b64decode(r["data"]).decode()
        if text.startswith("drop"):
            out.append({"recordId": r["recordId"], "result": "Dropped", "data": r["data"]})
        elif text.startswith("fail"):
            out.append({"recordId": r["recordId"], "result": "ProcessingFailed", "data": r["data"]})
        else:
            data = base64.b64encode(text.upper().encode() + b"\\n").decode()
            out.append({"recordId": r["recordId"], "result": "Ok", "data": data})
    return {"records": out}
"""


def bucket_arn(bucket):
    return f"arn:aws:s3:::{bucket}"


def make_stream(fh, s3, name, size_mb=5, interval_s=300, **dest):
    bucket = f"fh-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    config = {"RoleARN": ROLE, "BucketARN": bucket_arn(bucket),
              "BufferingHints": {"SizeInMBs": size_mb, "IntervalInSeconds": interval_s}, **dest}
    arn = fh.create_delivery_stream(DeliveryStreamName=name,
                                    ExtendedS3DestinationConfiguration=config)["DeliveryStreamARN"]
    return bucket, arn


def objects(s3, bucket, prefix=""):
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]


def wait_objects(s3, bucket, n=1, prefix="", server=None, step=0, timeout=20):
    """Waits (advancing the manual clock by ``step`` seconds each round) for ``n`` objects."""
    deadline = time.monotonic() + timeout
    while True:
        keys = objects(s3, bucket, prefix)
        if len(keys) >= n:
            return keys
        assert time.monotonic() < deadline, f"only {keys} under {prefix!r} in {bucket}"
        if server is not None and step:
            server.advance(step)
        time.sleep(0.1)


def body(s3, bucket, key):
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture(scope="module")
def fh(server):
    return server.client("firehose")


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3")


@pytest.fixture(scope="module")
def cfh(clock_server):
    return clock_server.client("firehose")


@pytest.fixture(scope="module")
def cs3(clock_server):
    return clock_server.client("s3")


def test_delivery_stream_api_and_errors(fh, s3):
    name = unique("ds")
    bucket, arn = make_stream(fh, s3, name, Prefix="p/")
    assert arn == f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{name}"
    d = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["DeliveryStreamStatus"] == "ACTIVE"
    assert d["DeliveryStreamType"] == "DirectPut"
    assert d["VersionId"] == "1"
    assert d["HasMoreDestinations"] is False
    dest = d["Destinations"][0]
    assert dest["DestinationId"] == "destinationId-000000000001"
    ext = dest["ExtendedS3DestinationDescription"]
    assert ext["BucketARN"] == bucket_arn(bucket)
    assert ext["Prefix"] == "p/"
    assert ext["CompressionFormat"] == "UNCOMPRESSED"
    assert ext["EncryptionConfiguration"] == {"NoEncryptionConfig": "NoEncryption"}
    assert dest["S3DestinationDescription"]["BufferingHints"] == {"SizeInMBs": 5, "IntervalInSeconds": 300}
    assert name in fh.list_delivery_streams(Limit=10000)["DeliveryStreamNames"]

    with pytest.raises(ClientError) as e:
        make_stream(fh, s3, name)
    assert e.value.response["Error"]["Code"] == "ResourceInUseException"

    fh.tag_delivery_stream(DeliveryStreamName=name, Tags=[{"Key": "a", "Value": "1"},
                                                          {"Key": "b", "Value": "2"}])
    fh.untag_delivery_stream(DeliveryStreamName=name, TagKeys=["a"])
    tags = fh.list_tags_for_delivery_stream(DeliveryStreamName=name)
    assert tags["Tags"] == [{"Key": "b", "Value": "2"}] and tags["HasMoreTags"] is False

    with pytest.raises(ClientError) as e:
        fh.create_delivery_stream(
            DeliveryStreamName=unique("ds"),
            ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": bucket_arn(bucket),
                                                "Prefix": "y=!{timestamp:yyyy}/"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    with pytest.raises(ClientError) as e:
        fh.create_delivery_stream(
            DeliveryStreamName=unique("ds"),
            HttpEndpointDestinationConfiguration={
                "EndpointConfiguration": {"Url": "https://example.com"},
                "S3Configuration": {"RoleARN": ROLE, "BucketARN": bucket_arn(bucket)}})
    assert e.value.response["Error"]["Code"] == "NotImplemented"

    fh.delete_delivery_stream(DeliveryStreamName=name)
    with pytest.raises(ClientError) as e:
        fh.describe_delivery_stream(DeliveryStreamName=name)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        fh.put_record(DeliveryStreamName=name, Record={"Data": b"x"})
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_record_limits(fh, s3):
    name = unique("ds")
    make_stream(fh, s3, name)
    with pytest.raises(ClientError) as e:
        fh.put_record(DeliveryStreamName=name, Record={"Data": b"x" * (1000 * 1024 + 1)})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError):
        fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x"}] * 501)
    with pytest.raises(ClientError) as e:
        fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"x" * 1000 * 1024}] * 5)
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    out = fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"ok"}] * 500)
    assert out["FailedPutCount"] == 0
    ids = [r["RecordId"] for r in out["RequestResponses"]]
    assert len(ids) == 500 and len(set(ids)) == 500


def test_size_flush_writes_at_most_the_buffer_size(fh, s3):
    name = unique("ds")
    bucket, _ = make_stream(fh, s3, name, size_mb=1, interval_s=900)
    chunk = 400 * 1024
    parts = [bytes([65 + i]) * chunk for i in range(3)]
    fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": p} for p in parts])
    keys = wait_objects(s3, bucket)
    time.sleep(0.3)
    assert len(objects(s3, bucket)) == 1, "the third record stays buffered until the interval"
    m = KEY.match(keys[0])
    assert m and m["name"] == name and m["prefix"] == "" and not m["ext"], keys[0]
    assert body(s3, bucket, keys[0]) == parts[0] + parts[1]


def test_interval_flush_follows_the_manual_clock(cfh, cs3, clock_server):
    name = unique("ds")
    bucket, _ = make_stream(cfh, cs3, name, interval_s=60, Prefix="direct/")
    for i in range(3):
        cfh.put_record(DeliveryStreamName=name, Record={"Data": f"r{i}\n".encode()})
    cfh.put_record_batch(DeliveryStreamName=name,
                         Records=[{"Data": f"b{i}\n".encode()} for i in range(5)])
    time.sleep(0.3)
    assert objects(cs3, bucket) == []
    clock_server.advance(61)
    keys = wait_objects(cs3, bucket)
    assert len(keys) == 1
    m = KEY.match(keys[0])
    assert m and m["prefix"] == "direct/" and m["name"] == name, keys[0]
    assert body(cs3, bucket, keys[0]) == b"r0\nr1\nr2\nb0\nb1\nb2\nb3\nb4\n"


def test_gzip_and_custom_prefix(cfh, cs3, clock_server):
    name = unique("ds")
    bucket, _ = make_stream(cfh, cs3, name, interval_s=60, CompressionFormat="GZIP",
                            Prefix="year=!{timestamp:yyyy}/day=!{timestamp:yyyy'-'MM'-'dd}/",
                            ErrorOutputPrefix="err/!{firehose:error-output-type}/")
    lines = [json.dumps({"n": i}) + "\n" for i in range(50)]
    cfh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": l.encode()} for l in lines])
    clock_server.advance(61)
    keys = wait_objects(cs3, bucket)
    key = keys[0]
    assert re.match(r"^year=\d{4}/day=\d{4}-\d\d-\d\d/" + re.escape(name) + r"-1-[\d-]+-[0-9a-f-]{36}\.gz$",
                    key), key
    assert gzip.decompress(body(cs3, bucket, key)).decode() == "".join(lines)


def test_lambda_transformation_ok_dropped_and_failed(cfh, cs3, clock_server):
    lam = clock_server.client("lambda")
    fn = unique("fhx")
    fn_arn = create_function(lam, fn, {"app.py": TRANSFORM})["FunctionArn"]
    name = unique("ds")
    bucket, arn = make_stream(
        cfh, cs3, name, interval_s=60, Prefix="ok/", ErrorOutputPrefix="bad/",
        ProcessingConfiguration={"Enabled": True, "Processors": [{
            "Type": "Lambda",
            "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": fn_arn},
                           {"ParameterName": "NumberOfRetries", "ParameterValue": "1"}]}]})
    data = ["hello", "drop me", "fail me", "world"]
    cfh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": d.encode()} for d in data])
    clock_server.advance(61)
    ok = wait_objects(cs3, bucket, prefix="ok/", timeout=60)
    bad = wait_objects(cs3, bucket, prefix="bad/", timeout=20)
    assert body(cs3, bucket, ok[0]) == b"HELLO\nWORLD\n"
    assert re.match(r"^bad/processing-failed/\d{4}/\d\d/\d\d/\d\d/" + re.escape(name) + "-1-", bad[0]), bad[0]
    failed = [json.loads(l) for l in body(cs3, bucket, bad[0]).decode().splitlines()]
    assert len(failed) == 1
    f = failed[0]
    assert base64.b64decode(f["rawData"]) == b"fail me"
    assert f["errorCode"] == "Lambda.ProcessingFailedStatus"
    assert f["lambdaArn"] == fn_arn and f["attemptsMade"] == 1
    assert isinstance(f["arrivalTimestamp"], int) and f["attemptEndingTimestamp"] >= f["arrivalTimestamp"]


def test_failing_transformation_sends_every_record_to_the_error_prefix(cfh, cs3, clock_server):
    lam = clock_server.client("lambda")
    fn = unique("fhx")
    fn_arn = create_function(lam, fn, {"app.py": "def handler(e, c):\n    raise ValueError('no')\n"})[
        "FunctionArn"]
    name = unique("ds")
    bucket, _ = make_stream(
        cfh, cs3, name, interval_s=60,
        ProcessingConfiguration={"Enabled": True, "Processors": [{
            "Type": "Lambda",
            "Parameters": [{"ParameterName": "LambdaArn", "ParameterValue": fn_arn},
                           {"ParameterName": "NumberOfRetries", "ParameterValue": "2"}]}]})
    cfh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b"a"}, {"Data": b"b"}])
    clock_server.advance(61)
    keys = wait_objects(cs3, bucket, timeout=60)
    assert len(keys) == 1 and keys[0].startswith("processing-failed/"), keys
    failed = [json.loads(l) for l in body(cs3, bucket, keys[0]).decode().splitlines()]
    assert [base64.b64decode(f["rawData"]) for f in failed] == [b"a", b"b"]
    assert {f["errorCode"] for f in failed} == {"Lambda.FunctionError"}
    assert {f["attemptsMade"] for f in failed} == {3}


def test_kinesis_stream_as_source(cfh, cs3, clock_server):
    kin = clock_server.client("kinesis")
    stream = unique("ks")
    kin.create_stream(StreamName=stream, ShardCount=2)
    stream_arn = kin.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    kin.put_record(StreamName=stream, Data=b"before\n", PartitionKey="p")
    name = unique("ds")
    bucket = f"fh-{uuid.uuid4().hex[:12]}"
    cs3.create_bucket(Bucket=bucket)
    clock_server.advance(1)
    cfh.create_delivery_stream(
        DeliveryStreamName=name, DeliveryStreamType="KinesisStreamAsSource",
        KinesisStreamSourceConfiguration={"KinesisStreamARN": stream_arn, "RoleARN": ROLE},
        ExtendedS3DestinationConfiguration={"RoleARN": ROLE, "BucketARN": bucket_arn(bucket),
                                            "BufferingHints": {"IntervalInSeconds": 60}})
    d = cfh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == stream_arn
    with pytest.raises(ClientError) as e:
        cfh.put_record(DeliveryStreamName=name, Record={"Data": b"x"})
    assert e.value.response["Error"]["Code"] == "InvalidArgumentException"
    clock_server.advance(1)
    sent = [f"k{i}\n" for i in range(20)]
    kin.put_records(StreamName=stream,
                    Records=[{"Data": s.encode(), "PartitionKey": f"pk{i}"} for i, s in enumerate(sent)])
    time.sleep(2.5)  # the reader polls each second of clock time, which also runs in real time
    clock_server.advance(61)
    keys = wait_objects(cs3, bucket, server=clock_server, step=61)
    got = b"".join(body(cs3, bucket, k) for k in keys).decode()
    assert sorted(got.splitlines(keepends=True)) == sorted(sent), "records put before the delivery stream existed are not read"


def test_log_subscription_filter_delivers_to_firehose(cfh, cs3, clock_server):
    logs = clock_server.client("logs")
    name = unique("ds")
    bucket, arn = make_stream(cfh, cs3, name, interval_s=60)
    group = unique("/fh/group")
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    logs.put_subscription_filter(logGroupName=group, filterName="errors", filterPattern="ERROR",
                                 destinationArn=arn, roleArn=ROLE)
    now = int(time.time() * 1000)
    logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=[
        {"timestamp": now, "message": "ERROR one"},
        {"timestamp": now + 1, "message": "INFO two"},
        {"timestamp": now + 2, "message": "ERROR three"},
    ])
    clock_server.advance(61)
    keys = wait_objects(cs3, bucket)
    doc = json.loads(gzip.decompress(body(cs3, bucket, keys[0])))
    assert doc["messageType"] == "DATA_MESSAGE"
    assert doc["logGroup"] == group and doc["subscriptionFilters"] == ["errors"]
    assert [e["message"] for e in doc["logEvents"]] == ["ERROR one", "ERROR three"]


def test_sns_firehose_subscription(cfh, cs3, clock_server):
    sns = clock_server.client("sns")
    name = unique("ds")
    bucket, arn = make_stream(cfh, cs3, name, interval_s=60)
    topic = sns.create_topic(Name=unique("t"))["TopicArn"]
    sub = sns.subscribe(TopicArn=topic, Protocol="firehose", Endpoint=arn,
                        Attributes={"SubscriptionRoleArn": ROLE}, ReturnSubscriptionArn=True)
    raw_bucket, raw_arn = make_stream(cfh, cs3, unique("ds"), interval_s=60)
    sns.subscribe(TopicArn=topic, Protocol="firehose", Endpoint=raw_arn,
                  Attributes={"SubscriptionRoleArn": ROLE, "RawMessageDelivery": "true"})
    assert sub["SubscriptionArn"].startswith(topic + ":")
    sns.publish(TopicArn=topic, Message="first", Subject="s1")
    sns.publish(TopicArn=topic, Message="second")
    def lines_in(b):
        return b"".join(body(cs3, b, k) for k in objects(cs3, b)).decode().splitlines()

    deadline = time.monotonic() + 15
    while len(lines_in(bucket)) < 2 or len(lines_in(raw_bucket)) < 2:
        assert time.monotonic() < deadline, (lines_in(bucket), lines_in(raw_bucket))
        time.sleep(0.3)
        clock_server.advance(61)
    notes = [json.loads(l) for l in lines_in(bucket)]
    assert sorted(n["Message"] for n in notes) == ["first", "second"]
    assert all(n["Type"] == "Notification" and n["TopicArn"] == topic for n in notes)
    assert sorted(lines_in(raw_bucket)) == ["first", "second"]


def test_update_destination(cfh, cs3, clock_server):
    name = unique("ds")
    bucket, _ = make_stream(cfh, cs3, name, interval_s=60, Prefix="old/")
    with pytest.raises(ClientError) as e:
        cfh.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId="7",
                               DestinationId="destinationId-000000000001",
                               ExtendedS3DestinationUpdate={"Prefix": "new/"})
    assert e.value.response["Error"]["Code"] == "ConcurrentModificationException"
    cfh.update_destination(DeliveryStreamName=name, CurrentDeliveryStreamVersionId="1",
                           DestinationId="destinationId-000000000001",
                           ExtendedS3DestinationUpdate={"Prefix": "new/", "CompressionFormat": "GZIP"})
    d = cfh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
    assert d["VersionId"] == "2" and "LastUpdateTimestamp" in d
    ext = d["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert ext["Prefix"] == "new/" and ext["CompressionFormat"] == "GZIP"
    assert ext["BufferingHints"]["IntervalInSeconds"] == 60
    cfh.put_record(DeliveryStreamName=name, Record={"Data": b"v2\n"})
    clock_server.advance(61)
    [key] = wait_objects(cs3, bucket)
    assert key.startswith("new/") and f"{name}-2-" in key and key.endswith(".gz"), key
    assert gzip.decompress(body(cs3, bucket, key)) == b"v2\n"
