"""Distributed Map's item readers and result writer through boto3: an S3 Inventory manifest.json
with gzip'd CSV data files (items keyed by the manifest's fileSchema), an Athena data manifest,
JSON Lines, CSV with CSVDelimiter and given headers, MaxItems/MaxItemsPath, and
ResultWriter.WriterConfig (OutputType JSON | JSONL, Transformation NONE | COMPACT | FLATTEN),
with and without S3."""

import gzip
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def uid(prefix="d"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_done(sfn, arn, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline, f"{arn} is {d['status']}"
        time.sleep(0.05)


def dmap(processor_states, start="P", **fields):
    return {"Type": "Map", "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
        "StartAt": start, "States": processor_states}, "End": True, **fields}


def run(sfn, state, input_=None):
    arn = sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps(
        {"StartAt": "M", "States": {"M": state}}))["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps(input_ or {}))["executionArn"]
    return wait_done(sfn, ex)


def refused(sfn, state, field):
    """A definition whose ReaderConfig or WriterConfig names a value AWS does not know."""
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps(
            {"StartAt": "M", "States": {"M": state}}))
    assert e.value.response["Error"]["Code"] == "InvalidDefinition"
    assert f"'{field}' must be one of" in e.value.response["Error"]["Message"]


ECHO = {"P": {"Type": "Pass", "End": True}}


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3", s3={"addressing_style": "path"})


def bucket(s3):
    name = f"io-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_s3_inventory_manifest(sfn, s3):
    src, dest = bucket(s3), bucket(s3)
    rows1 = f'"{src}","csvDataset/","0","2022-11-16T00:27:19.000Z"\n' \
            f'"{src}","csvDataset/titles.csv","3399671","2022-11-16T00:29:32.000Z"\n'
    rows2 = f'"{src}","imageDataset/a.png","12","2022-11-16T00:30:00.000Z"\n'
    s3.put_object(Bucket=dest, Key="inv/data/one.csv.gz", Body=gzip.compress(rows1.encode()))
    s3.put_object(Bucket=dest, Key="inv/data/two.csv.gz", Body=gzip.compress(rows2.encode()))
    manifest = {"sourceBucket": src, "destinationBucket": f"arn:aws:s3:::{dest}", "version": "2016-11-30",
                "creationTimestamp": "1668560400000", "fileFormat": "CSV",
                "fileSchema": "Bucket, Key, Size, LastModifiedDate",
                "files": [{"key": "inv/data/one.csv.gz", "size": 1, "MD5checksum": "x"},
                          {"key": "inv/data/two.csv.gz", "size": 1, "MD5checksum": "y"}]}
    s3.put_object(Bucket=dest, Key="inv/2022-11-16T00-00Z/manifest.json", Body=json.dumps(manifest).encode())
    reader = {"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "MANIFEST"},
              "Parameters": {"Bucket": dest, "Key": "inv/2022-11-16T00-00Z/manifest.json"}}
    d = run(sfn, dmap(ECHO, ItemReader=reader))
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == [
        {"Bucket": src, "Key": "csvDataset/", "Size": "0", "LastModifiedDate": "2022-11-16T00:27:19.000Z"},
        {"Bucket": src, "Key": "csvDataset/titles.csv", "Size": "3399671",
         "LastModifiedDate": "2022-11-16T00:29:32.000Z"},
        {"Bucket": src, "Key": "imageDataset/a.png", "Size": "12", "LastModifiedDate": "2022-11-16T00:30:00.000Z"}]

    # MaxItemsPath reads the limit from the state input.
    limited = dict(reader, ReaderConfig={"InputType": "MANIFEST", "MaxItemsPath": "$.max"})
    d = run(sfn, dmap({"P": {"Type": "Pass", "Parameters": {"k.$": "$.Key"}, "End": True}}, ItemReader=limited),
            {"max": 2})
    assert json.loads(d["output"]) == [{"k": "csvDataset/"}, {"k": "csvDataset/titles.csv"}]

    # A data file that is gone fails the reader.
    s3.delete_object(Bucket=dest, Key="inv/data/two.csv.gz")
    d = run(sfn, dmap(ECHO, ItemReader=reader))
    assert d["status"] == "FAILED" and d["error"] == "States.ItemReaderFailed"


