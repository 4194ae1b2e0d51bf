"""Amazon ECS on Fargate through boto3: clusters, task definitions with revisions and
Fargate's cpu/memory rules (AWS's messages), and tasks on the process executor: exit codes and
awslogs output through DescribeTasks and CloudWatch Logs, StopTask leaving no process, the
essential-container rule, images that cannot run, and ECS Task State Change events.

Behaviour follows AWS's ECS API reference and the Fargate task size table. Names are unique
per test on the shared real-clock server.
"""

import json
import os
import time
import uuid

import pytest
from botocore.exceptions import ClientError

NETWORK = {"awsvpcConfiguration": {"subnets": ["subnet-12345678"], "assignPublicIp": "ENABLED"}}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def ecs(server):
    client = server.client("ecs")
    # RunTask does not create the default cluster; CreateCluster without a name does.
    client.create_cluster()
    return client


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def register(ecs, containers, cpu="256", memory="512", family=None):
    family = family or unique("fam")
    return ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu=cpu, memory=memory, containerDefinitions=containers)["taskDefinition"]


def container(name, command, group=None, image="python:3.12", **extra):
    c = {"name": name, "image": image, "command": command, "essential": True, **extra}
    if group:
        c["logConfiguration"] = {"logDriver": "awslogs", "options": {
            "awslogs-group": group, "awslogs-region": "us-east-1",
            "awslogs-stream-prefix": "app"}}
    return c


def wait_task(ecs, arn, status="STOPPED", timeout=60, cluster="default"):
    deadline = time.monotonic() + timeout
    while True:
        task = ecs.describe_tasks(cluster=cluster, tasks=[arn])["tasks"][0]
        if task["lastStatus"] == status:
            return task
        assert time.monotonic() < deadline, f"task stuck in {task['lastStatus']}"
        time.sleep(0.05)


def processes_with(marker):
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


@pytest.mark.parametrize("cpu,memory", [("256", "4096"), ("1024", "1024"), ("512", "512"),
                                        ("16384", "36864")])
def test_invalid_fargate_sizes_are_refused_with_aws_message(ecs, cpu, memory):
    with pytest.raises(ClientError) as e:
        register(ecs, [container("c", ["true"])], cpu=cpu, memory=memory)
    err = e.value.response["Error"]
    assert err["Code"] == "ClientException"
    assert err["Message"] == (f"No Fargate configuration exists for given values: {cpu} CPU, "
                              f"{memory} memory. See the Amazon ECS documentation for the "
                              "valid values.")


def test_fargate_needs_task_level_cpu_and_awsvpc(ecs):
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family=unique("f"), networkMode="awsvpc",
                                     requiresCompatibilities=["FARGATE"], memory="512",
                                     containerDefinitions=[container("c", ["true"])])
    assert e.value.response["Error"]["Message"] == \
        "Fargate requires that 'cpu' be defined at the task level."
    with pytest.raises(ClientError) as e:
        ecs.register_task_definition(family=unique("f"), networkMode="bridge",
                                     requiresCompatibilities=["FARGATE"], cpu="256",
                                     memory="512",
                                     containerDefinitions=[container("c", ["true"])])
    assert e.value.response["Error"]["Code"] == "ClientException"


def test_revisions_describe_list_deregister(ecs):
    family = unique("rev")
    first = register(ecs, [container("c", ["true"])], family=family)
    second = register(ecs, [container("c", ["false"])], cpu="1 vCPU", memory="2 GB",
                      family=family)
    assert (first["revision"], second["revision"]) == (1, 2)
    assert second["cpu"] == "1024" and second["memory"] == "2048"
    assert second["taskDefinitionArn"].endswith(f":task-definition/{family}:2")
    assert second["containerDefinitions"][0]["essential"] is True
    assert "FARGATE" in second["compatibilities"]
    latest = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    assert latest["revision"] == 2
    arns = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
    assert arns == [first["taskDefinitionArn"], second["taskDefinitionArn"]]
    gone = ecs.deregister_task_definition(taskDefinition=f"{family}:2")["taskDefinition"]
    assert gone["status"] == "INACTIVE"
    assert ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]["revision"] == 1
    assert family in ecs.list_task_definition_families(familyPrefix=family)["families"]


