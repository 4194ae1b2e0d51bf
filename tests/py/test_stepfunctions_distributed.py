"""Distributed Map through boto3: items from S3 (a JSON array, CSV with a header row, a
listObjectsV2 listing) or the input, ItemSelector with $$.Map.Item, ItemBatcher, Standard and
Express child executions, MaxConcurrency (and UpdateMapRun raising it on the manual clock),
tolerated failures, ResultWriter's manifest.json and SUCCEEDED_0.json in S3, map runs
(DescribeMapRun, ListMapRuns, ListExecutions by mapRunArn) and MapRun* history events."""

import json
import time
import uuid

import pytest

from conftest import ACCOUNT

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def uid(prefix="d"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_status(sfn, arn, want=None, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if (want is None and d["status"] != "RUNNING") or d["status"] == want:
            return d
        assert time.monotonic() < deadline, f"{arn} is {d['status']}"
        time.sleep(0.05)


def wait_for(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def dmap(processor_states, start="P", execution_type="STANDARD", **fields):
    return {"Type": "Map", "ItemProcessor": {
        "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": execution_type},
        "StartAt": start, "States": processor_states}, "End": True, **fields}


def machine(sfn, state):
    return sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps(
        {"StartAt": "M", "States": {"M": state}}))["stateMachineArn"]


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3", s3={"addressing_style": "path"})


def bucket(s3):
    name = f"items-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def test_json_items_from_s3_run_as_child_executions(sfn, s3):
    b = bucket(s3)
    s3.put_object(Bucket=b, Key="in/items.json", Body=json.dumps([{"n": i} for i in range(5)]).encode())
    arn = machine(sfn, dmap(
        {"P": {"Type": "Pass", "Parameters": {"double.$": "States.MathAdd($.n, $.n)", "i.$": "$.index"}, "End": True}},
        ItemReader={"Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket.$": "$.bucket", "Key": "in/items.json"}},
        ItemSelector={"n.$": "$$.Map.Item.Value.n", "index.$": "$$.Map.Item.Index"},
        MaxConcurrency=2, Label="Doubler", ResultPath="$.out"))
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"bucket": b}))["executionArn"]
    d = wait_status(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"bucket": b, "out": [{"double": 2 * i, "i": i} for i in range(5)]}

    events = sfn.get_execution_history(executionArn=ex, maxResults=1000)["events"]
    types = [e["type"] for e in events]
    assert types == ["ExecutionStarted", "MapStateEntered", "MapRunStarted", "MapRunSucceeded",
                     "MapStateExited", "ExecutionSucceeded"]
    run_arn = events[2]["mapRunStartedEventDetails"]["mapRunArn"]
    assert run_arn.startswith(f"arn:aws:states:us-east-1:{ACCOUNT}:mapRun:") and "/Doubler:" in run_arn

    runs = sfn.list_map_runs(executionArn=ex)["mapRuns"]
    assert [r["mapRunArn"] for r in runs] == [run_arn]
    run = sfn.describe_map_run(mapRunArn=run_arn)
    assert run["status"] == "SUCCEEDED" and run["executionArn"] == ex and run["maxConcurrency"] == 2
    assert run["itemCounts"]["total"] == 5 and run["itemCounts"]["succeeded"] == 5
    assert run["itemCounts"]["pending"] == 0 and run["itemCounts"]["running"] == 0

    children = sfn.list_executions(mapRunArn=run_arn)["executions"]
    assert len(children) == 5 and all(c["status"] == "SUCCEEDED" for c in children)
    child = sfn.describe_execution(executionArn=children[3]["executionArn"])
    assert child["mapRunArn"] == run_arn
    assert json.loads(child["input"]) == {"n": 3, "index": 3}
    assert ":execution:" in child["executionArn"] and "/Doubler:" in child["executionArn"]
    # Children are not the parent machine's executions.
    assert [e["executionArn"] for e in sfn.list_executions(stateMachineArn=arn)["executions"]] == [ex]


