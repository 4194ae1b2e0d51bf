"""AWS Glue Python shell jobs through boto3: a run that reads its arguments with
getResolvedOptions and logs to CloudWatch Logs, timeouts on the manual clock that leave no
process behind, retries as new runs, BatchStopJobRun, conditional and scheduled triggers,
Glue Job State Change events on EventBridge, and what AWS refuses (a Python shell job's DPU,
Spark jobs at StartJobRun).

Behaviour follows AWS's Glue API reference (Jobs, Job Runs, Triggers) and "Automating AWS
Glue with EventBridge". Names are unique per test on the shared servers.
"""

import json
import os
import time
import uuid

import pytest
from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/glue"
TERMINAL = {"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "ERROR", "EXPIRED"}

ARGS_SCRIPT = """
import sys
from awsglue.utils import getResolvedOptions
args = getResolvedOptions(sys.argv, ["JOB_NAME", "greeting", "who"])
print(args["greeting"], args["who"], "from", args["JOB_NAME"])
print("to stderr", file=sys.stderr)
"""


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def glue(server):
    return server.client("glue")


@pytest.fixture(scope="module")
def cglue(clock_server):
    return clock_server.client("glue")


def script(tmp_path, text):
    path = tmp_path / f"{uuid.uuid4().hex[:8]}.py"
    path.write_text(text)
    return str(path)


def create_job(glue, location, **extra):
    name = unique("job")
    glue.create_job(Name=name, Role=ROLE,
                    Command={"Name": "pythonshell", "ScriptLocation": location,
                             "PythonVersion": "3.9"},
                    **extra)
    return name


def wait_run(glue, job, run_id, states=TERMINAL, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        if run["JobRunState"] in states:
            return run
        assert time.monotonic() < deadline, f"run stuck in {run['JobRunState']}"
        time.sleep(0.05)


def wait_for(check, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def log_messages(logs, group, stream):
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                     startFromHead=True)["events"]
    except ClientError:
        return []
    return [e["message"] for e in events]


def processes_with(marker):
    """Pids of live processes whose command line holds `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{pid}/stat") as f:
                if ") Z " in f.read():
                    continue
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


def test_job_reads_its_arguments_and_logs_to_cloudwatch(glue, server, tmp_path):
    job = create_job(glue, script(tmp_path, ARGS_SCRIPT),
                     DefaultArguments={"--greeting": "hello", "--who": "default"})
    got = glue.get_job(JobName=job)["Job"]
    assert got["Command"]["Name"] == "pythonshell"
    assert got["MaxCapacity"] == 0.0625
    assert got["Timeout"] == 2880
    assert got["MaxRetries"] == 0
    assert job in glue.list_jobs()["JobNames"]

    run_id = glue.start_job_run(JobName=job, Arguments={"--who": "world"})["JobRunId"]
    assert run_id.startswith("jr_")
    run = wait_run(glue, job, run_id)
    assert run["JobRunState"] == "SUCCEEDED", run
    assert run["Attempt"] == 0
    assert run["Arguments"] == {"--who": "world"}
    assert "ExecutionTime" in run and "CompletedOn" in run
    assert "ErrorMessage" not in run

    logs = server.client("logs")
    out = log_messages(logs, "/aws-glue/python-jobs/output", run_id)
    assert f"hello world from {job}" in out
    assert any(m.startswith("tsumiki: Python shell job") and "Python 3" in m for m in out)
    assert "to stderr" in log_messages(logs, "/aws-glue/python-jobs/error", run_id)
    assert glue.get_job_runs(JobName=job)["JobRuns"][0]["Id"] == run_id


def test_script_from_s3(glue, server):
    """`ScriptLocation: s3://bucket/key` runs the object's script, as Glue does; a missing
    object ends the run ERROR with S3's reason."""
    s3 = server.client("s3", s3={"addressing_style": "path"})
    bucket = f"scripts-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="jobs/args.py", Body=ARGS_SCRIPT.encode())
    job = create_job(glue, f"s3://{bucket}/jobs/args.py",
                     DefaultArguments={"--greeting": "hi", "--who": "s3"})
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    run = wait_run(glue, job, run_id)
    assert run["JobRunState"] == "SUCCEEDED", run
    out = log_messages(server.client("logs"), "/aws-glue/python-jobs/output", run_id)
    assert f"hi s3 from {job}" in out

    missing = create_job(glue, f"s3://{bucket}/jobs/missing.py")
    run = wait_run(glue, missing, glue.start_job_run(JobName=missing)["JobRunId"])
    assert run["JobRunState"] == "ERROR" and "NoSuchKey" in run["ErrorMessage"], run


def test_timeout_ends_the_run_and_its_process(cglue, clock_server, tmp_path):
    marker = unique("marker")
    body = "import subprocess, sys, time\n" \
           "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', " \
           f"'{marker}'])\n" \
           "time.sleep(3600)\n"
    job = create_job(cglue, script(tmp_path, body), Timeout=1,
                     DefaultArguments={"--marker": marker})
    run_id = cglue.start_job_run(JobName=job)["JobRunId"]
    wait_run(cglue, job, run_id, {"RUNNING"})
    # The script and the child it started are both alive.
    wait_for(lambda: len(processes_with(marker)) >= 2)
    clock_server.advance(61)
    run = wait_run(cglue, job, run_id)
    assert run["JobRunState"] == "TIMEOUT"
    assert "timed out" in run["ErrorMessage"]
    assert processes_with(marker) == []


def test_failing_job_is_retried_max_retries_times(glue, tmp_path):
    job = create_job(glue, script(tmp_path, "import sys\nsys.exit(3)\n"), MaxRetries=2)
    first = glue.start_job_run(JobName=job)["JobRunId"]
    runs = wait_for(lambda: (lambda r: r if len(r) == 3 and all(x["JobRunState"] in TERMINAL for x in r) else None)(
        glue.get_job_runs(JobName=job)["JobRuns"]))
    by_attempt = sorted(runs, key=lambda r: r["Attempt"])
    assert [r["Attempt"] for r in by_attempt] == [0, 1, 2]
    assert all(r["JobRunState"] == "FAILED" for r in by_attempt)
    assert by_attempt[0]["Id"] == first
    assert by_attempt[1]["Id"] == f"{first}_attempt_1"
    assert by_attempt[2]["Id"] == f"{first}_attempt_2"
    assert by_attempt[1]["PreviousRunId"] == first
    assert by_attempt[2]["PreviousRunId"] == f"{first}_attempt_1"
    assert "exit code 3" in by_attempt[0]["ErrorMessage"]
    # No fourth attempt comes.
    time.sleep(0.5)
    assert len(glue.get_job_runs(JobName=job)["JobRuns"]) == 3


def test_batch_stop_job_run_leaves_no_process(glue, tmp_path):
    marker = unique("marker")
    job = create_job(glue, script(tmp_path, "import time\ntime.sleep(3600)\n"),
                     DefaultArguments={"--marker": marker})
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    wait_run(glue, job, run_id, {"RUNNING"})
    wait_for(lambda: processes_with(marker))
    resp = glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id, "jr_nope"])
    assert resp["SuccessfulSubmissions"] == [{"JobName": job, "JobRunId": run_id}]
    assert resp["Errors"][0]["JobRunId"] == "jr_nope"
    run = wait_run(glue, job, run_id)
    assert run["JobRunState"] == "STOPPED"
    assert processes_with(marker) == []
    # A finished run cannot be stopped again.
    again = glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id])
    assert again["SuccessfulSubmissions"] == [] and len(again["Errors"]) == 1