def test_clusters(ecs):
    name = unique("cl")
    created = ecs.create_cluster(clusterName=name, tags=[{"key": "team", "value": "a"}])["cluster"]
    assert created["status"] == "ACTIVE" and created["clusterName"] == name
    assert created["clusterArn"] in ecs.list_clusters()["clusterArns"]
    described = ecs.describe_clusters(clusters=[name, "nope-x"], include=["TAGS"])
    assert described["clusters"][0]["tags"] == [{"key": "team", "value": "a"}]
    assert described["failures"][0]["reason"] == "MISSING"
    assert ecs.delete_cluster(cluster=name)["cluster"]["status"] == "INACTIVE"
    with pytest.raises(ClientError) as e:
        ecs.delete_cluster(cluster=name)
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"


def test_run_task_exit_code_and_logs(ecs, logs):
    group = unique("/ecs/app")
    script = "import os, sys; print('hello', os.environ['WHO']); " \
             "print('oops', file=sys.stderr); sys.exit(7)"
    td = register(ecs, [container("main", ["python3", "-c", script], group=group,
                                  environment=[{"name": "WHO", "value": "task"}])])
    resp = ecs.run_task(taskDefinition=td["family"], launchType="FARGATE",
                        networkConfiguration=NETWORK, startedBy="pytest",
                        overrides={"containerOverrides": [{"name": "main", "environment": [
                            {"name": "WHO", "value": "override"}]}]})
    assert resp["failures"] == []
    task = resp["tasks"][0]
    assert task["lastStatus"] == "PROVISIONING" and task["desiredStatus"] == "RUNNING"
    assert task["launchType"] == "FARGATE" and task["cpu"] == "256"
    stopped = wait_task(ecs, task["taskArn"])
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert stopped["containers"][0]["exitCode"] == 7
    assert stopped["containers"][0]["lastStatus"] == "STOPPED"
    for k in ("startedAt", "stoppingAt", "stoppedAt", "executionStoppedAt"):
        assert k in stopped
    task_id = task["taskArn"].rsplit("/", 1)[1]
    events = logs.get_log_events(logGroupName=group, logStreamName=f"app/main/{task_id}",
                                 startFromHead=True)["events"]
    # One stream for stdout and stderr (python buffers stdout in a pipe, as in a container).
    assert sorted(e["message"] for e in events) == ["hello override", "oops"]
    assert task["taskArn"] in ecs.list_tasks(desiredStatus="STOPPED")["taskArns"]
    assert task["taskArn"] not in ecs.list_tasks()["taskArns"]


