"""Step Functions through boto3: state machines, executions of every state type, Lambda tasks
with Retry/Catch, .waitForTaskToken over SQS, nested executions, activities, Express sync
executions, and long Waits finished by moving the manual clock."""

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, Server
from lambda_util import create_function

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def uid(prefix="sm"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_machine(sfn, definition, kind="STANDARD", name=None):
    return sfn.create_state_machine(name=name or uid(), definition=json.dumps(definition),
                                    roleArn=ROLE, type=kind)["stateMachineArn"]


def wait_done(sfn, arn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.05)


def history_types(sfn, arn):
    return [e["type"] for e in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]]


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


@pytest.fixture(scope="module")
def csfn(clock_server):
    return clock_server.client("stepfunctions", inject_host_prefix=False)


PASS_MACHINE = {"StartAt": "A", "States": {
    "A": {"Type": "Pass", "Parameters": {"greeting.$": "States.Format('hello {}', $.who)"}, "Next": "B"},
    "B": {"Type": "Pass", "Result": 42, "ResultPath": "$.answer", "End": True}}}


def test_state_machine_lifecycle(sfn):
    name = uid()
    arn = make_machine(sfn, PASS_MACHINE, name=name)
    assert arn == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}"
    d = sfn.describe_state_machine(stateMachineArn=arn)
    assert d["name"] == name and d["type"] == "STANDARD" and d["status"] == "ACTIVE"
    assert json.loads(d["definition"]) == PASS_MACHINE
    # Creating it again with the same settings is idempotent; with others it conflicts.
    assert make_machine(sfn, PASS_MACHINE, name=name) == arn
    with pytest.raises(ClientError) as e:
        make_machine(sfn, {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}, name=name)
    assert e.value.response["Error"]["Code"] == "StateMachineAlreadyExists"
    names = [m["name"] for m in sfn.get_paginator("list_state_machines").paginate().build_full_result()["stateMachines"]]
    assert name in names
    new_def = {"StartAt": "X", "States": {"X": {"Type": "Succeed"}}}
    upd = sfn.update_state_machine(stateMachineArn=arn, definition=json.dumps(new_def))
    assert upd["revisionId"] != d["revisionId"]
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"]) == new_def
    sfn.tag_resource(resourceArn=arn, tags=[{"key": "team", "value": "a"}])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "team", "value": "a"}]
    sfn.untag_resource(resourceArn=arn, tagKeys=["team"])
    assert sfn.list_tags_for_resource(resourceArn=arn)["tags"] == []
    sfn.delete_state_machine(stateMachineArn=arn)
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn=arn)
    assert e.value.response["Error"]["Code"] == "StateMachineDoesNotExist"


def test_invalid_definitions_are_refused_with_aws_diagnostics(sfn):
    bad = {"StartAt": "pass1", "States": {"pass1": {"Type": "Pass", "Next": "pass3"},
                                           "pass2": {"Type": "Pass", "End": True}}}
    with pytest.raises(ClientError) as e:
        make_machine(sfn, bad)
    assert e.value.response["Error"]["Code"] == "InvalidDefinition"
    assert e.value.response["Error"]["Message"] == (
        "Invalid State Machine Definition: 'MISSING_TRANSITION_TARGET: Missing 'Next' target: pass3 "
        "at /States/pass1/Next, MISSING_TRANSITION_TARGET: State \"pass2\" is not reachable. at /States/pass2'")
    v = sfn.validate_state_machine_definition(definition=json.dumps(bad))
    assert v["result"] == "FAIL"
    assert [d["code"] for d in v["diagnostics"]] == ["MISSING_TRANSITION_TARGET"] * 2
    assert v["diagnostics"][0]["location"] == "/States/pass1/Next"
    assert sfn.validate_state_machine_definition(definition=json.dumps(PASS_MACHINE))["result"] == "OK"