def test_concurrent_runs_exceeded(glue, tmp_path):
    job = create_job(glue, script(tmp_path, "import time\ntime.sleep(3600)\n"))
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    with pytest.raises(ClientError) as e:
        glue.start_job_run(JobName=job)
    assert e.value.response["Error"]["Code"] == "ConcurrentRunsExceededException"
    glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id])
    assert wait_run(glue, job, run_id)["JobRunState"] == "STOPPED"


def test_conditional_trigger_starts_b_after_a_succeeds(glue, tmp_path):
    a = create_job(glue, script(tmp_path, "print('a')\n"))
    b = create_job(glue, script(tmp_path, ARGS_SCRIPT))
    trigger = unique("after-a")
    glue.create_trigger(Name=trigger, Type="CONDITIONAL", StartOnCreation=True,
                        Predicate={"Conditions": [{"LogicalOperator": "EQUALS", "JobName": a,
                                                   "State": "SUCCEEDED"}]},
                        Actions=[{"JobName": b, "Arguments": {"--greeting": "hi",
                                                               "--who": "b"}}])
    got = glue.get_trigger(Name=trigger)["Trigger"]
    assert got["State"] == "ACTIVATED" and got["Type"] == "CONDITIONAL"
    assert trigger in glue.list_triggers(DependentJobName=b)["TriggerNames"]
    assert glue.get_job_runs(JobName=b)["JobRuns"] == []

    run_a = glue.start_job_run(JobName=a)["JobRunId"]
    assert wait_run(glue, a, run_a)["JobRunState"] == "SUCCEEDED"
    runs_b = wait_for(lambda: glue.get_job_runs(JobName=b)["JobRuns"])
    run_b = wait_run(glue, b, runs_b[0]["Id"])
    assert run_b["JobRunState"] == "SUCCEEDED", run_b
    assert run_b["TriggerName"] == trigger

    # Deactivated, it no longer fires.
    glue.stop_trigger(Name=trigger)
    assert glue.get_trigger(Name=trigger)["Trigger"]["State"] == "DEACTIVATED"
    run_a2 = glue.start_job_run(JobName=a)["JobRunId"]
    wait_run(glue, a, run_a2)
    time.sleep(0.5)
    assert len(glue.get_job_runs(JobName=b)["JobRuns"]) == 1
    glue.delete_trigger(Name=trigger)
    with pytest.raises(ClientError) as e:
        glue.get_trigger(Name=trigger)
    assert e.value.response["Error"]["Code"] == "EntityNotFoundException"