def test_stop_task_leaves_no_process(ecs):
    marker = unique("marker")
    # The shell and the python it starts both carry the marker.
    sleeper = f"python3 -c 'import time; time.sleep(3600)' {marker}; echo {marker}"
    td = register(ecs, [container("sleeper", ["sh", "-c", sleeper],
                                  image="alpine:3.19", stopTimeout=2)])
    task = ecs.run_task(taskDefinition=td["taskDefinitionArn"], count=2,
                        networkConfiguration=NETWORK)["tasks"]
    assert len(task) == 2
    arn = task[0]["taskArn"]
    running = wait_task(ecs, arn, "RUNNING")
    assert running["containers"][0]["lastStatus"] == "RUNNING"
    assert arn in ecs.list_tasks(family=td["family"])["taskArns"]
    deadline = time.monotonic() + 30
    while len(processes_with(marker)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    resp = ecs.stop_task(task=arn, reason="enough")["task"]
    assert resp["desiredStatus"] == "STOPPED"
    stopped = wait_task(ecs, arn)
    assert stopped["stopCode"] == "UserInitiated"
    assert stopped["stoppedReason"] == "enough"
    assert stopped["containers"][0]["exitCode"] == 143
    ecs.stop_task(task=task[1]["taskArn"])
    wait_task(ecs, task[1]["taskArn"])
    assert processes_with(marker) == []


def test_essential_exit_stops_the_other_containers(ecs):
    marker = unique("side")
    td = register(ecs, [
        container("main", ["sh", "-c", "exit 0"], image="busybox"),
        container("sidecar", ["python3", "-c", "import time; time.sleep(3600)", marker],
                  essential=False, stopTimeout=2),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    stopped = wait_task(ecs, arn)
    codes = {c["name"]: c.get("exitCode") for c in stopped["containers"]}
    assert codes["main"] == 0
    assert codes["sidecar"] in (143, 137)
    assert processes_with(marker) == []


def test_image_that_cannot_run_is_a_failure(ecs):
    td = register(ecs, [container("web", ["nginx"], image="nginx:1.27")])
    resp = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)
    assert resp["tasks"] == []
    assert resp["failures"][0]["reason"] == "CannotPullContainerError"
    assert "--task-image" in resp["failures"][0]["detail"]


def test_awsvpc_needs_network_configuration(ecs):
    td = register(ecs, [container("c", ["true"], image="alpine")])
    with pytest.raises(ClientError) as e:
        ecs.run_task(taskDefinition=td["family"])
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


def test_task_state_change_reaches_eventbridge(ecs, server):
    events = server.client("events")
    sqs = server.client("sqs")
    queue = sqs.create_queue(QueueName=unique("ecs-events"))["QueueUrl"]
    qarn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    td = register(ecs, [container("c", ["sh", "-c", "exit 0"], image="alpine")])
    rule = unique("ecs-rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.ecs"], "detail-type": ["ECS Task State Change"],
        "detail": {"lastStatus": ["STOPPED"], "taskDefinitionArn": [td["taskDefinitionArn"]]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": qarn}])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    wait_task(ecs, arn)
    deadline = time.monotonic() + 30
    while True:
        msgs = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages")
        if msgs:
            break
        assert time.monotonic() < deadline
    event = json.loads(msgs[0]["Body"])
    assert event["source"] == "aws.ecs"
    assert event["resources"] == [arn]
    assert event["detail"]["stopCode"] == "EssentialContainerExited"
    assert event["detail"]["containers"][0]["exitCode"] == 0


def test_tags(ecs):
    td = register(ecs, [container("c", ["true"], image="alpine")])
    arn = td["taskDefinitionArn"]
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "a", "value": "1"}])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == [{"key": "a", "value": "1"}]
    ecs.untag_resource(resourceArn=arn, tagKeys=["a"])
    assert ecs.list_tags_for_resource(resourceArn=arn)["tags"] == []


