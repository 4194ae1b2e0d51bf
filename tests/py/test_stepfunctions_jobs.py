"""Step Functions' Glue and ECS integrations through boto3: `glue:startJobRun(.sync)` running a
Python shell job and `ecs:runTask(.sync)` running a Fargate task on the process executor,
with AWS's output shapes (the JobRun; the Task in PascalCase) and failures as
`States.TaskFailed` whose cause is the final run or task."""

import json
import time
import uuid

import pytest

from conftest import ACCOUNT

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"
NETWORK = {"AwsvpcConfiguration": {"Subnets": ["subnet-12345678"], "AssignPublicIp": "ENABLED"}}


def uid(prefix="j"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_done(sfn, arn, timeout=90.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline, f"{arn} still running"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


def machine(sfn, resource, parameters, more_states=None, **extra):
    states = {"Run": {"Type": "Task", "Resource": resource, "Parameters": parameters, "End": True, **extra},
              **(more_states or {})}
    return sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps({
        "StartAt": "Run", "States": states}))["stateMachineArn"]


def glue_job(glue, tmp_path, body):
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.py"
    path.write_text(body)
    name = uid("job")
    glue.create_job(Name=name, Role=ROLE, Command={"Name": "pythonshell", "ScriptLocation": str(path),
                                                   "PythonVersion": "3.9"})
    return name


def test_glue_start_job_run_sync(server, sfn, tmp_path):
    glue = server.client("glue")
    ok = glue_job(glue, tmp_path, "import sys\nfrom awsglue.utils import getResolvedOptions\n"
                                  "args = getResolvedOptions(sys.argv, ['who'])\nprint('hello', args['who'])\n")
    arn = machine(sfn, "arn:aws:states:::glue:startJobRun.sync",
                  {"JobName": ok, "Arguments": {"--who.$": "$.who"}})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn, input=json.dumps({"who": "sfn"}))["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    run = json.loads(d["output"])
    assert run["JobName"] == ok and run["JobRunState"] == "SUCCEEDED"
    assert run["Arguments"]["--who"] == "sfn"
    assert glue.get_job_run(JobName=ok, RunId=run["Id"])["JobRun"]["JobRunState"] == "SUCCEEDED"

    # Request-response answers the new run's id at once.
    arn = machine(sfn, "arn:aws:states:::glue:startJobRun", {"JobName": ok})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    run_id = json.loads(d["output"])["JobRunId"]
    assert glue.get_job_run(JobName=ok, RunId=run_id)["JobRun"]["JobName"] == ok

    bad = glue_job(glue, tmp_path, "import sys\nsys.exit(3)\n")
    arn = machine(sfn, "arn:aws:states:::glue:startJobRun.sync", {"JobName": bad},
                  {"Caught": {"Type": "Pass", "End": True}},
                  Catch=[{"ErrorEquals": ["States.TaskFailed"], "Next": "Caught"}])
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert d["status"] == "SUCCEEDED"
    caught = json.loads(d["output"])
    assert caught["Error"] == "States.TaskFailed"
    assert json.loads(caught["Cause"])["JobRunState"] == "FAILED"

    missing = machine(sfn, "arn:aws:states:::glue:startJobRun.sync", {"JobName": uid("nope")})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=missing)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "Glue.EntityNotFoundException"


def register(ecs, command):
    return ecs.register_task_definition(
        family=uid("fam"), networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
        containerDefinitions=[{"name": "main", "image": "python:3.12", "essential": True,
                               "command": command}])["taskDefinition"]


def test_ecs_run_task_sync(server, sfn):
    ecs = server.client("ecs")
    # RunTask without a cluster uses "default", which must exist, as on AWS.
    ecs.create_cluster()
    td = register(ecs, ["python3", "-c", "import os; print(os.environ['WHO'])"])
    arn = machine(sfn, "arn:aws:states:::ecs:runTask.sync", {
        "LaunchType": "FARGATE", "TaskDefinition": td["taskDefinitionArn"], "NetworkConfiguration": NETWORK,
        "Overrides": {"ContainerOverrides": [{"Name": "main", "Environment": [{"Name": "WHO", "Value.$": "$.who"}]}]}})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn, input=json.dumps({"who": "sfn"}))["executionArn"])
    assert d["status"] == "SUCCEEDED", d
    task = json.loads(d["output"])
    assert task["LastStatus"] == "STOPPED"
    assert task["TaskDefinitionArn"] == td["taskDefinitionArn"]
    assert task["Containers"][0]["ExitCode"] == 0
    assert ecs.describe_tasks(cluster="default", tasks=[task["TaskArn"]])["tasks"][0]["lastStatus"] == "STOPPED"

    # Request-response: RunTask's answer, in PascalCase.
    arn = machine(sfn, "arn:aws:states:::ecs:runTask", {
        "LaunchType": "FARGATE", "TaskDefinition": td["taskDefinitionArn"], "NetworkConfiguration": NETWORK})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    out = json.loads(d["output"])
    assert out["Failures"] == [] and out["Tasks"][0]["TaskArn"].startswith("arn:aws:ecs:")

    failing = register(ecs, ["python3", "-c", "import sys; sys.exit(5)"])
    arn = machine(sfn, "arn:aws:states:::ecs:runTask.sync", {
        "LaunchType": "FARGATE", "TaskDefinition": failing["taskDefinitionArn"], "NetworkConfiguration": NETWORK})
    d = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert d["status"] == "FAILED" and d["error"] == "States.TaskFailed"
    assert json.loads(d["cause"])["Containers"][0]["ExitCode"] == 5