def test_on_demand_trigger(glue, tmp_path):
    job = create_job(glue, script(tmp_path, "print('on demand')\n"))
    trigger = unique("now")
    glue.create_trigger(Name=trigger, Type="ON_DEMAND", Actions=[{"JobName": job}])
    assert glue.get_trigger(Name=trigger)["Trigger"]["State"] == "CREATED"
    glue.start_trigger(Name=trigger)
    runs = wait_for(lambda: glue.get_job_runs(JobName=job)["JobRuns"])
    assert wait_run(glue, job, runs[0]["Id"])["JobRunState"] == "SUCCEEDED"


def test_scheduled_trigger_fires_on_the_manual_clock(cglue, clock_server, tmp_path):
    job = create_job(cglue, script(tmp_path, "print('scheduled')\n"))
    trigger = unique("hourly")
    with pytest.raises(ClientError) as e:
        cglue.create_trigger(Name=trigger, Type="SCHEDULED", Schedule="rate(1 hour)",
                             Actions=[{"JobName": job}])
    assert e.value.response["Error"]["Code"] == "InvalidInputException"
    cglue.create_trigger(Name=trigger, Type="SCHEDULED", Schedule="cron(0 * * * ? *)",
                         StartOnCreation=True, Actions=[{"JobName": job}])
    time.sleep(0.3)
    assert cglue.get_job_runs(JobName=job)["JobRuns"] == []
    clock_server.advance(3600)
    runs = wait_for(lambda: cglue.get_job_runs(JobName=job)["JobRuns"])
    assert len(runs) == 1
    assert runs[0]["TriggerName"] == trigger
    assert wait_run(cglue, job, runs[0]["Id"])["JobRunState"] == "SUCCEEDED"
    cglue.stop_trigger(Name=trigger)
    clock_server.advance(3600)
    time.sleep(0.3)
    assert len(cglue.get_job_runs(JobName=job)["JobRuns"]) == 1


