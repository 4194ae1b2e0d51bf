"""RedriveExecution through boto3: a failed execution resumes at the failed state with its
input (the states before it do not run again), AWS's redrive fields and ExecutionRedriven
event, ExecutionNotRedrivable, the 14-day window on the manual clock, a redriven
execution in a Wait surviving `kill -9`, and inline Map and Parallel states re-running only
the iterations and branches that failed (also across a `kill -9`)."""

import json
import signal
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT
from lambda_util import create_function, wait_updated
from test_stepfunctions_crash import durable_server

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def uid(prefix="r"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_status(sfn, arn, want, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] == want:
            return d
        assert time.monotonic() < deadline, f"{arn} is {d['status']}, not {want}"
        time.sleep(0.05)


def history(sfn, arn):
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


def test_redrive_resumes_at_the_failed_task(server, sfn):
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName=uid("q"))["QueueUrl"]
    arn = sfn.create_state_machine(name=uid(), roleArn=ROLE, definition=json.dumps({
        "StartAt": "Prepare", "States": {
            "Prepare": {"Type": "Pass", "Parameters": {"order.$": "$.order", "at.$": "$$.Execution.RedriveCount"},
                        "Next": "Ask"},
            "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue, "MessageBody": {
                        "token.$": "$$.Task.Token", "order.$": "$.order", "redrives.$": "$$.Execution.RedriveCount"}},
                    "ResultPath": "$.approval", "End": True}}}))["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 7}))["executionArn"]
    with pytest.raises(ClientError) as e:
        sfn.redrive_execution(executionArn=ex)
    assert code(e) == "ExecutionNotRedrivable"
    d = sfn.describe_execution(executionArn=ex)
    assert d["redriveStatus"] == "NOT_REDRIVABLE"
    assert d["redriveStatusReason"] == "Execution is RUNNING and cannot be redriven."

    body = json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"])
    assert body["redrives"] == 0
    sfn.send_task_failure(taskToken=body["token"], error="Rejected", cause="try again")
    d = wait_status(sfn, ex, "FAILED")
    assert d["error"] == "Rejected" and d["redriveCount"] == 0 and d["redriveStatus"] == "REDRIVABLE"
    assert "redriveDate" not in d

    r = sfn.redrive_execution(executionArn=ex, clientToken="once")
    d = sfn.describe_execution(executionArn=ex)
    assert d["status"] == "RUNNING" and d["redriveCount"] == 1
    assert d["redriveDate"] == r["redriveDate"]
    assert "error" not in d and "stopDate" not in d
    # The same client token again does not redrive a second time.
    sfn.redrive_execution(executionArn=ex, clientToken="once")
    assert sfn.describe_execution(executionArn=ex)["redriveCount"] == 1

    body = json.loads(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"])
    assert body == {"token": body["token"], "order": 7, "redrives": 1}
    sfn.send_task_success(taskToken=body["token"], output=json.dumps({"ok": True}))
    d = wait_status(sfn, ex, "SUCCEEDED")
    # Prepare ran once, before the failure: its output (redrive count 0) is what Ask got again.
    assert json.loads(d["output"]) == {"order": 7, "at": 0, "approval": {"ok": True}}
    assert d["redriveStatus"] == "NOT_REDRIVABLE"
    assert d["redriveStatusReason"] == "Execution is SUCCEEDED and cannot be redriven."

    events = history(sfn, ex)
    types = [e["type"] for e in events]
    assert types.count("PassStateEntered") == 1
    assert types.count("TaskStateEntered") == 2
    assert types.index("ExecutionFailed") < types.index("ExecutionRedriven") < types.index("ExecutionSucceeded")
    redriven = events[types.index("ExecutionRedriven")]
    assert redriven["executionRedrivenEventDetails"] == {"redriveCount": 1}
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))

    listed = sfn.list_executions(stateMachineArn=arn, redriveFilter="REDRIVEN")["executions"]
    assert [x["executionArn"] for x in listed] == [ex] and listed[0]["redriveCount"] == 1
    assert sfn.list_executions(stateMachineArn=arn, redriveFilter="NOT_REDRIVEN")["executions"] == []

    with pytest.raises(ClientError) as e:
        sfn.redrive_execution(executionArn=ex)
    assert code(e) == "ExecutionNotRedrivable"
    with pytest.raises(ClientError) as e:
        sfn.redrive_execution(executionArn=ex.rsplit(":", 1)[0] + ":nope")
    assert code(e) == "ExecutionDoesNotExist"