def test_jsonl_csv_delimiters_and_athena_manifest(sfn, s3):
    b = bucket(s3)
    s3.put_object(Bucket=b, Key="in.jsonl", Body=b'{"n": 1}\n{"n": 2}\n\n{"n": 3}\n')
    d = run(sfn, dmap(ECHO, ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                                        "ReaderConfig": {"InputType": "JSONL", "MaxItems": 2},
                                        "Parameters": {"Bucket": b, "Key": "in.jsonl"}}))
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == [{"n": 1}, {"n": 2}]

    s3.put_object(Bucket=b, Key="pipes.csv", Body=b'1|a,b\n2|"x|y"\n')
    d = run(sfn, dmap(ECHO, ItemReader={"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {
        "InputType": "CSV", "CSVDelimiter": "PIPE", "CSVHeaderLocation": "GIVEN", "CSVHeaders": ["id", "v"]},
        "Parameters": {"Bucket": b, "Key": "pipes.csv"}}))
    assert json.loads(d["output"]) == [{"id": "1", "v": "a,b"}, {"id": "2", "v": "x|y"}]

    s3.put_object(Bucket=b, Key="athena/part-1.jsonl", Body=b'{"r": 1}\n')
    s3.put_object(Bucket=b, Key="athena/part-2.jsonl", Body=b'{"r": 2}\n{"r": 3}\n')
    s3.put_object(Bucket=b, Key="athena/q-manifest.csv",
                  Body=f"s3://{b}/athena/part-1.jsonl\ns3://{b}/athena/part-2.jsonl\n".encode())
    d = run(sfn, dmap(ECHO, ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                                        "ReaderConfig": {"ManifestType": "ATHENA_DATA", "InputType": "JSONL"},
                                        "Parameters": {"Bucket": b, "Key": "athena/q-manifest.csv"}}))
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == [{"r": 1}, {"r": 2}, {"r": 3}]

    refused(sfn, dmap(ECHO, ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                                        "ReaderConfig": {"InputType": "CSV", "CSVDelimiter": "COLON"},
                                        "Parameters": {"Bucket": b, "Key": "pipes.csv"}}), "CSVDelimiter")


# Each item's child returns an array, or fails for the item "bad".
SPLIT = {"C": {"Type": "Choice", "Choices": [{"Variable": "$", "StringEquals": "bad", "Next": "F"}],
               "Default": "P"},
         "F": {"Type": "Fail", "Error": "Bad", "Cause": "bad item"},
         "P": {"Type": "Pass", "Parameters": {"pair.$": "States.Array($, $)"}, "OutputPath": "$.pair",
               "End": True}}


def test_writer_config_inline(sfn):
    items = {"items": ["a", "b"]}
    d = run(sfn, dmap(SPLIT, start="C", ItemsPath="$.items",
                      ResultWriter={"WriterConfig": {"Transformation": "FLATTEN", "OutputType": "JSON"}}), items)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == ["a", "a", "b", "b"]

    d = run(sfn, dmap(SPLIT, start="C", ItemsPath="$.items",
                      ResultWriter={"WriterConfig": {"Transformation": "COMPACT"}}), items)
    assert json.loads(d["output"]) == [["a", "a"], ["b", "b"]]

    d = run(sfn, dmap(SPLIT, start="C", ItemsPath="$.items",
                      ResultWriter={"WriterConfig": {"Transformation": "NONE"}}), items)
    out = json.loads(d["output"])
    assert [json.loads(o["Output"]) for o in out] == [["a", "a"], ["b", "b"]]
    assert all(o["Status"] == "SUCCEEDED" and "ExecutionArn" in o for o in out)

    # A failed child stays whole whatever the transformation.
    d = run(sfn, dmap(SPLIT, start="C", ItemsPath="$.items", ToleratedFailureCount=1,
                      ResultWriter={"WriterConfig": {"Transformation": "FLATTEN"}}), {"items": ["a", "bad"]})
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out[:2] == ["a", "a"]
    assert out[2]["Status"] == "FAILED" and out[2]["Error"] == "Bad" and out[2]["Cause"] == "bad item"

    refused(sfn, dmap(SPLIT, start="C", ItemsPath="$.items",
                      ResultWriter={"WriterConfig": {"Transformation": "SQUASH"}}), "Transformation")


def test_writer_config_to_s3_jsonl(sfn, s3):
    b = bucket(s3)
    d = run(sfn, dmap(SPLIT, start="C", ItemsPath="$.items", ToleratedFailurePercentage=50,
                      ResultWriter={"Resource": "arn:aws:states:::s3:putObject",
                                    "Parameters": {"Bucket": b, "Prefix": "res"},
                                    "WriterConfig": {"OutputType": "JSONL", "Transformation": "COMPACT"}}),
            {"items": ["a", "bad", "c"]})
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    manifest = json.loads(s3.get_object(Bucket=b, Key=out["ResultWriterDetails"]["Key"])["Body"].read())
    [ok] = manifest["ResultFiles"]["SUCCEEDED"]
    lines = s3.get_object(Bucket=b, Key=ok["Key"])["Body"].read().decode().splitlines()
    assert [json.loads(line) for line in lines] == [["a", "a"], ["c", "c"]]
    [bad] = manifest["ResultFiles"]["FAILED"]
    [failed] = [json.loads(line) for line in s3.get_object(Bucket=b, Key=bad["Key"])["Body"].read().decode().splitlines()]
    assert failed["Status"] == "FAILED" and failed["Error"] == "Bad" and json.loads(failed["Input"]) == "bad"