def test_execution_output_history_and_idempotent_start(sfn):
    arn = make_machine(sfn, PASS_MACHINE)
    start = sfn.start_execution(stateMachineArn=arn, name="run1", input=json.dumps({"who": "sfn"}))
    d = wait_done(sfn, start["executionArn"])
    assert d["status"] == "SUCCEEDED"
    assert json.loads(d["output"]) == {"greeting": "hello sfn", "answer": 42}
    events = sfn.get_execution_history(executionArn=start["executionArn"])["events"]
    assert [e["type"] for e in events] == ["ExecutionStarted", "PassStateEntered", "PassStateExited",
                                           "PassStateEntered", "PassStateExited", "ExecutionSucceeded"]
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[1]["stateEnteredEventDetails"]["name"] == "A"
    assert events[0]["previousEventId"] == 0 and events[1]["previousEventId"] == 1
    rev = sfn.get_execution_history(executionArn=start["executionArn"], reverseOrder=True, maxResults=2)
    assert [e["id"] for e in rev["events"]] == [6, 5] and "nextToken" in rev
    # The name of a closed execution cannot be reused.
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=arn, name="run1", input=json.dumps({"who": "sfn"}))
    assert e.value.response["Error"]["Code"] == "ExecutionAlreadyExists"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=arn, input="{not json")
    assert e.value.response["Error"]["Code"] == "InvalidExecutionInput"
    sm = sfn.describe_state_machine_for_execution(executionArn=start["executionArn"])
    assert sm["stateMachineArn"] == arn and json.loads(sm["definition"]) == PASS_MACHINE


def test_list_executions_filters_and_pages(sfn):
    arn = make_machine(sfn, {"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
        {"Variable": "$.ok", "BooleanEquals": True, "Next": "S"}], "Default": "F"},
        "S": {"Type": "Succeed"}, "F": {"Type": "Fail", "Error": "Nope", "Cause": "not ok"}}})
    arns = [sfn.start_execution(stateMachineArn=arn, input=json.dumps({"ok": i % 2 == 0}))["executionArn"]
            for i in range(5)]
    for a in arns:
        wait_done(sfn, a)
    failed = sfn.list_executions(stateMachineArn=arn, statusFilter="FAILED")["executions"]
    assert len(failed) == 2
    d = sfn.describe_execution(executionArn=failed[0]["executionArn"])
    assert d["error"] == "Nope" and d["cause"] == "not ok"
    pages = list(sfn.get_paginator("list_executions").paginate(stateMachineArn=arn, PaginationConfig={"PageSize": 2}))
    assert [len(p["executions"]) for p in pages] == [2, 2, 1]
    assert sorted(e["executionArn"] for p in pages for e in p["executions"]) == sorted(arns)


def test_map_and_parallel(sfn):
    arn = make_machine(sfn, {"StartAt": "Par", "States": {
        "Par": {"Type": "Parallel", "Branches": [
            {"StartAt": "M", "States": {"M": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                                              "ItemSelector": {"n.$": "$$.Map.Item.Value", "i.$": "$$.Map.Item.Index"},
                                              "ItemProcessor": {"StartAt": "Sq", "States": {"Sq": {
                                                  "Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.n, $.i)"},
                                                  "OutputPath": "$.v", "End": True}}}, "End": True}}},
            {"StartAt": "L", "States": {"L": {"Type": "Pass", "Parameters": {"len.$": "States.ArrayLength($.items)"}, "End": True}}}],
            "ResultSelector": {"sums.$": "$[0]", "len.$": "$[1].len"}, "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"items": [10, 20, 30]}))["executionArn"]
    d = wait_done(sfn, ex)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"sums": [10, 21, 32], "len": 3}
    types = history_types(sfn, ex)
    assert types.count("MapIterationStarted") == 3 and types.count("MapIterationSucceeded") == 3
    assert "ParallelStateSucceeded" in types and "MapStateSucceeded" in types


def test_express_start_sync_execution(sfn):
    arn = make_machine(sfn, PASS_MACHINE, kind="EXPRESS")
    out = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"who": "express"}))
    assert out["status"] == "SUCCEEDED"
    assert json.loads(out["output"]) == {"greeting": "hello express", "answer": 42}
    assert ":express:" in out["executionArn"]
    failing = make_machine(sfn, {"StartAt": "F", "States": {"F": {"Type": "Fail", "Error": "E", "Cause": "c"}}}, kind="EXPRESS")
    out = sfn.start_sync_execution(stateMachineArn=failing)
    assert (out["status"], out["error"], out["cause"]) == ("FAILED", "E", "c")
    std = make_machine(sfn, PASS_MACHINE)
    with pytest.raises(ClientError) as e:
        sfn.start_sync_execution(stateMachineArn=std)
    assert e.value.response["Error"]["Code"] == "StateMachineTypeNotSupported"