def test_redrive_window_is_14_days(clock_server):
    sfn = clock_server.client("stepfunctions", inject_host_prefix=False)
    arn = sfn.create_state_machine(name=uid(), roleArn=ROLE, definition=json.dumps({
        "StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}))["stateMachineArn"]
    young = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    old = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    wait_status(sfn, young, "FAILED")
    wait_status(sfn, old, "FAILED")
    clock_server.advance(14 * 24 * 3600 - 60)
    sfn.redrive_execution(executionArn=young)
    # A Fail state fails again when redriven.
    d = wait_status(sfn, young, "FAILED")
    assert d["redriveCount"] == 1 and d["error"] == "E"
    clock_server.advance(120)
    d = sfn.describe_execution(executionArn=old)
    assert d["redriveStatus"] == "NOT_REDRIVABLE"
    assert d["redriveStatusReason"] == "Execution redrivable period exceeded."
    with pytest.raises(ClientError) as e:
        sfn.redrive_execution(executionArn=old)
    assert code(e) == "ExecutionNotRedrivable"
    express = sfn.create_state_machine(name=uid(), roleArn=ROLE, type="EXPRESS", definition=json.dumps({
        "StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E"}}}))["stateMachineArn"]
    out = sfn.start_sync_execution(stateMachineArn=express)
    assert out["status"] == "FAILED" and "redriveStatus" not in out


def test_redriven_wait_survives_kill_9(tmp_path):
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        arn = sfn.create_state_machine(name="redrive", roleArn=ROLE, definition=json.dumps({
            "StartAt": "A", "States": {
                "A": {"Type": "Pass", "Result": "a", "ResultPath": "$.a", "Next": "W"},
                "W": {"Type": "Wait", "Seconds": 3600, "Next": "B"},
                "B": {"Type": "Pass", "Parameters": {"a.$": "$.a", "n.$": "$$.Execution.RedriveCount"}, "End": True}}}))["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, name="one")["executionArn"]
        sfn.stop_execution(executionArn=ex, error="Stopped", cause="by hand")
        assert sfn.describe_execution(executionArn=ex)["status"] == "ABORTED"
        sfn.redrive_execution(executionArn=ex)
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = durable_server(tmp_path)
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        d = sfn.describe_execution(executionArn=ex)
        assert d["status"] == "RUNNING" and d["redriveCount"] == 1
        s.advance(3601)
        d = wait_status(sfn, ex, "SUCCEEDED")
        assert json.loads(d["output"]) == {"a": "a", "n": 1}
        types = [e["type"] for e in history(sfn, ex)]
        assert types.count("ExecutionRedriven") == 1 and types.count("ExecutionSucceeded") == 1
        assert types.count("PassStateEntered") == 2  # A once, B once
    finally:
        s.proc.kill()
        s.proc.wait()


# Fails for the items listed in FAIL; says which VERSION of its configuration answered.
PICKY = """
import os
def handler(event, context):
    if event["item"] in os.environ.get("FAIL", "").split(","):
        raise ValueError("item " + event["item"] + " is refused")
    return {"item": event["item"], "version": os.environ["VERSION"]}
"""


def history_after_redrive(sfn, arn):
    events = history(sfn, arn)
    types = [e["type"] for e in events]
    return events[types.index("ExecutionRedriven"):]


def wait_events(sfn, arn, kind, count, timeout=60.0):
    deadline = time.monotonic() + timeout
    while [e["type"] for e in history(sfn, arn)].count(kind) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {kind} in {arn}"
        time.sleep(0.05)


def test_redrive_reruns_only_the_failed_map_iteration_and_parallel_branch(clock_server):
    sfn = clock_server.client("stepfunctions", inject_host_prefix=False)
    lam = clock_server.client("lambda")
    fn = uid("picky")
    create_function(lam, fn, {"app.py": PICKY},
                    Environment={"Variables": {"FAIL": "b", "VERSION": "1"}})
    call = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": fn, "Payload": {"item.$": "$.item"}},
            "ResultSelector": {"r.$": "$.Payload"}, "End": True}
    # Item "b" waits an hour before its call, so it fails after every other call is done.
    arn = sfn.create_state_machine(name=uid(), roleArn=ROLE, definition=json.dumps({
        "StartAt": "Both", "States": {"Both": {"Type": "Parallel", "End": True, "Branches": [
            {"StartAt": "Each", "States": {"Each": {
                "Type": "Map", "ItemsPath": "$.items", "End": True,
                "ItemSelector": {"item.$": "$$.Map.Item.Value"},
                "ItemProcessor": {"StartAt": "Slow?", "States": {
                    "Slow?": {"Type": "Choice", "Choices": [
                        {"Variable": "$.item", "StringEquals": "b", "Next": "Later"}], "Default": "Call"},
                    "Later": {"Type": "Wait", "Seconds": 3600, "Next": "Call"},
                    "Call": call}}}}},
            {"StartAt": "Solo", "States": {"Solo": {
                "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": fn, "Payload": {"item": "solo"}},
                "ResultSelector": {"r.$": "$.Payload"}, "End": True}}}]}}}))["stateMachineArn"]
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": ["a", "b", "c"]}))["executionArn"]
    wait_events(sfn, ex, "TaskSucceeded", 3)  # a, c and the solo branch
    clock_server.advance(3600)
    d = wait_status(sfn, ex, "FAILED", timeout=60)
    assert d["error"] == "ValueError"
    first = [e["type"] for e in history(sfn, ex)]
    assert first.count("TaskScheduled") == 4

    lam.update_function_configuration(FunctionName=fn, Environment={"Variables": {"FAIL": "", "VERSION": "2"}})
    wait_updated(lam, fn)
    sfn.redrive_execution(executionArn=ex)
    # No clock move: item b resumes at its failed Call, not at the Wait before it.
    d = wait_status(sfn, ex, "SUCCEEDED", timeout=60)
    out = json.loads(d["output"])
    assert out == [
        [{"r": {"item": "a", "version": "1"}},
         {"r": {"item": "b", "version": "2"}},
         {"r": {"item": "c", "version": "1"}}],
        {"r": {"item": "solo", "version": "1"}},
    ]
    again = history_after_redrive(sfn, ex)
    types = [e["type"] for e in again]
    assert types.count("TaskScheduled") == 1
    assert [e["mapIterationStartedEventDetails"]["index"] for e in again
            if e["type"] == "MapIterationStarted"] == [1]
    assert types.count("WaitStateEntered") == 0 and types.count("ChoiceStateEntered") == 0
    assert types[:3] == ["ExecutionRedriven", "ParallelStateEntered", "ParallelStateStarted"]
    assert types.count("MapStateStarted") == 1 and types[-1] == "ExecutionSucceeded"
    events = history(sfn, ex)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))