def test_csv_batches_express_children_and_result_writer(sfn, s3):
    b = bucket(s3)
    s3.put_object(Bucket=b, Key="people.csv", Body=b"name,age\nann,31\nbob,\"4,2\"\ncat,7\n")
    arn = machine(sfn, dmap(
        {"P": {"Type": "Pass", "Parameters": {"count.$": "States.ArrayLength($.Items)", "who.$": "$.Items[*].name",
                                               "tag.$": "$.tag"}, "End": True}},
        execution_type="EXPRESS",
        ItemReader={"Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"},
                    "Parameters": {"Bucket": b, "Key": "people.csv"}},
        ItemBatcher={"MaxItemsPerBatch": 2, "BatchInput": {"tag.$": "$.tag"}},
        ResultWriter={"Resource": "arn:aws:states:::s3:putObject", "Parameters": {"Bucket": b, "Prefix": "out"}}))
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"tag": "t1"}))["executionArn"]
    d = wait_status(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    run_arn = out["MapRunArn"]
    run_id = run_arn.rsplit(":", 1)[1]
    assert out["ResultWriterDetails"] == {"Bucket": b, "Key": f"out/{run_id}/manifest.json"}
    manifest = json.loads(s3.get_object(Bucket=b, Key=f"out/{run_id}/manifest.json")["Body"].read())
    assert manifest["DestinationBucket"] == b and manifest["MapRunArn"] == run_arn
    assert manifest["ResultFiles"]["FAILED"] == [] and manifest["ResultFiles"]["PENDING"] == []
    [succeeded] = manifest["ResultFiles"]["SUCCEEDED"]
    assert succeeded["Key"] == f"out/{run_id}/SUCCEEDED_0.json"
    results = json.loads(s3.get_object(Bucket=b, Key=succeeded["Key"])["Body"].read())
    assert [json.loads(r["Output"]) for r in results] == [
        {"count": 2, "who": ["ann", "bob"], "tag": "t1"}, {"count": 1, "who": ["cat"], "tag": "t1"}]
    assert json.loads(results[0]["Input"])["Items"][1] == {"name": "bob", "age": "4,2"}
    assert all(r["Status"] == "SUCCEEDED" and ":express:" in r["ExecutionArn"] for r in results)
    run = sfn.describe_map_run(mapRunArn=run_arn)
    # Items are counted one by one, child executions (here batches) as such.
    assert run["itemCounts"]["succeeded"] == 3 and run["itemCounts"]["resultsWritten"] == 3
    assert run["itemCounts"]["total"] == 3 and run["executionCounts"]["total"] == 2
    assert run["executionCounts"]["succeeded"] == 2 and run["executionCounts"]["resultsWritten"] == 2


def test_listing_reader_and_tolerated_failures(sfn, s3):
    b = bucket(s3)
    for k in ["data/a.txt", "data/bad-b.txt", "data/c.txt", "data/bad-d.txt", "other/x"]:
        s3.put_object(Bucket=b, Key=k, Body=b"12345")
    processor = {"C": {"Type": "Choice", "Choices": [
        {"Variable": "$.Key", "StringMatches": "data/bad-*", "Next": "F"}], "Default": "OK"},
        "F": {"Type": "Fail", "Error": "Bad", "Cause": "bad item"},
        "OK": {"Type": "Pass", "Parameters": {"k.$": "$.Key", "s.$": "$.Size"}, "End": True}}
    reader = {"Resource": "arn:aws:states:::s3:listObjectsV2", "Parameters": {"Bucket": b, "Prefix": "data/"}}
    tolerant = machine(sfn, dmap(processor, start="C", ItemReader=reader, ToleratedFailurePercentage=50))
    d = wait_status(sfn, sfn.start_execution(stateMachineArn=tolerant)["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])
    assert out[0] == {"k": "data/a.txt", "s": 5}
    assert out[1] == {"Error": "Bad", "Cause": "bad item"}
    assert len(out) == 4

    strict = machine(sfn, dmap(processor, start="C", ItemReader=reader, ToleratedFailureCount=1, MaxConcurrency=1))
    ex = sfn.start_execution(stateMachineArn=strict)["executionArn"]
    d = wait_status(sfn, ex)
    assert d["status"] == "FAILED" and d["error"] == "States.ExceedToleratedFailureThreshold"
    types = [e["type"] for e in sfn.get_execution_history(executionArn=ex)["events"]]
    assert "MapRunFailed" in types
    run = sfn.describe_map_run(mapRunArn=sfn.list_map_runs(executionArn=ex)["mapRuns"][0]["mapRunArn"])
    assert run["status"] == "FAILED" and run["itemCounts"]["failed"] == 2

    missing = machine(sfn, dmap(processor, start="C", ItemReader={
        "Resource": "arn:aws:states:::s3:getObject", "ReaderConfig": {"InputType": "JSON"},
        "Parameters": {"Bucket": b, "Key": "nope.json"}}))
    d = wait_status(sfn, sfn.start_execution(stateMachineArn=missing)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "States.ItemReaderFailed"


def test_update_map_run_raises_concurrency(clock_server):
    sfn = clock_server.client("stepfunctions", inject_host_prefix=False)
    arn = machine(sfn, dmap({"W": {"Type": "Wait", "Seconds": 60, "End": True}}, start="W",
                            ItemsPath="$.items", MaxConcurrency=1))
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [1, 2, 3]}))["executionArn"]
    run_arn = wait_for(lambda: (sfn.list_map_runs(executionArn=ex)["mapRuns"] or [None])[0])["mapRunArn"]
    run = wait_for(lambda: (r := sfn.describe_map_run(mapRunArn=run_arn))["itemCounts"]["running"] == 1 and r)
    assert run["itemCounts"]["pending"] == 2
    sfn.update_map_run(mapRunArn=run_arn, maxConcurrency=3)
    clock_server.advance(1)
    run = wait_for(lambda: (r := sfn.describe_map_run(mapRunArn=run_arn))["itemCounts"]["running"] == 3 and r)
    assert run["maxConcurrency"] == 3
    clock_server.advance(61)
    d = wait_status(sfn, ex)
    assert d["status"] == "SUCCEEDED" and json.loads(d["output"]) == [1, 2, 3]


def test_map_run_survives_kill_9(tmp_path):
    import signal
    from test_stepfunctions_crash import durable_server
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        arn = machine(sfn, dmap({"W": {"Type": "Wait", "Seconds": 600, "Next": "P"},
                                 "P": {"Type": "Pass", "Parameters": {"v.$": "$.v", "x.$": "$$.Execution.Name"}, "End": True}},
                                start="W", ItemsPath="$.items", MaxConcurrency=2, ItemSelector={"v.$": "$$.Map.Item.Value"}))
        ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": list(range(4))}))["executionArn"]
        run_arn = wait_for(lambda: (sfn.list_map_runs(executionArn=ex)["mapRuns"] or [None])[0])["mapRunArn"]
        wait_for(lambda: sfn.describe_map_run(mapRunArn=run_arn)["itemCounts"]["running"] == 2)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = durable_server(tmp_path)
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
        s.advance(601)
        wait_for(lambda: sfn.describe_map_run(mapRunArn=run_arn)["itemCounts"]["succeeded"] == 2)
        s.advance(601)
        d = wait_status(sfn, ex)
        assert d["status"] == "SUCCEEDED", d
        out = json.loads(d["output"])
        assert [o["v"] for o in out] == [0, 1, 2, 3]
        # Each item ran in exactly one child execution, started once.
        children = sfn.list_executions(mapRunArn=run_arn)["executions"]
        assert len(children) == 4 and len({c["executionArn"] for c in children}) == 4
        assert [e["type"] for e in sfn.get_execution_history(executionArn=ex)["events"]].count("MapRunSucceeded") == 1
    finally:
        s.proc.kill()
        s.proc.wait()