def test_wait_for_task_token_over_sqs(server, sfn):
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName=uid("q"))["QueueUrl"]
    arn = make_machine(sfn, {"StartAt": "Ask", "States": {"Ask": {
        "Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
        "Parameters": {"QueueUrl": queue, "MessageBody": {"token.$": "$$.Task.Token", "order.$": "$.order"}},
        "ResultPath": "$.approval", "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"order": 7}))["executionArn"]
    msgs = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    body = json.loads(msgs[0]["Body"])
    assert body["order"] == 7
    assert sfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    sfn.send_task_heartbeat(taskToken=body["token"])
    sfn.send_task_success(taskToken=body["token"], output=json.dumps({"approved": True}))
    d = wait_done(sfn, ex)
    assert json.loads(d["output"]) == {"order": 7, "approval": {"approved": True}}
    assert "TaskSubmitted" in history_types(sfn, ex)
    # The token is spent.
    with pytest.raises(ClientError) as e:
        sfn.send_task_success(taskToken=body["token"], output="{}")
    assert e.value.response["Error"]["Code"] == "TaskTimedOut"
    with pytest.raises(ClientError) as e:
        sfn.send_task_failure(taskToken="garbage")
    assert e.value.response["Error"]["Code"] == "InvalidToken"


def test_task_failure_by_token_is_caught(server, sfn):
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName=uid("q"))["QueueUrl"]
    arn = make_machine(sfn, {"StartAt": "Ask", "States": {
        "Ask": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                "Parameters": {"QueueUrl": queue, "MessageBody.$": "$$.Task.Token"},
                "Catch": [{"ErrorEquals": ["Rejected"], "ResultPath": "$.why", "Next": "Sorry"}], "End": True},
        "Sorry": {"Type": "Pass", "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn)["executionArn"]
    token = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"][0]["Body"]
    sfn.send_task_failure(taskToken=token, error="Rejected", cause="no budget")
    d = wait_done(sfn, ex)
    assert json.loads(d["output"]) == {"why": {"Error": "Rejected", "Cause": "no budget"}}


def test_unserved_integration_fails_clearly(sfn):
    arn = make_machine(sfn, {"StartAt": "T", "States": {"T": {
        "Type": "Task", "Resource": "arn:aws:states:::aws-sdk:athena:startQueryExecution", "Parameters": {"QueryString": "SELECT 1"}, "End": True}}})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "States.TaskFailed"
    assert "athena" in d["cause"]


def test_sdk_integration_calls_a_served_service(server, sfn):
    arn = make_machine(sfn, {"StartAt": "Q", "States": {
        "Q": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sqs:createQueue",
              "Parameters": {"QueueName.$": "$.name"}, "Next": "Bad"},
        "Bad": {"Type": "Task", "Resource": "arn:aws:states:::aws-sdk:sqs:getQueueUrl",
                "Parameters": {"QueueName": "does-not-exist-anywhere"},
                "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.err", "Next": "Done"}], "End": True},
        "Done": {"Type": "Pass", "End": True}}})
    name = uid("q")
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn, input=json.dumps({"name": name}))["executionArn"])
    out = json.loads(d["output"])
    assert out["QueueUrl"].endswith("/" + name)
    assert out["err"]["Error"].startswith("SQS.")
    assert server.client("sqs").get_queue_url(QueueName=name)["QueueUrl"] == out["QueueUrl"]


def test_nested_start_execution_sync(sfn):
    child = make_machine(sfn, {"StartAt": "Double", "States": {"Double": {
        "Type": "Pass", "Parameters": {"v.$": "States.MathAdd($.n, $.n)"}, "End": True}}})
    parent = make_machine(sfn, {"StartAt": "Run", "States": {
        "Run": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.n"}},
                "OutputPath": "$.Output", "Next": "Old"},
        "Old": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync",
                "Parameters": {"StateMachineArn": child, "Input": {"n.$": "$.v"}},
                "ResultSelector": {"out.$": "States.StringToJson($.Output)"}, "End": True}}})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=parent, input=json.dumps({"n": 5}))["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"out": {"v": 20}}
    assert len(sfn.list_executions(stateMachineArn=child)["executions"]) == 2


def test_activities(sfn):
    name = uid("act")
    act = sfn.create_activity(name=name)["activityArn"]
    assert act == f"arn:aws:states:{REGION}:{ACCOUNT}:activity:{name}"
    assert sfn.describe_activity(activityArn=act)["name"] == name
    assert act in [a["activityArn"] for a in sfn.list_activities()["activities"]]
    arn = make_machine(sfn, {"StartAt": "Work", "States": {"Work": {"Type": "Task", "Resource": act, "End": True}}})
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"job": 1}))["executionArn"]
    task = sfn.get_activity_task(activityArn=act, workerName="w1")
    assert json.loads(task["input"]) == {"job": 1}
    sfn.send_task_success(taskToken=task["taskToken"], output=json.dumps({"done": 1}))
    d = wait_done(sfn, ex)
    assert json.loads(d["output"]) == {"done": 1}
    assert history_types(sfn, ex) == ["ExecutionStarted", "TaskStateEntered", "ActivityScheduled",
                                      "ActivityStarted", "ActivitySucceeded", "TaskStateExited",
                                      "ExecutionSucceeded"]
    sfn.delete_activity(activityArn=act)
    with pytest.raises(ClientError) as e:
        sfn.describe_activity(activityArn=act)
    assert e.value.response["Error"]["Code"] == "ActivityDoesNotExist"


