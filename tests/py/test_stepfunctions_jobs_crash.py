"""Crash test of the `.sync` Glue and ECS integrations: a `glue:startJobRun.sync` and an
`ecs:runTask.sync` task record TaskSubmitted (the StartJobRun / RunTask answer) once their run
or task started; after `kill -9` and a restart the executions wait on that same run and task
(no second run is started). Glue and ECS end what the restart interrupted (ERROR, STOPPED), so
each task then fails with `States.TaskFailed`, the final run or task as the cause."""

import json
import signal
import time
import uuid

from conftest import ACCOUNT
from test_stepfunctions_crash import durable_server

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"
NETWORK = {"AwsvpcConfiguration": {"Subnets": ["subnet-12345678"], "AssignPublicIp": "ENABLED"}}


def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait(pred, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def history(sfn, arn):
    return sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]


def machine(sfn, resource, parameters):
    return sfn.create_state_machine(name=uid("sm"), roleArn=ROLE, definition=json.dumps({
        "StartAt": "Run", "States": {"Run": {"Type": "Task", "Resource": resource, "Parameters": parameters,
                                             "End": True}}}))["stateMachineArn"]


def test_sync_jobs_wait_on_the_same_run_after_kill_9(tmp_path):
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        glue = s.client("glue")
        ecs = s.client("ecs")
        script = tmp_path / "slow.py"
        script.write_text("import time\ntime.sleep(30)\n")
        job = uid("job")
        glue.create_job(Name=job, Role=ROLE, Command={"Name": "pythonshell", "ScriptLocation": str(script),
                                                      "PythonVersion": "3.9"})
        glue_sm = machine(sfn, "arn:aws:states:::glue:startJobRun.sync", {"JobName": job})
        ecs.create_cluster()
        td = ecs.register_task_definition(
            family=uid("fam"), networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256", memory="512",
            containerDefinitions=[{"name": "main", "image": "python:3.12", "essential": True,
                                   "command": ["python3", "-c", "import time; time.sleep(30)"]}])["taskDefinition"]
        ecs_sm = machine(sfn, "arn:aws:states:::ecs:runTask.sync", {
            "LaunchType": "FARGATE", "TaskDefinition": td["taskDefinitionArn"], "NetworkConfiguration": NETWORK})
        glue_ex = sfn.start_execution(stateMachineArn=glue_sm)["executionArn"]
        ecs_ex = sfn.start_execution(stateMachineArn=ecs_sm)["executionArn"]

        def submitted(arn):
            return [e for e in history(sfn, arn) if e["type"] == "TaskSubmitted"]

        [g] = wait(lambda: submitted(glue_ex))
        run_id = json.loads(g["taskSubmittedEventDetails"]["output"])["JobRunId"]
        assert g["taskSubmittedEventDetails"]["resource"] == "startJobRun.sync"
        wait(lambda: glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]["JobRunState"] == "RUNNING")
        [e] = wait(lambda: submitted(ecs_ex))
        task_arn = json.loads(e["taskSubmittedEventDetails"]["output"])["Tasks"][0]["TaskArn"]
        wait(lambda: ecs.describe_tasks(tasks=[task_arn])["tasks"][0]["lastStatus"] == "RUNNING")
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        glue = s.client("glue")
        ecs = s.client("ecs")
        d = wait(lambda: (x := sfn.describe_execution(executionArn=glue_ex))["status"] != "RUNNING" and x)
        assert d["status"] == "FAILED" and d["error"] == "States.TaskFailed", d
        cause = json.loads(d["cause"])
        assert cause["Id"] == run_id and cause["JobRunState"] == "ERROR"
        assert [r["Id"] for r in glue.get_job_runs(JobName=job)["JobRuns"]] == [run_id]

        d = wait(lambda: (x := sfn.describe_execution(executionArn=ecs_ex))["status"] != "RUNNING" and x)
        assert d["status"] == "FAILED" and d["error"] == "States.TaskFailed", d
        cause = json.loads(d["cause"])
        assert cause["TaskArn"] == task_arn and cause["LastStatus"] == "STOPPED"
        assert ecs.list_tasks(desiredStatus="STOPPED")["taskArns"] == [task_arn]
        assert ecs.list_tasks()["taskArns"] == []

        for arn in (glue_ex, ecs_ex):
            types = [e["type"] for e in history(sfn, arn)]
            assert (types.count("TaskStarted"), types.count("TaskSubmitted"), types.count("TaskFailed"),
                    types.count("ExecutionFailed")) == (1, 1, 1, 1), types
    finally:
        s.proc.kill()
        s.proc.wait()


def test_start_execution_sync_waits_on_the_same_child_after_kill_9(tmp_path):
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        child = sfn.create_state_machine(name=uid("child"), roleArn=ROLE, definition=json.dumps({
            "StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 3600, "Next": "P"},
                                       "P": {"Type": "Pass", "Parameters": {"v.$": "$.n"}, "End": True}}}))["stateMachineArn"]
        parent = machine(sfn, "arn:aws:states:::states:startExecution.sync:2",
                         {"StateMachineArn": child, "Input": {"n.$": "$.n"}})
        ex = sfn.start_execution(stateMachineArn=parent, input=json.dumps({"n": 4}))["executionArn"]
        [sub] = wait(lambda: [e for e in history(sfn, ex) if e["type"] == "TaskSubmitted"])
        child_ex = json.loads(sub["taskSubmittedEventDetails"]["output"])["ExecutionArn"]
        assert sfn.describe_execution(executionArn=child_ex)["status"] == "RUNNING"
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        s.advance(3600)
        d = wait(lambda: (x := sfn.describe_execution(executionArn=ex))["status"] != "RUNNING" and x)
        assert d["status"] == "SUCCEEDED", d
        out = json.loads(d["output"])
        assert out["ExecutionArn"] == child_ex and out["Output"] == {"v": 4}
        assert [c["executionArn"] for c in sfn.list_executions(stateMachineArn=child)["executions"]] == [child_ex]
        types = [e["type"] for e in history(sfn, ex)]
        assert (types.count("TaskSubmitted"), types.count("TaskSucceeded"), types.count("ExecutionSucceeded")) == (1, 1, 1)
    finally:
        s.proc.kill()
        s.proc.wait()