def test_state_change_reaches_eventbridge(glue, server, tmp_path):
    events = server.client("events")
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName=unique("glue-events"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    job = create_job(glue, script(tmp_path, "print('x')\n"))
    rule = unique("glue-rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.glue"], "detail-type": ["Glue Job State Change"],
        "detail": {"jobName": [job]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    wait_run(glue, job, run_id)
    msgs = wait_for(lambda: sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages"))
    event = json.loads(msgs[0]["Body"])
    assert event["source"] == "aws.glue"
    assert event["detail"] == {"jobName": job, "severity": "INFO", "state": "SUCCEEDED",
                               "jobRunId": run_id, "message": "Job run succeeded"}


def test_what_aws_refuses(glue, tmp_path):
    location = script(tmp_path, "print(1)\n")
    with pytest.raises(ClientError) as e:
        create_job(glue, location, MaxCapacity=2.0)
    assert e.value.response["Error"]["Code"] == "InvalidInputException"
    with pytest.raises(ClientError) as e:
        glue.get_job(JobName=unique("missing"))
    assert e.value.response["Error"]["Code"] == "EntityNotFoundException"
    spark = unique("spark")
    glue.create_job(Name=spark, Role=ROLE,
                    Command={"Name": "glueetl", "ScriptLocation": location})
    with pytest.raises(ClientError) as e:
        glue.start_job_run(JobName=spark)
    assert "Spark" in e.value.response["Error"]["Message"]
    missing = create_job(glue, "/nonexistent/script.py")
    run = wait_run(glue, missing, glue.start_job_run(JobName=missing)["JobRunId"])
    assert run["JobRunState"] == "ERROR" and "not found" in run["ErrorMessage"]


def test_update_and_delete_job(glue, tmp_path):
    job = create_job(glue, script(tmp_path, "print(1)\n"))
    glue.update_job(JobName=job, JobUpdate={
        "Role": ROLE, "Command": {"Name": "pythonshell",
                                  "ScriptLocation": script(tmp_path, "print(2)\n")},
        "MaxCapacity": 1.0, "Timeout": 5})
    got = glue.get_job(JobName=job)["Job"]
    assert got["MaxCapacity"] == 1.0 and got["Timeout"] == 5
    assert job in [j["Name"] for j in glue.get_jobs()["Jobs"]]
    assert glue.batch_get_jobs(JobNames=[job, "nope-x"])["JobsNotFound"] == ["nope-x"]
    assert glue.delete_job(JobName=job)["JobName"] == job
    assert job not in glue.list_jobs()["JobNames"]


WORKFLOW_SCRIPT = """
import sys
from awsglue.utils import getResolvedOptions
args = getResolvedOptions(sys.argv, ["WORKFLOW_NAME", "WORKFLOW_RUN_ID"])
print("in", args["WORKFLOW_NAME"], args["WORKFLOW_RUN_ID"])
"""


def test_workflow_runs_its_graph_to_completion(glue, server, tmp_path):
    a = create_job(glue, script(tmp_path, WORKFLOW_SCRIPT))
    b = create_job(glue, script(tmp_path, WORKFLOW_SCRIPT))
    wf = unique("wf")
    glue.create_workflow(Name=wf, DefaultRunProperties={"k": "v"})
    with pytest.raises(ClientError) as e:
        glue.start_workflow_run(Name=wf)  # nothing starts it yet
    assert e.value.response["Error"]["Code"] == "InvalidInputException"
    glue.create_trigger(Name=unique("start"), WorkflowName=wf, Type="ON_DEMAND",
                        Actions=[{"JobName": a}])
    glue.create_trigger(Name=unique("then"), WorkflowName=wf, Type="CONDITIONAL",
                        StartOnCreation=True,
                        Predicate={"Conditions": [{"LogicalOperator": "EQUALS", "JobName": a,
                                                   "State": "SUCCEEDED"}]},
                        Actions=[{"JobName": b}])
    assert wf in glue.list_workflows()["Workflows"]

    run_id = glue.start_workflow_run(Name=wf)["RunId"]
    run = wait_for(lambda: (lambda r: r if r["Status"] == "COMPLETED" else None)(
        glue.get_workflow_run(Name=wf, RunId=run_id)["Run"]))
    assert run["WorkflowRunProperties"] == {"k": "v"}
    assert run["Statistics"]["TotalActions"] == 2
    assert run["Statistics"]["SucceededActions"] == 2
    assert run["Statistics"]["RunningActions"] == 0
    run_b = glue.get_job_runs(JobName=b)["JobRuns"][0]
    assert run_b["Arguments"]["--WORKFLOW_RUN_ID"] == run_id
    logs = server.client("logs")
    assert f"in {wf} {run_id}" in log_messages(logs, "/aws-glue/python-jobs/output", run_b["Id"])

    # A run of A outside the workflow does not start B.
    solo = glue.start_job_run(JobName=a)["JobRunId"]
    wait_run(glue, a, solo)
    time.sleep(0.5)
    assert len(glue.get_job_runs(JobName=b)["JobRuns"]) == 1

    got = glue.get_workflow(Name=wf, IncludeGraph=True)["Workflow"]
    assert got["LastRun"]["WorkflowRunId"] == run_id
    assert sorted(n["Type"] for n in got["Graph"]["Nodes"]) == ["JOB", "JOB", "TRIGGER", "TRIGGER"]
    assert len(got["Graph"]["Edges"]) == 3
    assert [r["WorkflowRunId"] for r in glue.get_workflow_runs(Name=wf)["Runs"]] == [run_id]
    glue.delete_workflow(Name=wf)
    assert wf not in glue.list_workflows()["Workflows"]
    assert glue.get_triggers(DependentJobName=b)["Triggers"] == []


def test_run_in_progress_at_kill_9_ends_error_and_jobs_survive(tmp_path):
    """Jobs, runs and triggers are durable; a run whose server was killed lost its process
    (it dies with the server) and is ended ERROR at the next start."""
    import re
    import subprocess

    import boto3

    from conftest import REGION, tsumiki_bin

    def start():
        proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                                 "--data-dir", str(tmp_path / "data")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
        return proc, boto3.client("glue", endpoint_url=endpoint, region_name=REGION,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")

    marker = unique("crash")
    # A child of the run's process outlives a kill -9 of the server (the parent-death signal
    # reaches only the run's own process); the next server reaps it.
    location = script(tmp_path, "import subprocess, sys, time\n"
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', "
                      f"'{marker}-child'])\n"
                      "time.sleep(3600)\n")
    proc, glue = start()
    try:
        job = create_job(glue, location, DefaultArguments={"--marker": marker})
        glue.create_trigger(Name="t", Type="ON_DEMAND", Actions=[{"JobName": job}])
        run_id = glue.start_job_run(JobName=job)["JobRunId"]
        wait_run(glue, job, run_id, {"RUNNING"})
        wait_for(lambda: len(processes_with(marker)) == 2)
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    wait_for(lambda: processes_with(marker) == processes_with(f"{marker}-child"), timeout=10)
    proc, glue = start()
    try:
        wait_for(lambda: processes_with(marker) == [], timeout=10)
        assert glue.get_job(JobName=job)["Job"]["DefaultArguments"] == {"--marker": marker}
        assert glue.get_trigger(Name="t")["Trigger"]["Type"] == "ON_DEMAND"
        run = glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]
        assert run["JobRunState"] == "ERROR"
        assert "tsumiki stopped while it ran" in run["ErrorMessage"]
        # The job runs again after the restart.
        again = glue.start_job_run(JobName=job)["JobRunId"]
        wait_run(glue, job, again, {"RUNNING"})
        glue.batch_stop_job_run(JobName=job, JobRunIds=[again])
        assert wait_run(glue, job, again)["JobRunState"] == "STOPPED"
    finally:
        proc.kill()
        proc.wait()


def make_wheel(directory, name, version, source):
    """A pure-Python wheel, built by hand as the wheel spec lays it out (RECORD hashes)."""
    import base64
    import hashlib
    import zipfile

    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": source,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tsumiki-test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


MODULES_SCRIPT = """
import sys
import helper, zipped, shout
print(helper.NAME, zipped.NAME, shout.loud("wheel"), shout.__file__.split("/")[-3])
"""


def test_extra_py_files_and_wheels_from_s3_and_local_paths(glue, server, tmp_path):
    """--extra-py-files (.py from S3, .zip locally) go on the run's PYTHONPATH; a wheel in
    --additional-python-modules is installed with pip --no-index into a directory named by
    its content, reused by the next run with the same modules."""
    import zipfile

    s3 = server.client("s3", s3={"addressing_style": "path"})
    logs = server.client("logs")
    bucket = f"mods-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="lib/helper.py", Body=b"NAME = 'helper-from-s3'\n")
    package = f"shout{uuid.uuid4().hex[:6]}"
    wheel = make_wheel(tmp_path, package, "1.0",
                       "def loud(s):\n    return s.upper() + '!'\n")
    s3.put_object(Bucket=bucket, Key=f"wheels/{wheel.name}", Body=wheel.read_bytes())
    zipped = tmp_path / "zipped.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("zipped.py", "NAME = 'zipped-local'\n")
    job = create_job(glue, script(tmp_path, MODULES_SCRIPT.replace("shout", package)),
                     DefaultArguments={
                         "--extra-py-files": f"s3://{bucket}/lib/helper.py,{zipped}",
                         "--additional-python-modules": f"s3://{bucket}/wheels/{wheel.name}"})
    first = glue.start_job_run(JobName=job)["JobRunId"]
    run = wait_run(glue, job, first)
    assert run["JobRunState"] == "SUCCEEDED", (run, log_messages(
        logs, "/aws-glue/python-jobs/error", first))
    out = log_messages(logs, "/aws-glue/python-jobs/output", first)
    # Installed into its own content-named directory, not the machine's site-packages.
    line = next(m for m in out if m.startswith("helper-from-s3"))
    assert line.split(" ")[:3] == ["helper-from-s3", "zipped-local", "WHEEL!"]
    assert line.split(" ")[3].startswith("pip-")
    assert any("Python modules installed" in m for m in out)
    second = glue.start_job_run(JobName=job)["JobRunId"]
    assert wait_run(glue, job, second)["JobRunState"] == "SUCCEEDED"
    out = log_messages(logs, "/aws-glue/python-jobs/output", second)
    assert any("reused from an earlier install" in m for m in out)
    # The machine's python3 did not get the package.
    import subprocess
    assert subprocess.run(["python3", "-c", f"import {package}"],
                          capture_output=True).returncode != 0


def test_modules_that_cannot_be_installed_fail_the_run_with_a_clear_message(glue, server, tmp_path):
    job = create_job(glue, script(tmp_path, "print('never')\n"),
                     DefaultArguments={"--additional-python-modules":
                                       f"tsumiki-no-such-package-{uuid.uuid4().hex[:8]}==9.9.9"})
    run_id = glue.start_job_run(JobName=job)["JobRunId"]
    run = wait_run(glue, job, run_id, timeout=240)
    assert run["JobRunState"] == "FAILED", run
    assert run["ErrorMessage"].startswith("Installation of Python modules failed"), run
    err = log_messages(server.client("logs"), "/aws-glue/python-jobs/error", run_id)
    assert any("No matching distribution" in m or "ERROR" in m for m in err), err
    assert "never" not in log_messages(server.client("logs"), "/aws-glue/python-jobs/output", run_id)

    missing = create_job(glue, script(tmp_path, "print('never')\n"),
                         DefaultArguments={"--extra-py-files": str(tmp_path / "absent.py")})
    run = wait_run(glue, missing, glue.start_job_run(JobName=missing)["JobRunId"])
    assert run["JobRunState"] == "FAILED"
    assert "--extra-py-files" in run["ErrorMessage"] and "absent.py" in run["ErrorMessage"]


def test_job_bookmarks_advance_with_enabled_runs_and_reset(glue, tmp_path):
    job = create_job(glue, script(tmp_path, "print('ok')\n"),
                     DefaultArguments={"--job-bookmark-option": "job-bookmark-enable"})
    with pytest.raises(ClientError) as e:
        glue.get_job_bookmark(JobName=job)
    assert e.value.response["Error"]["Code"] == "EntityNotFoundException"
    first = glue.start_job_run(JobName=job)["JobRunId"]
    assert wait_run(glue, job, first)["JobRunState"] == "SUCCEEDED"
    entry = glue.get_job_bookmark(JobName=job)["JobBookmarkEntry"]
    assert (entry["JobName"], entry["Version"], entry["Run"], entry["Attempt"]) == (job, 1, 1, 0)
    assert entry["RunId"] == first and "PreviousRunId" not in entry
    assert json.loads(entry["JobBookmark"])["run"] == 1
    # A paused run leaves the bookmark where it was.
    paused = glue.start_job_run(JobName=job,
                                Arguments={"--job-bookmark-option": "job-bookmark-pause"})["JobRunId"]
    wait_run(glue, job, paused)
    assert glue.get_job_bookmark(JobName=job)["JobBookmarkEntry"]["RunId"] == first
    second = glue.start_job_run(JobName=job)["JobRunId"]
    wait_run(glue, job, second)
    entry = glue.get_job_bookmark(JobName=job)["JobBookmarkEntry"]
    assert (entry["Version"], entry["Run"], entry["RunId"], entry["PreviousRunId"]) == \
        (2, 2, second, first)
    assert glue.get_job_bookmark(JobName=job, RunId=first)["JobBookmarkEntry"]["Version"] == 1
    # Reset to before the second run, then entirely.
    assert glue.reset_job_bookmark(JobName=job, RunId=second)["JobBookmarkEntry"]["RunId"] == second
    assert glue.get_job_bookmark(JobName=job)["JobBookmarkEntry"]["RunId"] == first
    glue.reset_job_bookmark(JobName=job)
    with pytest.raises(ClientError) as e:
        glue.get_job_bookmark(JobName=job)
    assert e.value.response["Error"]["Code"] == "EntityNotFoundException"
    # A failed run does not advance it.
    failing = create_job(glue, script(tmp_path, "raise SystemExit(2)\n"),
                         DefaultArguments={"--job-bookmark-option": "job-bookmark-enable"})
    wait_run(glue, failing, glue.start_job_run(JobName=failing)["JobRunId"])
    with pytest.raises(ClientError):
        glue.get_job_bookmark(JobName=failing)


def test_event_trigger_batches_eventbridge_events_into_a_workflow_run(cglue, clock_server, tmp_path):
    events = clock_server.client("events")
    job = create_job(cglue, script(tmp_path, WORKFLOW_SCRIPT))
    wf = unique("evwf")
    cglue.create_workflow(Name=wf)
    trigger = unique("on-event")
    with pytest.raises(ClientError) as e:
        cglue.create_trigger(Name=unique("t"), Type="EVENT", Actions=[{"JobName": job}])
    assert e.value.response["Error"]["Code"] == "InvalidInputException"
    cglue.create_trigger(Name=trigger, WorkflowName=wf, Type="EVENT", StartOnCreation=True,
                         EventBatchingCondition={"BatchSize": 2, "BatchWindow": 60},
                         Actions=[{"JobName": job}])
    got = cglue.get_trigger(Name=trigger)["Trigger"]
    assert got["EventBatchingCondition"] == {"BatchSize": 2, "BatchWindow": 60}
    rule = unique("to-glue")
    source = unique("app")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule=rule, Targets=[{
        "Id": "wf", "Arn": f"arn:aws:glue:us-east-1:123456789012:workflow/{wf}",
        "RoleArn": "arn:aws:iam::123456789012:role/events-to-glue"}])

    def put():
        entry = {"Source": source, "DetailType": "d", "Detail": "{}"}
        resp = events.put_events(Entries=[entry])
        assert resp["FailedEntryCount"] == 0
        return resp["Entries"][0]["EventId"]

    def runs():
        return cglue.get_workflow_runs(Name=wf)["Runs"]

    # Two events fill the batch: one run, carrying both event ids.
    ids = [put(), put()]
    run = wait_for(lambda: runs())[0]
    assert json.loads(run["WorkflowRunProperties"]["aws:eventIds"]) == ids
    assert run["StartingEventBatchCondition"] == {"BatchSize": 2, "BatchWindow": 60}
    wait_for(lambda: [r for r in runs() if r["Status"] == "COMPLETED"])
    # One event waits for the window, which ends on the clock.
    lone = put()
    time.sleep(0.5)
    assert len(runs()) == 1
    clock_server.advance(61)
    later = wait_for(lambda: [r for r in runs() if r["WorkflowRunId"] != run["WorkflowRunId"]])[0]
    assert json.loads(later["WorkflowRunProperties"]["aws:eventIds"]) == [lone]
    wait_for(lambda: len(cglue.get_job_runs(JobName=job)["JobRuns"]) == 2)


def test_bookmarks_and_event_batches_survive_kill_9(tmp_path):
    """A job's bookmark and an EVENT trigger's unfinished batch are durable: after a kill -9
    the bookmark is as it was and the batch's window still starts the workflow run."""
    import re
    import subprocess

    import boto3

    from conftest import REGION, tsumiki_bin

    def start():
        proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                                 "--clock", "manual", "--default-account", "123456789012",
                                 "--data-dir", str(tmp_path / "data")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)

        def client(service):
            return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                                aws_access_key_id="testing", aws_secret_access_key="testing")
        return proc, endpoint, client

    proc, endpoint, client = start()
    try:
        glue, events = client("glue"), client("events")
        job = create_job(glue, script(tmp_path, "print('ok')\n"),
                         DefaultArguments={"--job-bookmark-option": "job-bookmark-enable"})
        run_id = glue.start_job_run(JobName=job)["JobRunId"]
        wait_run(glue, job, run_id)
        wf = unique("crashwf")
        glue.create_workflow(Name=wf)
        glue.create_trigger(Name="ev", WorkflowName=wf, Type="EVENT", StartOnCreation=True,
                            EventBatchingCondition={"BatchSize": 5, "BatchWindow": 30},
                            Actions=[{"JobName": job}])
        events.put_rule(Name="r", EventPattern=json.dumps({"source": ["crash"]}))
        wf_arn = f"arn:aws:glue:{REGION}:123456789012:workflow/{wf}"
        events.put_targets(Rule="r", Targets=[{"Id": "wf", "Arn": wf_arn,
                                               "RoleArn": "arn:aws:iam::000000000000:role/x"}])
        event_id = events.put_events(Entries=[{"Source": "crash", "DetailType": "d",
                                               "Detail": "{}"}])["Entries"][0]["EventId"]
        wait_for(lambda: glue.get_workflow_runs(Name=wf)["Runs"] == [])
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    proc, endpoint, client = start()
    try:
        glue = client("glue")
        assert glue.get_job_bookmark(JobName=job)["JobBookmarkEntry"]["RunId"] == run_id
        assert glue.get_workflow_runs(Name=wf)["Runs"] == []
        import urllib.request
        req = urllib.request.Request(f"{endpoint}/_tsumiki/clock/advance",
                                     data=json.dumps({"seconds": 31}).encode(), method="POST",
                                     headers={"content-type": "application/json"})
        urllib.request.urlopen(req).read()
        run = wait_for(lambda: glue.get_workflow_runs(Name=wf)["Runs"])[0]
        assert json.loads(run["WorkflowRunProperties"]["aws:eventIds"]) == [event_id]
    finally:
        proc.kill()
        proc.wait()



