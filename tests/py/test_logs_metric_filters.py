"""CloudWatch Logs metric filters through boto3: Put/Describe/DeleteMetricFilter with AWS's
checks and paging, and TestMetricFilter on terms, JSON and space-delimited patterns."""

import pytest
from botocore.exceptions import ClientError

from lambda_util import unique


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def transformation(name="Errors", value="1", **extra):
    return [{"metricName": name, "metricNamespace": "App", "metricValue": value, **extra}]


def test_put_describe_delete(logs):
    group = unique("/metric/group")
    logs.create_log_group(logGroupName=group)
    logs.put_metric_filter(logGroupName=group, filterName="errors", filterPattern="ERROR",
                           metricTransformations=transformation(defaultValue=0.0))
    logs.put_metric_filter(logGroupName=group, filterName="latency",
                           filterPattern="{ $.latency > 100 }",
                           metricTransformations=transformation("Latency", "$.latency", unit="Milliseconds"))
    logs.put_metric_filter(logGroupName=group, filterName="bytes",
                           filterPattern="[ip, user, ..., status, bytes]",
                           metricTransformations=transformation("Bytes", "$bytes",
                                                                dimensions={"User": "$user"}))
    got = logs.describe_metric_filters(logGroupName=group)["metricFilters"]
    assert [f["filterName"] for f in got] == ["bytes", "errors", "latency"]
    latency = got[2]
    assert latency["logGroupName"] == group
    assert latency["metricTransformations"][0]["metricValue"] == "$.latency"
    assert isinstance(latency["creationTime"], int)

    assert [f["filterName"] for f in logs.describe_metric_filters(
        logGroupName=group, filterNamePrefix="l")["metricFilters"]] == ["latency"]
    assert [f["filterName"] for f in logs.describe_metric_filters(
        metricName="Bytes", metricNamespace="App")["metricFilters"] if f["logGroupName"] == group] == ["bytes"]
    first = logs.describe_metric_filters(logGroupName=group, limit=2)
    assert len(first["metricFilters"]) == 2 and "nextToken" in first
    second = logs.describe_metric_filters(logGroupName=group, limit=2, nextToken=first["nextToken"])
    assert [f["filterName"] for f in second["metricFilters"]] == ["latency"]
    assert "nextToken" not in second

    logs.delete_metric_filter(logGroupName=group, filterName="errors")
    with pytest.raises(ClientError) as e:
        logs.delete_metric_filter(logGroupName=group, filterName="errors")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert len(logs.describe_metric_filters(logGroupName=group)["metricFilters"]) == 2


@pytest.mark.parametrize("pattern,value,extra", [
    ("{ $.a = ", "1", {}),                       # a broken pattern
    ("ERROR", "$.latency", {}),                  # a JSON selector needs a JSON pattern
    ("[ip, user]", "$bytes", {}),                # no such field
    ("ERROR", "1", {"defaultValue": 0.0, "dimensions": {"a": "b"}}),
])
def test_put_refuses_what_aws_refuses(logs, pattern, value, extra):
    group = unique("/metric/bad")
    logs.create_log_group(logGroupName=group)
    with pytest.raises(ClientError) as e:
        logs.put_metric_filter(logGroupName=group, filterName="f", filterPattern=pattern,
                               metricTransformations=transformation(value=value, **extra))
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


def test_put_on_a_missing_group(logs):
    with pytest.raises(ClientError) as e:
        logs.put_metric_filter(logGroupName=unique("/metric/none"), filterName="f",
                               filterPattern="", metricTransformations=transformation())
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_test_metric_filter(logs):
    out = logs.test_metric_filter(filterPattern="[ip, user, ..., status = 4*, bytes]", logEventMessages=[
        "10.0.0.1 alice GET /a 404 512",
        "10.0.0.2 bob GET /b 200 100",
        "10.0.0.3 carol POST /c 403 7",
    ])["matches"]
    assert [m["eventNumber"] for m in out] == [1, 3]
    assert out[0]["eventMessage"] == "10.0.0.1 alice GET /a 404 512"
    assert out[0]["extractedValues"] == {"$ip": "10.0.0.1", "$user": "alice", "$status": "404",
                                         "$bytes": "512"}
    out = logs.test_metric_filter(filterPattern='{ $.level = "ERROR" }', logEventMessages=[
        '{"level": "ERROR"}', '{"level": "INFO"}', "not json"])["matches"]
    assert [m["eventNumber"] for m in out] == [1]
    out = logs.test_metric_filter(filterPattern="?ERROR ?WARN -ignore", logEventMessages=[
        "ERROR x", "WARN y", "ERROR ignore", "INFO"])["matches"]
    assert [m["eventNumber"] for m in out] == [1, 2]