def test_task_running_at_kill_9_is_stopped_after_restart(tmp_path):
    import re
    import subprocess

    import boto3

    from conftest import REGION, tsumiki_bin

    def start():
        proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                                 "--data-dir", str(tmp_path / "data")],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
        return proc, boto3.client("ecs", endpoint_url=endpoint, region_name=REGION,
                                  aws_access_key_id="testing", aws_secret_access_key="testing")

    marker = unique("crash")
    proc, ecs = start()
    try:
        # Its child outlives the kill -9 (the parent-death signal reaches only the
        # container's own process); the next server reaps it.
        body = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                f"'import time; time.sleep(3600)', '{marker}-child']); time.sleep(3600)")
        ecs.create_cluster()
        td = register(ecs, [container("c", ["python3", "-c", body, marker])])
        arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
        wait_task(ecs, arn, "RUNNING")
        deadline = time.monotonic() + 30
        while len(processes_with(marker)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    proc, ecs = start()
    try:
        deadline = time.monotonic() + 10
        while processes_with(marker):
            assert time.monotonic() < deadline, "a container's process outlived the restart"
            time.sleep(0.05)
        task = ecs.describe_tasks(tasks=[arn])["tasks"][0]
        assert task["lastStatus"] == "STOPPED"
        assert "tsumiki stopped while it ran" in task["stoppedReason"]
        assert ecs.describe_task_definition(taskDefinition=td["family"])["taskDefinition"]["revision"] == 1
    finally:
        proc.kill()
        proc.wait()


def fresh_account_ecs(server):
    # A 12-digit access key acts in its own account, where nothing exists yet.
    account = f"{uuid.uuid4().int % 10**12:012d}"
    return server.client("ecs", access_key=account)


def test_run_task_needs_an_existing_default_cluster(server):
    ecs = fresh_account_ecs(server)
    td = register(ecs, [container("c", ["true"], image="alpine")])
    with pytest.raises(ClientError) as e:
        ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"
    assert ecs.list_clusters()["clusterArns"] == []
    with pytest.raises(ClientError) as e:
        ecs.run_task(cluster="nope", taskDefinition=td["family"], networkConfiguration=NETWORK)
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"
    # CreateCluster without a name makes `default`; then RunTask works.
    assert ecs.create_cluster()["cluster"]["clusterName"] == "default"
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    assert wait_task(ecs, arn)["containers"][0]["exitCode"] == 0


def test_start_task_on_a_fargate_cluster_has_no_container_instances(ecs):
    td = register(ecs, [container("c", ["true"], image="alpine")])
    assert ecs.list_container_instances()["containerInstanceArns"] == []
    resp = ecs.start_task(taskDefinition=td["family"], containerInstances=["abc123"],
                          networkConfiguration=NETWORK)
    assert resp["tasks"] == []
    assert resp["failures"] == [{"arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/default/abc123",
                                 "reason": "MISSING"}]
    with pytest.raises(ClientError) as e:
        ecs.start_task(cluster="nope-cluster", taskDefinition=td["family"],
                       containerInstances=["abc123"])
    assert e.value.response["Error"]["Code"] == "ClusterNotFoundException"


def test_overrides_command_env_cpu_memory_and_count(ecs, logs):
    group = unique("/ecs/ovr")
    script = "import os; print(os.environ['A'], os.environ['B'])"
    td = register(ecs, [container("main", ["python3", "-c", "print('definition')"], group=group,
                                  environment=[{"name": "A", "value": "def"},
                                               {"name": "B", "value": "def"}])])
    resp = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK, count=3,
                        overrides={"cpu": "512", "memory": "1024", "containerOverrides": [{
                            "name": "main", "command": ["python3", "-c", script],
                            "environment": [{"name": "B", "value": "ovr"}]}]})
    assert len(resp["tasks"]) == 3
    for task in resp["tasks"]:
        assert task["cpu"] == "512" and task["memory"] == "1024"
        assert task["overrides"]["cpu"] == "512"
        assert task["overrides"]["containerOverrides"][0]["command"][0] == "python3"
        stopped = wait_task(ecs, task["taskArn"])
        assert stopped["containers"][0]["exitCode"] == 0
        task_id = task["taskArn"].rsplit("/", 1)[1]
        events = logs.get_log_events(logGroupName=group, logStreamName=f"app/main/{task_id}",
                                     startFromHead=True)["events"]
        assert [e["message"] for e in events] == ["def ovr"]
    for count in (0, 11):
        with pytest.raises(ClientError) as e:
            ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK, count=count)
        assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK,
                     overrides={"cpu": "256", "memory": "4096"})
    assert e.value.response["Error"]["Message"].startswith(
        "No Fargate configuration exists for given values: 256 CPU, 4096 memory.")
    with pytest.raises(ClientError) as e:
        ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK,
                     overrides={"containerOverrides": [{"name": "ghost", "command": ["x"]}]})
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"
    assert "ghost" in e.value.response["Error"]["Message"]


