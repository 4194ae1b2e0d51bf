"""Step Functions versions and aliases through boto3: publishing (also on create/update),
immutable snapshots, weighted alias routing at StartExecution, AWS's errors, and versions and
aliases surviving `kill -9`."""

import json
import signal
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from test_stepfunctions_crash import durable_server

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def uid(prefix="v"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pass_def(value):
    return json.dumps({"StartAt": "P", "States": {"P": {"Type": "Pass", "Result": value, "End": True}}})


def wait_done(sfn, arn, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline
        time.sleep(0.05)


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture(scope="module")
def sfn(server):
    return server.client("stepfunctions", inject_host_prefix=False)


def test_publish_versions_are_immutable_snapshots(sfn):
    name = uid()
    created = sfn.create_state_machine(name=name, definition=pass_def("one"), roleArn=ROLE,
                                       publish=True, versionDescription="first")
    arn = created["stateMachineArn"]
    v1 = created["stateMachineVersionArn"]
    assert v1 == f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{name}:1"

    # The same revision again answers the same version (idempotent).
    again = sfn.publish_state_machine_version(stateMachineArn=arn)
    assert again["stateMachineVersionArn"] == v1

    rev = sfn.update_state_machine(stateMachineArn=arn, definition=pass_def("two"))["revisionId"]
    with pytest.raises(ClientError) as e:
        sfn.publish_state_machine_version(stateMachineArn=arn, revisionId="not-the-current-one")
    assert code(e) == "ConflictException"
    v2 = sfn.publish_state_machine_version(stateMachineArn=arn, revisionId=rev,
                                           description="second")["stateMachineVersionArn"]
    assert v2.endswith(":2")
    up = sfn.update_state_machine(stateMachineArn=arn, definition=pass_def("three"), publish=True,
                                  versionDescription="third")
    v3 = up["stateMachineVersionArn"]
    assert v3.endswith(":3")

    d1 = sfn.describe_state_machine(stateMachineArn=v1)
    assert d1["stateMachineArn"] == v1
    assert json.loads(d1["definition"])["States"]["P"]["Result"] == "one"
    assert d1["description"] == "first"
    assert json.loads(sfn.describe_state_machine(stateMachineArn=arn)["definition"])["States"]["P"]["Result"] == "three"

    listed = [v["stateMachineVersionArn"] for v in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]]
    assert listed == [v3, v2, v1]
    page = sfn.list_state_machine_versions(stateMachineArn=arn, maxResults=2)
    assert len(page["stateMachineVersions"]) == 2 and "nextToken" in page

    # An execution of a version runs that version's definition and names it.
    ex = sfn.start_execution(stateMachineArn=v1)["executionArn"]
    assert ex == f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{name}:{ex.rsplit(':', 1)[1]}"
    d = wait_done(sfn, ex)
    assert json.loads(d["output"]) == "one"
    assert d["stateMachineArn"] == arn
    assert d["stateMachineVersionArn"] == v1
    assert "stateMachineAliasArn" not in d
    described = sfn.describe_state_machine_for_execution(executionArn=ex)
    assert json.loads(described["definition"])["States"]["P"]["Result"] == "one"
    assert described["revisionId"] == d1["revisionId"]
    plain = wait_done(sfn, sfn.start_execution(stateMachineArn=arn)["executionArn"])
    assert json.loads(plain["output"]) == "three" and "stateMachineVersionArn" not in plain
    by_version = sfn.list_executions(stateMachineArn=v1)["executions"]
    assert [x["executionArn"] for x in by_version] == [ex]
    assert by_version[0]["stateMachineVersionArn"] == v1
    assert len(sfn.list_executions(stateMachineArn=arn)["executions"]) == 2

    sfn.delete_state_machine_version(stateMachineVersionArn=v2)
    listed = [v["stateMachineVersionArn"] for v in sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"]]
    assert listed == [v3, v1]
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine(stateMachineArn=v2)
    assert code(e) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=v2)
    assert code(e) == "StateMachineDoesNotExist"
    # Numbers are never reused.
    sfn.update_state_machine(stateMachineArn=arn, definition=pass_def("four"))
    assert sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"].endswith(":4")


def test_publish_errors(sfn):
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine(name=uid(), definition=pass_def(1), roleArn=ROLE, versionDescription="x")
    assert code(e) == "ValidationException"
    missing = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{uid()}"
    with pytest.raises(ClientError) as e:
        sfn.publish_state_machine_version(stateMachineArn=missing)
    assert code(e) == "StateMachineDoesNotExist"
    with pytest.raises(ClientError) as e:
        sfn.delete_state_machine_version(stateMachineVersionArn=missing)
    assert code(e) == "InvalidArn"
    # A never-updated machine's revision is INITIAL.
    arn = sfn.create_state_machine(name=uid(), definition=pass_def(1), roleArn=ROLE)["stateMachineArn"]
    assert sfn.publish_state_machine_version(stateMachineArn=arn, revisionId="INITIAL")["stateMachineVersionArn"].endswith(":1")


def test_alias_routing_and_errors(sfn):
    name = uid()
    arn = sfn.create_state_machine(name=name, definition=pass_def("a"), roleArn=ROLE, publish=True)["stateMachineArn"]
    v1 = f"{arn}:1"
    v2 = sfn.update_state_machine(stateMachineArn=arn, definition=pass_def("b"), publish=True)["stateMachineVersionArn"]

    for routing in ([{"stateMachineVersionArn": v1, "weight": 50}],
                    [{"stateMachineVersionArn": v1, "weight": 50}, {"stateMachineVersionArn": v1, "weight": 50}],
                    [{"stateMachineVersionArn": v1, "weight": 30}, {"stateMachineVersionArn": v2, "weight": 30}]):
        with pytest.raises(ClientError) as e:
            sfn.create_state_machine_alias(name="bad", routingConfiguration=routing)
        assert code(e) == "ValidationException", routing
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine_alias(name="nine", routingConfiguration=[{"stateMachineVersionArn": f"{arn}:9", "weight": 100}])
    assert code(e) == "ResourceNotFound"

    created = sfn.create_state_machine_alias(
        name="live", description="canary",
        routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 70},
                              {"stateMachineVersionArn": v2, "weight": 30}])
    alias = created["stateMachineAliasArn"]
    assert alias == f"{arn}:live"
    # Same request again: the same alias; a different routing: ConflictException.
    same = sfn.create_state_machine_alias(
        name="live", description="canary",
        routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 70},
                              {"stateMachineVersionArn": v2, "weight": 30}])
    assert same["stateMachineAliasArn"] == alias
    with pytest.raises(ClientError) as e:
        sfn.create_state_machine_alias(name="live", routingConfiguration=[{"stateMachineVersionArn": v1, "weight": 100}])
    assert code(e) == "ConflictException"

    d = sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert d["name"] == "live" and d["description"] == "canary"
    assert d["routingConfiguration"] == [{"stateMachineVersionArn": v1, "weight": 70},
                                         {"stateMachineVersionArn": v2, "weight": 30}]
    assert [a["stateMachineAliasArn"] for a in sfn.list_state_machine_aliases(stateMachineArn=arn)["stateMachineAliases"]] == [alias]

    outputs = {"a": 0, "b": 0}
    for _ in range(60):
        ex = sfn.start_execution(stateMachineArn=alias)["executionArn"]
        dx = wait_done(sfn, ex)
        assert dx["stateMachineAliasArn"] == alias
        assert dx["stateMachineVersionArn"] == (v1 if json.loads(dx["output"]) == "a" else v2)
        outputs[json.loads(dx["output"])] += 1
    # 70/30 over 60 draws: both versions run (the chance either never does is below 1e-9).
    assert outputs["a"] > 0 and outputs["b"] > 0, outputs
    assert len(sfn.list_executions(stateMachineArn=alias)["executions"]) == 60

    with pytest.raises(ClientError) as e:
        sfn.delete_state_machine_version(stateMachineVersionArn=v2)
    assert code(e) == "ConflictException"

    sfn.update_state_machine_alias(stateMachineAliasArn=alias, routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}])
    for _ in range(5):
        dx = wait_done(sfn, sfn.start_execution(stateMachineArn=alias)["executionArn"])
        assert json.loads(dx["output"]) == "b"
    d = sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert d["description"] == "canary" and d["updateDate"] >= d["creationDate"]
    with pytest.raises(ClientError) as e:
        sfn.update_state_machine_alias(stateMachineAliasArn=alias)
    assert code(e) == "ValidationException"

    sfn.delete_state_machine_version(stateMachineVersionArn=v1)  # no longer referenced
    sfn.delete_state_machine_alias(stateMachineAliasArn=alias)
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine_alias(stateMachineAliasArn=alias)
    assert code(e) == "ResourceNotFound"
    with pytest.raises(ClientError) as e:
        sfn.start_execution(stateMachineArn=alias)
    assert code(e) == "StateMachineDoesNotExist"

    # Deleting the machine deletes its versions and aliases.
    sfn.create_state_machine_alias(name="gone", routingConfiguration=[{"stateMachineVersionArn": v2, "weight": 100}])
    sfn.delete_state_machine(stateMachineArn=arn)
    assert sfn.list_state_machine_versions(stateMachineArn=arn)["stateMachineVersions"] == []
    with pytest.raises(ClientError) as e:
        sfn.describe_state_machine_alias(stateMachineAliasArn=f"{arn}:gone")
    assert code(e) == "ResourceNotFound"


def test_versions_and_aliases_survive_kill_9(tmp_path):
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        arn = sfn.create_state_machine(name="kept", definition=pass_def("old"), roleArn=ROLE, publish=True,
                                       versionDescription="v1")["stateMachineArn"]
        sfn.update_state_machine(stateMachineArn=arn, definition=pass_def("new"))
        sfn.create_state_machine_alias(name="prod", routingConfiguration=[{"stateMachineVersionArn": f"{arn}:1", "weight": 100}])
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()
        s = durable_server(tmp_path)
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        assert sfn.describe_state_machine(stateMachineArn=f"{arn}:1")["description"] == "v1"
        ex = sfn.start_execution(stateMachineArn=f"{arn}:prod")["executionArn"]
        d = wait_done(sfn, ex)
        assert json.loads(d["output"]) == "old" and d["stateMachineVersionArn"] == f"{arn}:1"
        # The counter survived too: the next version is 2.
        assert sfn.publish_state_machine_version(stateMachineArn=arn)["stateMachineVersionArn"] == f"{arn}:2"
    finally:
        s.proc.kill()
        s.proc.wait()