@pytest.mark.parametrize("execution_type", ["STANDARD", "EXPRESS"])
def test_redrive_reruns_only_unsuccessful_and_unstarted_children(server, sfn, execution_type):
    """The child for item "b" fails (its DynamoDB item is missing) and the map run fails before
    "c" and "d" start. Once "b" exists, redriving the parent redrives the same map run: "a" is
    not run again (its counter stays 1), "b" is redriven (Standard: the same child execution,
    redriveCount 1; Express: a new one), "c" and "d" run."""
    ddb = server.client("dynamodb")
    table = uid("t")
    ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     BillingMode="PAY_PER_REQUEST")
    for k in ["a", "c", "d"]:
        ddb.put_item(TableName=table, Item={"pk": {"S": k}})
    bump = {"U": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:updateItem", "Parameters": {
        "TableName": table, "Key": {"pk": {"S.$": "$.k"}}, "UpdateExpression": "SET n = if_not_exists(n, :z) + :one",
        "ConditionExpression": "attribute_exists(pk)", "ReturnValues": "ALL_NEW",
        "ExpressionAttributeValues": {":z": {"N": "0"}, ":one": {"N": "1"}}},
        "ResultSelector": {"k.$": "$.Attributes.pk.S", "n.$": "$.Attributes.n.N"}, "End": True}}
    state = {"Type": "Map", "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type}, "StartAt": "U", "States": bump},
        "ItemsPath": "$.keys", "ItemSelector": {"k.$": "$$.Map.Item.Value"}, "MaxConcurrency": 1, "End": True}
    arn = sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps(
        {"StartAt": "M", "States": {"M": state}}))["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"keys": ["a", "b", "c", "d"]}))["executionArn"]
    d = wait_done(sfn, ex)
    assert d["status"] == "FAILED" and d["error"] == "States.ExceedToleratedFailureThreshold", d
    [run] = sfn.list_map_runs(executionArn=ex)["mapRuns"]
    run_arn = run["mapRunArn"]
    m = sfn.describe_map_run(mapRunArn=run_arn)
    assert m["status"] == "FAILED" and m["redriveCount"] == 0 and "redriveDate" not in m
    counts = m["itemCounts"]
    assert (counts["succeeded"], counts["failed"], counts["pending"], counts["pendingRedrive"]) == (1, 1, 2, 0)
    first_children = {c["name"]: c for c in sfn.list_executions(mapRunArn=run_arn)["executions"]}

    ddb.put_item(TableName=table, Item={"pk": {"S": "b"}})
    sfn.redrive_execution(executionArn=ex)
    d = wait_done(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == [{"k": k, "n": "1"} for k in "abcd"]
    assert [r["mapRunArn"] for r in sfn.list_map_runs(executionArn=ex)["mapRuns"]] == [run_arn]
    m = sfn.describe_map_run(mapRunArn=run_arn)
    assert m["status"] == "SUCCEEDED" and m["redriveCount"] == 1 and "redriveDate" in m
    counts = m["itemCounts"]
    assert (counts["succeeded"], counts["failed"], counts["pending"], counts["pendingRedrive"],
            counts["failuresNotRedrivable"], counts["total"]) == (4, 0, 0, 0, 0, 4)
    assert m["executionCounts"]["succeeded"] == 4
    types = [e["type"] for e in sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]]
    assert types.count("MapRunStarted") == 1 and types.count("MapRunRedriven") == 1
    assert types[-2:] == ["MapStateExited", "ExecutionSucceeded"]
    redriven = [e for e in sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]
                if e["type"] == "MapRunRedriven"][0]["mapRunRedrivenEventDetails"]
    assert redriven == {"mapRunArn": run_arn, "redriveCount": 1}
    if execution_type == "STANDARD":
        children = sfn.list_executions(mapRunArn=run_arn)["executions"]
        assert len(children) == 4 and all(c["status"] == "SUCCEEDED" for c in children)
        b = [c for c in children if c["executionArn"] == first_children[sorted(first_children)[1]]["executionArn"]]
        assert len(b) == 1
        desc = sfn.describe_execution(executionArn=b[0]["executionArn"])
        assert desc["redriveCount"] == 1 and json.loads(desc["input"]) == {"k": "b"}
        a = sfn.describe_execution(executionArn=first_children[sorted(first_children)[0]]["executionArn"])
        assert a["redriveCount"] == 0
        [again] = sfn.list_executions(mapRunArn=run_arn, redriveFilter="REDRIVEN")["executions"]
        assert again["executionArn"] == b[0]["executionArn"] and again["redriveCount"] == 1
        assert len(sfn.list_executions(mapRunArn=run_arn, redriveFilter="NOT_REDRIVEN")["executions"]) == 3