def test_stop_execution(csfn):
    arn = make_machine(csfn, {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "End": True}}})
    ex = csfn.start_execution(stateMachineArn=arn)["executionArn"]
    assert csfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    csfn.stop_execution(executionArn=ex, error="Manual", cause="stopped by test")
    d = csfn.describe_execution(executionArn=ex)
    assert (d["status"], d["error"], d["cause"]) == ("ABORTED", "Manual", "stopped by test")
    assert history_types(csfn, ex)[-1] == "ExecutionAborted"


def test_one_hour_wait_finishes_when_the_clock_moves(clock_server, csfn):
    arn = make_machine(csfn, {"StartAt": "W", "States": {
        "W": {"Type": "Wait", "Seconds": 3600, "Next": "Done"}, "Done": {"Type": "Pass", "Result": "late", "End": True}}})
    ex = csfn.start_execution(stateMachineArn=arn)["executionArn"]
    clock_server.advance(3599)
    time.sleep(0.2)
    assert csfn.describe_execution(executionArn=ex)["status"] == "RUNNING"
    clock_server.advance(1)
    d = wait_done(csfn, ex)
    assert json.loads(d["output"]) == "late"
    assert (d["stopDate"] - d["startDate"]).total_seconds() >= 3600


FLAKY = """
import json, os
def handler(event, context):
    if event.get("fail"):
        raise ValueError("bad input " + str(event["fail"]))
    return {"doubled": event["n"] * 2}
"""


def test_lambda_task_with_retry_and_catch(clock_server, csfn):
    lam = clock_server.client("lambda")
    fn = uid("fn")
    create_function(lam, fn, {"app.py": FLAKY})
    fn_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"
    arn = make_machine(csfn, {"StartAt": "Call", "States": {
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Parameters": {"FunctionName": fn, "Payload.$": "$"},
                 "ResultSelector": {"r.$": "$.Payload"},
                 "Retry": [{"ErrorEquals": ["ValueError"], "IntervalSeconds": 2, "MaxAttempts": 2, "BackoffRate": 2}],
                 "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Recover"}],
                 "Next": "Bare"},
        "Bare": {"Type": "Task", "Resource": fn_arn, "Parameters": {"n": 1}, "ResultPath": "$.bare", "End": True},
        "Recover": {"Type": "Pass", "End": True}}})
    ok = csfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 21}))["executionArn"]
    d = wait_done(csfn, ok, timeout=60)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"r": {"doubled": 42}, "bare": {"doubled": 2}}
    assert "LambdaFunctionSucceeded" in history_types(csfn, ok)

    bad = csfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 1, "fail": 3}))["executionArn"]
    for wait in (2, 4):
        deadline = time.monotonic() + 60
        while history_types(csfn, bad).count("TaskFailed") < (1 if wait == 2 else 2):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        clock_server.advance(wait)
    d = wait_done(csfn, bad, timeout=60)
    out = json.loads(d["output"])
    assert out["error"]["Error"] == "ValueError"
    assert "bad input 3" in json.loads(out["error"]["Cause"])["errorMessage"]
    assert history_types(csfn, bad).count("TaskFailed") == 3


DOUBLER = """
def handler(event, context):
    return {"doubled": event["n"] * 2}
"""