def test_a_failed_map_redriven_after_kill_9_reruns_only_the_failed_iteration(tmp_path):
    s = durable_server(tmp_path)
    try:
        sqs = s.client("sqs")
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        queue = sqs.create_queue(QueueName="asks")["QueueUrl"]
        arn = sfn.create_state_machine(name="map-redrive", roleArn=ROLE, definition=json.dumps({
            "StartAt": "Each", "States": {"Each": {
                "Type": "Map", "ItemsPath": "$.items", "End": True,
                "ItemProcessor": {"StartAt": "Ask", "States": {"Ask": {
                    "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue, "MessageBody": {
                        "token.$": "$$.Task.Token", "item.$": "$", "redrives.$": "$$.Execution.RedriveCount"}},
                    "End": True}}}}}}))["stateMachineArn"]
        ex = sfn.start_execution(stateMachineArn=arn, name="one",
                                 input=json.dumps({"items": [0, 1, 2]}))["executionArn"]

        def asks(n):
            got = []
            deadline = time.monotonic() + 30
            while len(got) < n:
                assert time.monotonic() < deadline, got
                for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                                             WaitTimeSeconds=1).get("Messages", []):
                    got.append(json.loads(m["Body"]))
                    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
            return {b["item"]: b for b in got}

        first = asks(3)
        sfn.send_task_success(taskToken=first[0]["token"], output=json.dumps("first-0"))
        sfn.send_task_success(taskToken=first[2]["token"], output=json.dumps("first-2"))
        wait_events(sfn, ex, "TaskSucceeded", 2)
        sfn.send_task_failure(taskToken=first[1]["token"], error="No", cause="not yet")
        wait_status(sfn, ex, "FAILED")

        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = durable_server(tmp_path)
        sqs = s.client("sqs")
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        sfn.redrive_execution(executionArn=ex)
        again = asks(1)
        assert list(again) == [1] and again[1]["redrives"] == 1
        # Only item 1 asks again: nothing else arrives.
        assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []) == []

        # And the redriven run itself survives a kill -9 while it waits for the token.
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = durable_server(tmp_path)
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        sfn.send_task_success(taskToken=again[1]["token"], output=json.dumps("second-1"))
        d = wait_status(sfn, ex, "SUCCEEDED")
        assert json.loads(d["output"]) == ["first-0", "second-1", "first-2"]
        types = [e["type"] for e in history(sfn, ex)]
        assert types.count("MapIterationStarted") == 4 and types.count("TaskSubmitted") == 4
        assert types.count("ExecutionRedriven") == 1 and types.count("ExecutionSucceeded") == 1
    finally:
        s.proc.kill()
        s.proc.wait()