def test_depends_on_orders_container_starts(ecs, logs, tmp_path):
    group = unique("/ecs/deps")
    stamp = tmp_path / "order"
    # Each container appends its name to a shared file: the order of starts.
    def writer(name, body=""):
        return ["sh", "-c", f"echo {name} >> {stamp}; {body}"]
    # START only promises that side's process was started before app's, not that side's shell
    # has written yet, so app waits a moment before writing; SUCCESS and COMPLETE are exact.
    td = register(ecs, [
        container("app", ["sh", "-c", f"sleep 1; echo app >> {stamp}; sleep 0.2"], image="alpine",
                  group=group,
                  dependsOn=[{"containerName": "init", "condition": "SUCCESS"},
                             {"containerName": "side", "condition": "START"}]),
        # init writes as it ends, so side (COMPLETE) writing first would show a broken order.
        container("init", ["sh", "-c", f"sleep 0.5; echo init >> {stamp}; exit 0"], image="alpine",
                  essential=False),
        container("side", writer("side", "sleep 3600"), image="alpine", essential=False,
                  stopTimeout=2, dependsOn=[{"containerName": "init", "condition": "COMPLETE"}]),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    stopped = wait_task(ecs, arn)
    assert stamp.read_text().split() == ["init", "side", "app"]
    codes = {c["name"]: c.get("exitCode") for c in stopped["containers"]}
    assert codes["init"] == 0 and codes["app"] == 0 and codes["side"] in (143, 137)
    assert stopped["stoppedReason"] == "Essential container in task exited"


def test_failed_success_dependency_never_starts_the_essential_container(ecs, tmp_path):
    stamp = tmp_path / "ran"
    td = register(ecs, [
        container("init", ["sh", "-c", "exit 3"], image="alpine", essential=False),
        container("app", ["sh", "-c", f"touch {stamp}"], image="alpine",
                  dependsOn=[{"containerName": "init", "condition": "SUCCESS"}]),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    stopped = wait_task(ecs, arn)
    app = next(c for c in stopped["containers"] if c["name"] == "app")
    assert app["lastStatus"] == "STOPPED" and "exitCode" not in app
    assert "init exited with code 3" in app["reason"]
    assert stopped["stopCode"] == "EssentialContainerExited"
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert not stamp.exists()


def test_depends_on_is_validated_at_registration(ecs):
    cases = [
        [container("a", ["true"], image="alpine",
                   dependsOn=[{"containerName": "ghost", "condition": "START"}])],
        [container("a", ["true"], image="alpine",
                   dependsOn=[{"containerName": "b", "condition": "SUCCESS"}]),
         container("b", ["true"], image="alpine")],  # b is essential
        [container("a", ["true"], image="alpine",
                   dependsOn=[{"containerName": "b", "condition": "HEALTHY"}]),
         container("b", ["true"], image="alpine")],  # b has no healthCheck
        [container("a", ["true"], image="alpine",
                   dependsOn=[{"containerName": "b", "condition": "START"}]),
         container("b", ["true"], image="alpine",
                   dependsOn=[{"containerName": "a", "condition": "START"}])],
    ]
    for containers in cases:
        with pytest.raises(ClientError) as e:
            register(ecs, containers)
        assert e.value.response["Error"]["Code"] == "ClientException"


def test_healthy_dependency_waits_for_the_health_check_on_the_clock(clock_server, tmp_path):
    ecs = clock_server.client("ecs")
    ecs.create_cluster()
    ready = tmp_path / "ready"
    started = tmp_path / "started"
    marker = unique("hc")
    td = register(ecs, [
        container("db", ["python3", "-c", "import time; time.sleep(3600)", marker],
                  essential=False, stopTimeout=2,
                  healthCheck={"command": ["CMD-SHELL", f"test -f {ready}"], "interval": 10,
                               "retries": 3, "timeout": 5}),
        container("app", ["sh", "-c", f"touch {started}"], image="alpine",
                  dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
    ])
    assert td["containerDefinitions"][0]["healthCheck"]["retries"] == 3
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    task = wait_task(ecs, arn, "RUNNING")
    db = next(c for c in task["containers"] if c["name"] == "db")
    assert db["healthStatus"] == "UNKNOWN"
    clock_server.advance(10)  # the first check fails: the file is missing
    time.sleep(0.5)
    assert not started.exists()
    ready.touch()
    clock_server.advance(10)  # the second passes: db is HEALTHY, app starts and exits
    stopped = wait_task(ecs, arn)
    assert started.exists()
    db = next(c for c in stopped["containers"] if c["name"] == "db")
    assert db["healthStatus"] == "HEALTHY"
    assert db["exitCode"] in (143, 137)
    assert processes_with(marker) == []


def test_eventbridge_schedule_rule_runs_an_ecs_task(clock_server, tmp_path):
    ecs = clock_server.client("ecs")
    events = clock_server.client("events")
    cluster = ecs.create_cluster(clusterName=unique("ev"))["cluster"]
    stamp = tmp_path / "ran"
    td = register(ecs, [container("job", ["sh", "-c", "exit 1"], image="alpine")])
    rule = unique("ecs-every5")
    events.put_rule(Name=rule, ScheduleExpression="rate(5 minutes)")
    # The target's Input is RunTask's overrides, as AWS uses it for ECS targets.
    overrides = {"containerOverrides": [{"name": "job", "command": [
        "sh", "-c", f'echo "$GREETING" >> {stamp}; exit 4'],
        "environment": [{"name": "GREETING", "value": "from-rule"}]}]}
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rule, Targets=[{
            "Id": "task", "Arn": cluster["clusterArn"],
            "EcsParameters": {"TaskDefinitionArn": td["taskDefinitionArn"]}}])
    assert e.value.response["Error"]["Message"] == \
        f"RoleArn is required for target {cluster['clusterArn']}."
    resp = events.put_targets(Rule=rule, Targets=[{
        "Id": "task", "Arn": cluster["clusterArn"],
        "RoleArn": "arn:aws:iam::123456789012:role/ecsEventsRole",
        "Input": json.dumps(overrides),
        "EcsParameters": {"TaskDefinitionArn": td["taskDefinitionArn"], "TaskCount": 2,
                          "LaunchType": "FARGATE",
                          "NetworkConfiguration": {"awsvpcConfiguration": {
                              "Subnets": ["subnet-12345678"], "AssignPublicIp": "DISABLED"}},
                          "Tags": [{"Key": "from", "Value": "rule"}]}}])
    assert resp["FailedEntryCount"] == 0
    assert ecs.list_tasks(cluster=cluster["clusterName"], desiredStatus="STOPPED")["taskArns"] == []
    clock_server.advance(301)
    deadline = time.monotonic() + 30
    while True:
        arns = ecs.list_tasks(cluster=cluster["clusterName"], desiredStatus="STOPPED",
                              startedBy=f"events-rule/{rule}")["taskArns"]
        if len(arns) == 2:
            break
        assert time.monotonic() < deadline, f"tasks stopped: {arns}"
        time.sleep(0.05)
    tasks = ecs.describe_tasks(cluster=cluster["clusterName"], tasks=arns,
                               include=["TAGS"])["tasks"]
    for t in tasks:
        assert t["containers"][0]["exitCode"] == 4
        assert t["launchType"] == "FARGATE"
        assert t["tags"] == [{"key": "from", "value": "rule"}]
        assert t["overrides"]["containerOverrides"][0]["environment"][0]["value"] == "from-rule"
    assert stamp.read_text().split() == ["from-rule", "from-rule"]
    events.remove_targets(Rule=rule, Ids=["task"])
    events.delete_rule(Name=rule)


def test_stop_task_while_a_container_waits_for_its_dependency(ecs, tmp_path):
    marker = unique("waiting")
    started = tmp_path / "started"
    td = register(ecs, [
        container("db", ["python3", "-c", "import time; time.sleep(3600)", marker],
                  essential=False, stopTimeout=2,
                  healthCheck={"command": ["CMD-SHELL", "exit 1"], "interval": 300}),
        container("app", ["sh", "-c", f"touch {started}"], image="alpine",
                  dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    wait_task(ecs, arn, "RUNNING")
    wait_for_processes = time.monotonic() + 30
    while not processes_with(marker):
        assert time.monotonic() < wait_for_processes
        time.sleep(0.05)
    app = next(c for c in ecs.describe_tasks(tasks=[arn])["tasks"][0]["containers"]
               if c["name"] == "app")
    assert app["lastStatus"] == "PENDING"
    ecs.stop_task(task=arn, reason="not needed")
    stopped = wait_task(ecs, arn)
    assert stopped["stopCode"] == "UserInitiated" and stopped["stoppedReason"] == "not needed"
    app = next(c for c in stopped["containers"] if c["name"] == "app")
    assert app["lastStatus"] == "STOPPED" and "exitCode" not in app
    assert not started.exists()
    assert processes_with(marker) == []


def test_start_timeout_gives_up_on_a_dependency_on_the_clock(clock_server, tmp_path):
    ecs = clock_server.client("ecs")
    ecs.create_cluster()
    marker = unique("slowdb")
    started = tmp_path / "started"
    td = register(ecs, [
        container("db", ["python3", "-c", "import time; time.sleep(3600)", marker],
                  essential=False, stopTimeout=2, startTimeout=30,
                  healthCheck={"command": ["CMD-SHELL", "exit 1"], "interval": 300}),
        container("app", ["sh", "-c", f"touch {started}"], image="alpine",
                  dependsOn=[{"containerName": "db", "condition": "HEALTHY"}]),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    wait_task(ecs, arn, "RUNNING")
    clock_server.advance(31)
    stopped = wait_task(ecs, arn)
    app = next(c for c in stopped["containers"] if c["name"] == "app")
    assert "startTimeout" in app["reason"] and "exitCode" not in app
    assert stopped["stoppedReason"] == "Essential container in task exited"
    assert not started.exists()
    assert processes_with(marker) == []


def test_stop_task_stops_dependents_before_their_dependencies(ecs, tmp_path):
    order = tmp_path / "order"

    # app takes its time to shut down: were db stopped at the same time, it would write first.
    def until_term(name, linger=0):
        return ["sh", "-c", f"trap 'sleep {linger}; echo {name} >> {order}; exit 0' TERM; "
                            "while true; do sleep 0.05; done"]
    td = register(ecs, [
        container("db", until_term("db"), image="alpine", essential=False, stopTimeout=5),
        container("app", until_term("app", 0.5), image="alpine", stopTimeout=5,
                  dependsOn=[{"containerName": "db", "condition": "START"}]),
    ])
    arn = ecs.run_task(taskDefinition=td["family"], networkConfiguration=NETWORK)["tasks"][0]["taskArn"]
    deadline = time.monotonic() + 30
    while not all(c["lastStatus"] == "RUNNING"
                  for c in ecs.describe_tasks(tasks=[arn])["tasks"][0]["containers"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # both shells have set their traps
    ecs.stop_task(task=arn)
    stopped = wait_task(ecs, arn)
    assert order.read_text().split() == ["app", "db"]
    assert {c["name"]: c["exitCode"] for c in stopped["containers"]} == {"app": 0, "db": 0}


def test_scheduler_schedule_runs_an_ecs_task(clock_server, tmp_path):
    ecs = clock_server.client("ecs")
    scheduler = clock_server.client("scheduler", access_key="123456789012")
    cluster = ecs.create_cluster(clusterName=unique("sched"))["cluster"]
    td = register(ecs, [container("job", ["sh", "-c", "exit 0"], image="alpine")])
    name = unique("ecs-sched")
    scheduler.create_schedule(
        Name=name, ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": cluster["clusterArn"], "RoleArn": "arn:aws:iam::123456789012:role/s",
                "Input": json.dumps({"containerOverrides": [
                    {"name": "job", "command": ["sh", "-c", "exit 9"]}]}),
                "EcsParameters": {"TaskDefinitionArn": td["taskDefinitionArn"],
                                  "LaunchType": "FARGATE",
                                  "NetworkConfiguration": {"awsvpcConfiguration": {
                                      "Subnets": ["subnet-12345678"]}},
                                  "Tags": [{"from": "schedule"}]}})
    clock_server.advance(301)
    deadline = time.monotonic() + 30
    while True:
        arns = ecs.list_tasks(cluster=cluster["clusterName"], desiredStatus="STOPPED")["taskArns"]
        if arns:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    task = ecs.describe_tasks(cluster=cluster["clusterName"], tasks=arns, include=["TAGS"])["tasks"][0]
    assert task["containers"][0]["exitCode"] == 9
    assert task["tags"] == [{"key": "from", "value": "schedule"}]
    scheduler.delete_schedule(Name=name)