def test_jsonata_machine_with_variables_through_a_lambda_task(server, sfn):
    lam = server.client("lambda")
    fn = uid("fn")
    create_function(lam, fn, {"app.py": DOUBLER})
    arn = make_machine(sfn, {"QueryLanguage": "JSONata", "StartAt": "Init", "States": {
        "Init": {"Type": "Pass", "Assign": {"factor": "{% $states.input.factor %}",
                                            "who": "{% $uppercase($states.input.who) %}"}, "Next": "Call"},
        "Call": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                 "Arguments": {"FunctionName": fn, "Payload": {"n": "{% $states.input.n * $factor %}"}},
                 "Assign": {"doubled": "{% $states.result.Payload.doubled %}"},
                 "Output": {"status": "{% $states.result.StatusCode %}"}, "Next": "Check"},
        "Check": {"Type": "Choice", "Choices": [
            {"Condition": "{% $doubled > 10 %}", "Assign": {"size": "big"}, "Next": "Big"}], "Default": "Small"},
        "Big": {"Type": "Pass", "Output": {"who": "{% $who %}", "doubled": "{% $doubled %}", "size": "{% $size %}",
                                           "status": "{% $states.input.status %}", "md5": "{% $hash($who, 'MD5') %}"},
                "End": True},
        "Small": {"Type": "Fail", "Error": "Small", "Cause": "{% 'got ' & $string($doubled) %}"}}})
    big = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 3, "factor": 2, "who": "ada"}))["executionArn"]
    d = wait_done(sfn, big, timeout=60)
    assert d["status"] == "SUCCEEDED", d
    assert json.loads(d["output"]) == {"who": "ADA", "doubled": 12, "size": "big", "status": 200,
                                       "md5": "347cbca85aed318356cd4f78b6509882"}
    events = sfn.get_execution_history(executionArn=big, maxResults=1000)["events"]
    sched = [e for e in events if e["type"] == "TaskScheduled"][0]["taskScheduledEventDetails"]
    assert json.loads(sched["parameters"]) == {"FunctionName": fn, "Payload": {"n": 6}}

    small = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": 1, "factor": 2, "who": "bo"}))["executionArn"]
    d = wait_done(sfn, small, timeout=60)
    assert d["status"] == "FAILED" and d["error"] == "Small" and d["cause"] == "got 4", d


def test_jsonata_errors_and_jsonpath_variables_in_express_sync(sfn):
    arn = make_machine(sfn, {"QueryLanguage": "JSONata", "StartAt": "P", "States": {
        "P": {"Type": "Pass", "Output": {"v": "{% $states.input.missing %}"}, "End": True}}}, kind="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=arn, input="{}")
    assert r["status"] == "FAILED" and r["error"] == "States.QueryEvaluationError", r
    assert "The JSONata expression '$states.input.missing' specified for the field 'Output/v' returned nothing (undefined)." in r["cause"]

    arn = make_machine(sfn, {"StartAt": "A", "States": {
        "A": {"Type": "Pass", "Assign": {"user.$": "$.user", "n": 3}, "Next": "B"},
        "B": {"Type": "Pass", "Parameters": {"name.$": "$user.name", "greeting.$": "States.Format('hi {}', $user.name)",
                                             "n.$": "$n"}, "End": True}}}, kind="EXPRESS")
    r = sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"user": {"name": "Ada"}}))
    assert r["status"] == "SUCCEEDED", r
    assert json.loads(r["output"]) == {"name": "Ada", "greeting": "hi Ada", "n": 3}


def test_jsonata_definitions_are_validated(sfn):
    for definition, want in [
        ({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "InputPath": "$.a", "End": True}}},
         "The field \"InputPath\" is not supported by Step Functions when the QueryLanguage is JSONata"),
        ({"QueryLanguage": "JSONata", "StartAt": "P", "States": {"P": {"Type": "Pass", "Output": "{% $x + %}", "End": True}}},
         "specified for the field 'Output' is invalid"),
    ]:
        with pytest.raises(ClientError) as e:
            make_machine(sfn, definition)
        assert e.value.response["Error"]["Code"] == "InvalidDefinition"
        assert want in e.value.response["Error"]["Message"]


