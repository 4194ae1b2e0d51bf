"""CloudWatch Logs through boto3: groups, streams, events, filter patterns, retention, tags.

Each test uses its own log group names, so tests can share the servers; the retention test
moves the manual clock and looks only at its own group.
"""
import json

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION


@pytest.fixture(scope="session")
def logs(server):
    return server.client("logs")


@pytest.fixture(scope="session")
def clogs(clock_server):
    return clock_server.client("logs")


def now_ms(server):
    return server.admin("GET", "/_tsumiki/clock")["now_ms"]


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def group_with_stream(logs, group, stream="s"):
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName=stream)


def test_group_lifecycle_and_describe(logs, name):
    group = "/py/" + name("g")
    logs.create_log_group(logGroupName=group, tags={"team": "core"}, logGroupClass="STANDARD")
    with pytest.raises(ClientError) as e:
        logs.create_log_group(logGroupName=group)
    assert error_code(e) == "ResourceAlreadyExistsException"

    [g] = logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"]
    assert g["logGroupName"] == group
    assert g["arn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}:*"
    assert g["logGroupArn"] == f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    assert g["storedBytes"] == 0 and g["metricFilterCount"] == 0
    assert g["logGroupClass"] == "STANDARD"
    assert "retentionInDays" not in g

    with pytest.raises(ClientError) as e:
        logs.describe_log_groups(logGroupNamePrefix="/py", logGroupNamePattern="py")
    assert error_code(e) == "InvalidParameterException"

    logs.delete_log_group(logGroupName=group)
    assert logs.describe_log_groups(logGroupNamePrefix=group)["logGroups"] == []
    with pytest.raises(ClientError) as e:
        logs.delete_log_group(logGroupName=group)
    assert error_code(e) == "ResourceNotFoundException"
    assert e.value.response["Error"]["Message"] == "The specified log group does not exist."


def test_put_get_and_paging(server, logs, name):
    group = name("paging")
    group_with_stream(logs, group)
    now = now_ms(server)
    events = [{"timestamp": now - 30_000 + i * 1000, "message": f"line {i}"} for i in range(12)]
    out = logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=events)
    assert len(out["nextSequenceToken"]) == 56
    assert "rejectedLogEventsInfo" not in out

    page = logs.get_log_events(logGroupName=group, logStreamName="s", startFromHead=True, limit=5)
    assert [e["message"] for e in page["events"]] == [f"line {i}" for i in range(5)]
    assert page["nextForwardToken"].startswith("f/")
    assert page["nextBackwardToken"].startswith("b/")
    # Reading forward ends when the forward token comes back unchanged, as on AWS.
    seen, token = [], None
    while True:
        kw = {"nextToken": token} if token else {"startFromHead": True}
        page = logs.get_log_events(logGroupName=group, logStreamName="s", limit=5, **kw)
        seen += [e["message"] for e in page["events"]]
        if page["nextForwardToken"] == token:
            break
        token = page["nextForwardToken"]
    assert seen == [f"line {i}" for i in range(12)]

    latest = logs.get_log_events(logGroupName=group, logStreamName="s", limit=3)
    assert [e["message"] for e in latest["events"]] == ["line 9", "line 10", "line 11"]

    with pytest.raises(ClientError) as e:
        logs.put_log_events(logGroupName=group, logStreamName="s", logEvents=list(reversed(events[:2])))
    assert error_code(e) == "InvalidParameterException"
    assert "chronological order" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        logs.put_log_events(logGroupName=group, logStreamName="missing", logEvents=events[:1])
    assert e.value.response["Error"]["Message"] == "The specified log stream does not exist."

    [stream] = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert stream["firstEventTimestamp"] == now - 30_000
    assert stream["lastEventTimestamp"] == now - 30_000 + 11_000


def test_filter_patterns(server, logs, name):
    group = name("filter")
    group_with_stream(logs, group, "a")
    logs.create_log_stream(logGroupName=group, logStreamName="b")
    now = now_ms(server)
    logs.put_log_events(logGroupName=group, logStreamName="a", logEvents=[
        {"timestamp": now - 3000, "message": json.dumps({"user": {"id": 7}, "latency": 1200})},
        {"timestamp": now - 1000, "message": "ERROR timeout talking to db"},
    ])
    logs.put_log_events(logGroupName=group, logStreamName="b", logEvents=[
        {"timestamp": now - 2000, "message": json.dumps({"user": {"id": 8}, "latency": 80})},
    ])

    def matching(pattern, **kw):
        out = logs.filter_log_events(logGroupName=group, filterPattern=pattern, **kw)
        assert out["searchedLogStreams"] == []
        return [(e["logStreamName"], e["message"][:12]) for e in out["events"]]

    assert matching("{ $.latency > 1000 }") == [("a", '{"user": {"i')]
    assert matching("{ $.user.id = 8 || $.user.id = 7 }") == [("a", '{"user": {"i'), ("b", '{"user": {"i')]
    assert matching('"ERROR timeout"') == [("a", "ERROR timeou")]
    assert matching("[level = ERROR, word, ...]") == [("a", "ERROR timeou")]
    assert matching("%tim.out%", logStreamNamePrefix="a") == [("a", "ERROR timeou")]
    assert matching("user", logStreamNames=["b"]) == [("b", '{"user": {"i')]
    with pytest.raises(ClientError) as e:
        matching("{ $.latency = ")
    assert error_code(e) == "InvalidParameterException"


def test_retention_on_the_manual_clock(clock_server, clogs, name):
    group = name("retention")
    group_with_stream(clogs, group)
    with pytest.raises(ClientError) as e:
        clogs.put_retention_policy(logGroupName=group, retentionInDays=2)
    assert error_code(e) == "InvalidParameterException"
    clogs.put_retention_policy(logGroupName=group, retentionInDays=1)
    assert clogs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]["retentionInDays"] == 1
    now = now_ms(clock_server)
    clogs.put_log_events(logGroupName=group, logStreamName="s",
                         logEvents=[{"timestamp": now, "message": "short-lived"}])
    assert len(clogs.filter_log_events(logGroupName=group)["events"]) == 1
    clock_server.advance(2 * 86_400)
    assert clogs.filter_log_events(logGroupName=group)["events"] == []
    assert clogs.get_log_events(logGroupName=group, logStreamName="s")["events"] == []
    clogs.delete_retention_policy(logGroupName=group)
    assert "retentionInDays" not in clogs.describe_log_groups(logGroupNamePrefix=group)["logGroups"][0]


def test_tags_by_name_and_arn(logs, name):
    group = name("tags")
    logs.create_log_group(logGroupName=group, tags={"a": "1"})
    arn = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{group}"
    logs.tag_resource(resourceArn=arn, tags={"b": "2"})
    assert logs.list_tags_for_resource(resourceArn=arn)["tags"] == {"a": "1", "b": "2"}
    logs.untag_log_group(logGroupName=group, tags=["a"])
    assert logs.list_tags_log_group(logGroupName=group)["tags"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        logs.tag_resource(resourceArn=arn, tags={f"k{i}": "v" for i in range(50)})
    assert error_code(e) == "TooManyTagsException"
    with pytest.raises(ClientError) as e:
        logs.list_tags_for_resource(resourceArn=arn + "-missing")
    assert error_code(e) == "ResourceNotFoundException"


def test_unimplemented_operations_say_so(logs):
    with pytest.raises(ClientError) as e:
        logs.describe_export_tasks()
    assert error_code(e) == "NotImplemented"
    assert "DescribeExportTasks" in e.value.response["Error"]["Message"]