def test_batch_stop_during_a_module_install_leaves_no_process(tmp_path, monkeypatch):
    """pip runs as the run's own process with the server's pip configuration: here an index
    that accepts connections and never answers, so the install hangs until BatchStopJobRun
    stops the run, and nothing of it is left."""
    import socket
    import threading

    from conftest import Server

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{port}/simple/")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "600")
    server = Server.start(tmp_path)
    try:
        glue = server.client("glue")
        package = f"tsumiki-hang-{uuid.uuid4().hex[:8]}"
        job = create_job(glue, script(tmp_path, "print('never')\n"),
                         DefaultArguments={"--additional-python-modules": package})
        run_id = glue.start_job_run(JobName=job)["JobRunId"]
        wait_for(lambda: processes_with(package), timeout=30)
        wait_for(lambda: held, timeout=60)  # pip is waiting on the index
        assert glue.get_job_run(JobName=job, RunId=run_id)["JobRun"]["JobRunState"] == "RUNNING"
        glue.batch_stop_job_run(JobName=job, JobRunIds=[run_id])
        run = wait_run(glue, job, run_id)
        assert run["JobRunState"] == "STOPPED", run
        assert processes_with(package) == []
    finally:
        server.stop()
        stop.set()
        for c in held:
            c.close()
        listener.close()
