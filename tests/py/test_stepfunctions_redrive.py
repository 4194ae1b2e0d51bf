"""RedriveExecution through boto3: a failed execution resumes at the failed state with its
input (the states before it do not run again), AWS's redrive fields and ExecutionRedriven
event, ExecutionNotRedrivable, the 14-day window on the manual clock, and a redriven
execution in a Wait surviving `kill -9`."""

import json
import signal
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT
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