def test_redriven_map_run_survives_kill_9(tmp_path):
    import signal
    from test_stepfunctions_crash import durable_server
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        ddb = s.client("dynamodb")
        table = uid("t")
        ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         BillingMode="PAY_PER_REQUEST")
        for k in ["a", "c"]:
            ddb.put_item(TableName=table, Item={"pk": {"S": k}})
        child = {"U": {"Type": "Task", "Resource": "arn:aws:states:::dynamodb:updateItem", "Parameters": {
            "TableName": table, "Key": {"pk": {"S.$": "$.k"}}, "UpdateExpression": "SET n = if_not_exists(n, :z) + :one",
            "ConditionExpression": "attribute_exists(pk)", "ReturnValues": "ALL_NEW",
            "ExpressionAttributeValues": {":z": {"N": "0"}, ":one": {"N": "1"}}},
            "ResultSelector": {"k.$": "$.Attributes.pk.S", "n.$": "$.Attributes.n.N"}, "Next": "W"},
            "W": {"Type": "Wait", "Seconds": 60, "End": True}}
        state = {"Type": "Map", "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                                                  "StartAt": "U", "States": child},
                 "ItemsPath": "$.keys", "ItemSelector": {"k.$": "$$.Map.Item.Value"}, "MaxConcurrency": 1, "End": True}
        arn = sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps(
            {"StartAt": "M", "States": {"M": state}}))["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"keys": ["a", "b", "c"]}))["executionArn"]

        def advance_until(pred):
            deadline = time.monotonic() + 60
            while not pred():
                assert time.monotonic() < deadline, "timed out"
                s.advance(61)
                time.sleep(0.1)

        advance_until(lambda: sfn.describe_execution(executionArn=ex)["status"] == "FAILED")
        run_arn = sfn.list_map_runs(executionArn=ex)["mapRuns"][0]["mapRunArn"]
        ddb.put_item(TableName=table, Item={"pk": {"S": "b"}})
        sfn.redrive_execution(executionArn=ex)
        # The redriven child "b" waits in W when the server dies.
        deadline = time.monotonic() + 30
        while sfn.describe_map_run(mapRunArn=run_arn)["itemCounts"]["running"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        b = [c for c in sfn.list_executions(mapRunArn=run_arn)["executions"] if c["status"] == "RUNNING"][0]
        deadline = time.monotonic() + 30
        while "WaitStateEntered" not in [e["type"] for e in sfn.get_execution_history(
                executionArn=b["executionArn"], reverseOrder=True, maxResults=3)["events"]]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        m = sfn.describe_map_run(mapRunArn=run_arn)
        assert m["status"] == "RUNNING" and m["redriveCount"] == 1
        deadline = time.monotonic() + 60
        while sfn.describe_execution(executionArn=ex)["status"] == "RUNNING":
            assert time.monotonic() < deadline, "timed out"
            s.advance(61)
            time.sleep(0.1)
        d = sfn.describe_execution(executionArn=ex)
        assert d["status"] == "SUCCEEDED", d
        assert json.loads(d["output"]) == [{"k": k, "n": "1"} for k in "abc"]
        assert sfn.describe_execution(executionArn=b["executionArn"])["redriveCount"] == 1
        children = sfn.list_executions(mapRunArn=run_arn)["executions"]
        assert len(children) == 3 and all(c["status"] == "SUCCEEDED" for c in children)
        types = [e["type"] for e in sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]]
        assert types.count("MapRunRedriven") == 1 and types.count("ExecutionSucceeded") == 1
    finally:
        s.proc.kill()
        s.proc.wait()


def test_listing_load_and_flatten(sfn, s3):
    b = bucket(s3)
    s3.put_object(Bucket=b, Key="parts/1.jsonl", Body=b'{"v": 1}\n{"v": 2}\n')
    s3.put_object(Bucket=b, Key="parts/2.jsonl.gz", Body=gzip.compress(b'{"v": 3}\n'))
    s3.put_object(Bucket=b, Key="other.jsonl", Body=b'{"v": 9}\n')
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2",
              "ReaderConfig": {"InputType": "JSONL", "Transformation": "LOAD_AND_FLATTEN"},
              "Parameters": {"Bucket": b, "Prefix": "parts/"}}
    d = run(sfn, dmap(ECHO, ItemReader=reader))
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == [{"v": 1}, {"v": 2}, {"v": 3}]
    refused(sfn, dmap(ECHO, ItemReader=dict(reader, ReaderConfig={"Transformation": "UNZIP"})), "Transformation")