def test_test_state(server, sfn):
    # JSONPath, with the data flow at DEBUG.
    r = sfn.test_state(definition=json.dumps({"Type": "Pass", "InputPath": "$.a", "Parameters": {"x.$": "$.b"},
                                              "ResultPath": "$.r", "Next": "After"}),
                       input=json.dumps({"a": {"b": 1}}), inspectionLevel="DEBUG")
    assert r["status"] == "SUCCEEDED" and r["nextState"] == "After"
    assert json.loads(r["output"]) == {"a": {"b": 1}, "r": {"x": 1}}
    assert json.loads(r["inspectionData"]["input"]) == {"a": {"b": 1}}
    assert json.loads(r["inspectionData"]["afterInputPath"]) == {"b": 1}
    assert json.loads(r["inspectionData"]["afterResultPath"]) == {"a": {"b": 1}, "r": {"x": 1}}
    # INFO leaves inspectionData out; End means no next state.
    r = sfn.test_state(definition=json.dumps({"Type": "Pass", "End": True}), input="{}")
    assert r["status"] == "SUCCEEDED" and "nextState" not in r and "inspectionData" not in r
    # JSONata Choice with variables in and out.
    choice = {"Type": "Choice", "QueryLanguage": "JSONata",
              "Choices": [{"Condition": "{% $limit < $states.input.n %}", "Assign": {"seen": "{% $states.input.n %}"}, "Next": "High"}],
              "Default": "Low"}
    r = sfn.test_state(definition=json.dumps(choice), input=json.dumps({"n": 5}), variables=json.dumps({"limit": 3}),
                       inspectionLevel="DEBUG")
    assert r["status"] == "SUCCEEDED" and r["nextState"] == "High", r
    assert json.loads(r["inspectionData"]["variables"]) == {"limit": 3, "seen": 5}
    # A Task with a mocked result; one state of a whole machine by name.
    machine = {"QueryLanguage": "JSONata", "StartAt": "T", "States": {
        "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Arguments": {"FunctionName": "f", "Payload": "{% $states.input %}"},
              "Output": "{% $states.result.Payload.v + 1 %}", "Retry": [{"ErrorEquals": ["Flaky"]}],
              "Catch": [{"ErrorEquals": ["States.ALL"], "Output": "{% $states.errorOutput %}", "Next": "Recover"}], "Next": "Done"},
        "Recover": {"Type": "Succeed"}, "Done": {"Type": "Succeed"}}}
    r = sfn.test_state(definition=json.dumps(machine), stateName="T", input=json.dumps({"q": 1}), inspectionLevel="DEBUG",
                       mock={"result": json.dumps({"Payload": {"v": 41}})})
    assert r["status"] == "SUCCEEDED" and r["nextState"] == "Done" and json.loads(r["output"]) == 42, r
    assert json.loads(r["inspectionData"]["afterArguments"]) == {"FunctionName": "f", "Payload": {"q": 1}}
    assert json.loads(r["inspectionData"]["result"]) == {"Payload": {"v": 41}}
    r = sfn.test_state(definition=json.dumps(machine), stateName="T", input="{}",
                       mock={"errorOutput": {"error": "Boom", "cause": "bad"}})
    assert r["status"] == "CAUGHT_ERROR" and r["nextState"] == "Recover" and r["error"] == "Boom", r
    assert json.loads(r["output"]) == {"Error": "Boom", "Cause": "bad"}
    r = sfn.test_state(definition=json.dumps(machine), stateName="T", input="{}",
                       mock={"errorOutput": {"error": "Flaky", "cause": "again"}})
    assert r["status"] == "RETRIABLE" and r["error"] == "Flaky" and "output" not in r, r
    # A Fail state, and a real Lambda call.
    r = sfn.test_state(definition=json.dumps({"Type": "Fail", "Error": "E", "Cause": "C"}))
    assert (r["status"], r["error"], r["cause"]) == ("FAILED", "E", "C")
    lam = server.client("lambda")
    fn = uid("fn")
    create_function(lam, fn, {"app.py": DOUBLER})
    r = sfn.test_state(definition=json.dumps({"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                                              "Parameters": {"FunctionName": fn, "Payload.$": "$"},
                                              "ResultSelector": {"d.$": "$.Payload.doubled"}, "End": True}),
                       roleArn=ROLE, input=json.dumps({"n": 4}))
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"d": 8}, r
    with pytest.raises(ClientError) as e:
        sfn.test_state(definition=json.dumps({"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": True}))
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_test_state_map_and_parallel_with_a_mock(sfn):
    """AWS tests Map and Parallel states only with a mock, which stands for the result of every
    iteration or branch; the state's own input and output processing and Catch still apply."""
    map_state = {"Type": "Map", "InputPath": "$.in", "ItemsPath": "$.items",
                 "ItemProcessor": {"StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
                 "ResultSelector": {"n.$": "States.ArrayLength($)"}, "ResultPath": "$.count", "Next": "After"}
    r = sfn.test_state(definition=json.dumps(map_state), input=json.dumps({"in": {"items": [1, 2, 3], "k": "v"}}),
                       mock={"result": json.dumps([10, 20, 30])}, inspectionLevel="DEBUG")
    assert r["status"] == "SUCCEEDED" and r["nextState"] == "After", r
    # ResultPath places the result into the state's raw input (before InputPath), as in ASL.
    assert json.loads(r["output"]) == {"in": {"items": [1, 2, 3], "k": "v"}, "count": {"n": 3}}
    assert json.loads(r["inspectionData"]["afterInputPath"]) == {"items": [1, 2, 3], "k": "v"}
    assert json.loads(r["inspectionData"]["result"]) == [10, 20, 30]
    parallel = {"QueryLanguage": "JSONata", "StartAt": "Fan", "States": {
        "Fan": {"Type": "Parallel", "Branches": [{"StartAt": "A", "States": {"A": {"Type": "Succeed"}}}],
                "Output": "{% $states.result[0] %}",
                "Catch": [{"ErrorEquals": ["States.BranchFailed"], "Output": "{% $states.errorOutput.Cause %}", "Next": "Mend"}],
                "End": True},
        "Mend": {"Type": "Succeed"}}}
    r = sfn.test_state(definition=json.dumps(parallel), stateName="Fan", input="{}",
                       mock={"result": json.dumps([{"a": 1}, {"b": 2}])})
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == {"a": 1} and "nextState" not in r, r
    r = sfn.test_state(definition=json.dumps(parallel), stateName="Fan", input="{}",
                       mock={"errorOutput": {"error": "States.BranchFailed", "cause": "a branch broke"}})
    assert r["status"] == "CAUGHT_ERROR" and r["nextState"] == "Mend" and json.loads(r["output"]) == "a branch broke", r
    for state in (map_state, parallel["States"]["Fan"]):
        with pytest.raises(ClientError) as e:
            sfn.test_state(definition=json.dumps(state), input="{}")
        assert e.value.response["Error"]["Code"] == "ValidationException"



def test_test_state_configuration_simulates_failed_iterations_and_retries(sfn):
    """stateConfiguration: mapIterationFailureCount failed iterations are checked against the
    Map's ToleratedFailure fields (States.ExceedToleratedFailureThreshold, then Retry/Catch);
    retrierRetryCount retries count as made; errorCausedByState names an inner state."""
    base = {"Type": "Map", "QueryLanguage": "JSONata", "Items": "{% $states.input.Values %}",
            "ItemProcessor": {"StartAt": "Work", "States": {"Work": {
                "Type": "Task", "QueryLanguage": "JSONata", "Resource": "arn:aws:states:::lambda:invoke",
                "Arguments": {"FunctionName": "f", "Payload": "{% $states.input %}"}, "End": True}}},
            "ToleratedFailureCount": 1, "End": True}
    with_catch = dict(base, Catch=[
        {"ErrorEquals": ["MockException"], "Next": "Mocked"},
        {"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "Output": "{% $states.errorOutput %}",
         "Next": "Threshold"}])
    with_retry = dict(base, Retry=[{"ErrorEquals": ["MockException"], "MaxAttempts": 3},
                                   {"ErrorEquals": ["States.ExceedToleratedFailureThreshold"], "MaxAttempts": 2}])
    items = json.dumps({"Values": ["first", "second", "third"]})
    result = {"result": json.dumps([1, 1, 1])}

    def run(state, failures, level="DEBUG", **kw):
        return sfn.test_state(definition=json.dumps(state), input=items, inspectionLevel=level,
                              stateConfiguration={"mapIterationFailureCount": failures}, **kw)

    r = run(base, 1, mock=result)
    assert r["status"] == "SUCCEEDED" and json.loads(r["output"]) == [1, 1, 1], r
    assert r["inspectionData"]["toleratedFailureCount"] == 1 and r["inspectionData"]["maxConcurrency"] == 0
    r = run(base, 2, mock=result)
    assert (r["status"], r["error"], r["cause"]) == (
        "FAILED", "States.ExceedToleratedFailureThreshold", "The specified tolerated failure threshold was exceeded"), r
    r = run(with_catch, 2, mock=result)
    assert r["status"] == "CAUGHT_ERROR" and r["nextState"] == "Threshold", r
    assert json.loads(r["output"])["Error"] == "States.ExceedToleratedFailureThreshold"
    assert r["inspectionData"]["errorDetails"] == {"catchIndex": 1}
    r = run(with_retry, 2, mock=result)
    assert r["status"] == "RETRIABLE" and r["error"] == "States.ExceedToleratedFailureThreshold", r
    assert r["inspectionData"]["errorDetails"] == {"retryIndex": 1, "retryBackoffIntervalSeconds": 1}
    # Without ToleratedFailure fields the count has nothing to exceed.
    plain = {k: v for k, v in base.items() if k != "ToleratedFailureCount"}
    assert run(plain, 3, level="INFO", mock=result)["status"] == "SUCCEEDED"
    # A percentage needs the items: 1 of 3 is above 30%.
    pct = dict(plain, ToleratedFailurePercentage=34)
    assert run(pct, 1, level="INFO", mock=result)["status"] == "SUCCEEDED"
    pct = dict(plain, ToleratedFailurePercentage=30)
    assert run(pct, 1, level="INFO", mock=result)["status"] == "FAILED"
    # A mocked error is the Map's error whatever the count.
    err = {"errorOutput": {"error": "MockException", "cause": "Mock the error cause."}}
    for n in (0, 2):
        r = sfn.test_state(definition=json.dumps(base), input=items, mock=err,
                           stateConfiguration={"mapIterationFailureCount": n, "errorCausedByState": "Work"})
        assert (r["status"], r["error"]) == ("FAILED", "MockException"), r
    with pytest.raises(ClientError) as e:
        sfn.test_state(definition=json.dumps(base), input=items, mock=err,
                       stateConfiguration={"errorCausedByState": "Nowhere"})
    assert e.value.response["Error"]["Code"] == "ValidationException"

    task = {"QueryLanguage": "JSONata", "Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Arguments": {"FunctionName": "foo", "Payload": "bar"},
            "Retry": [{"ErrorEquals": ["MockException"], "IntervalSeconds": 1, "MaxAttempts": 5, "BackoffRate": 2.0}],
            "End": True}
    r = sfn.test_state(definition=json.dumps(task), inspectionLevel="DEBUG", mock=err,
                       stateConfiguration={"retrierRetryCount": 4})
    assert r["status"] == "RETRIABLE", r
    assert r["inspectionData"]["errorDetails"] == {"retryIndex": 0, "retryBackoffIntervalSeconds": 16}
    r = sfn.test_state(definition=json.dumps(task), inspectionLevel="DEBUG", mock=err,
                       stateConfiguration={"retrierRetryCount": 5})
    assert (r["status"], r["error"]) == ("FAILED", "MockException"), r
    assert r["inspectionData"]["errorDetails"] == {"retryIndex": 0}

    # ItemReader data stands for what the reader read: 2 of 4 items is above 25%.
    reader = {"Type": "Map", "ItemReader": {"Resource": "arn:aws:states:::s3:getObject",
                                            "ReaderConfig": {"InputType": "JSON"},
                                            "Parameters": {"Bucket.$": "$.Bucket", "Key.$": "$.Key"}},
              "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                                "StartAt": "P", "States": {"P": {"Type": "Pass", "End": True}}},
              "ToleratedFailurePercentage": 25, "End": True}
    for n, status in ((1, "SUCCEEDED"), (2, "FAILED")):
        r = sfn.test_state(definition=json.dumps(reader), input=json.dumps({"Bucket": "b", "Key": "k"}),
                           mock={"result": json.dumps([1, 4, 9, 16])},
                           stateConfiguration={"mapIterationFailureCount": n,
                                               "mapItemReaderData": json.dumps([1, 2, 3, 4])})
        assert r["status"] == status, (n, r)


def test_status_changes_reach_eventbridge(server, sfn):
    events, sqs = server.client("events"), server.client("sqs")
    url = sqs.create_queue(QueueName=uid("q"))["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    arn = make_machine(sfn, PASS_MACHINE)
    rule = uid("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.states"], "detail-type": ["Step Functions Execution Status Change"],
        "detail": {"stateMachineArn": [arn]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": qarn}])
    ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"who": "eb"}))["executionArn"]
    wait_done(sfn, ex)
    seen = {}
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1, MaxNumberOfMessages=10).get("Messages", []):
            body = json.loads(m["Body"])
            seen[body["detail"]["status"]] = body
    assert set(seen) == {"RUNNING", "SUCCEEDED"}
    done = seen["SUCCEEDED"]
    assert done["source"] == "aws.states" and done["resources"] == [ex]
    assert done["detail"]["executionArn"] == ex
    assert json.loads(done["detail"]["output"]) == {"greeting": "hello eb", "answer": 42}
