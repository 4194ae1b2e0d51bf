"""EventBridge and EventBridge Scheduler through boto3: buses, rules, targets, PutEvents to SQS,
errors in AWS's words, schedules on the manual clock."""

import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

ACCOUNT = "123456789012"


def name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def clients(server):
    return (server.client("events", access_key=ACCOUNT),
            server.client("sqs", access_key=ACCOUNT))


def queue(sqs, qname):
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    return url, f"arn:aws:sqs:us-east-1:{ACCOUNT}:{qname}"


def receive(sqs, url, want=1, tries=10):
    got = []
    for _ in range(tries):
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                   MessageAttributeNames=["All"]).get("Messages", [])
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        got.extend(msgs)
        if len(got) >= want:
            break
    return got


def test_bus_lifecycle_permissions_and_tags(server):
    events, _ = clients(server)
    bus = name("bus")
    arn = events.create_event_bus(Name=bus, Tags=[{"Key": "team", "Value": "core"}])["EventBusArn"]
    assert arn == f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/{bus}"
    with pytest.raises(ClientError) as e:
        events.create_event_bus(Name=bus)
    assert e.value.response["Error"]["Code"] == "ResourceAlreadyExistsException"
    names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "default" in names and bus in names
    events.put_permission(EventBusName=bus, Action="events:PutEvents", Principal="111122223333",
                          StatementId="allow-other")
    policy = json.loads(events.describe_event_bus(Name=bus)["Policy"])
    assert policy["Statement"][0]["Sid"] == "allow-other"
    assert policy["Statement"][0]["Principal"] == {"AWS": "arn:aws:iam::111122223333:root"}
    events.remove_permission(EventBusName=bus, StatementId="allow-other")
    assert "Policy" not in events.describe_event_bus(Name=bus)
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == [{"Key": "team", "Value": "core"}]
    events.untag_resource(ResourceARN=arn, TagKeys=["team"])
    assert events.list_tags_for_resource(ResourceARN=arn)["Tags"] == []
    with pytest.raises(ClientError) as e:
        events.delete_event_bus(Name="default")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    events.delete_event_bus(Name=bus)
    with pytest.raises(ClientError) as e:
        events.describe_event_bus(Name=bus)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_rules_paging_and_errors(server):
    events, _ = clients(server)
    prefix = name("page")
    for i in range(5):
        events.put_rule(Name=f"{prefix}-{i}", EventPattern='{"source": ["x"]}')
    first = events.list_rules(NamePrefix=prefix, Limit=2)
    assert [r["Name"] for r in first["Rules"]] == [f"{prefix}-0", f"{prefix}-1"]
    rest = events.list_rules(NamePrefix=prefix, NextToken=first["NextToken"])
    assert [r["Name"] for r in rest["Rules"]] == [f"{prefix}-{i}" for i in range(2, 5)]
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("bad"), EventPattern='{"source": "x"}')
    assert e.value.response["Error"]["Code"] == "InvalidEventPatternException"
    assert e.value.response["Error"]["Message"].startswith("Event pattern is not valid. Reason: ")
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("bad"), ScheduleExpression="rate(1 minutes)")
    assert e.value.response["Error"]["Message"] == "Parameter ScheduleExpression is not valid."
    with pytest.raises(ClientError) as e:
        events.put_rule(Name=name("bad"))
    assert e.value.response["Error"]["Code"] == "ValidationException"
    rule = name("targets")
    events.put_rule(Name=rule, EventPattern='{"source": ["x"]}')
    with pytest.raises(ClientError) as e:
        events.put_targets(Rule=rule, Targets=[
            {"Id": str(i), "Arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:q{i}"} for i in range(6)])
    assert e.value.response["Error"]["Code"] == "LimitExceededException"


def test_put_events_to_sqs_with_input_path_and_entry_errors(server):
    events, sqs = clients(server)
    url, arn = queue(sqs, name("eb"))
    rule = name("rule")
    events.put_rule(Name=rule, EventPattern=json.dumps({"detail-type": ["ping"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn, "InputPath": "$.detail.msg"}])
    out = events.put_events(Entries=[
        {"Source": "app", "DetailType": "ping", "Detail": json.dumps({"msg": "hello"})},
        {"Source": "app", "DetailType": "ping"},
        {"Source": "app", "DetailType": "ping", "Detail": "[1]"},
        {"Source": "app", "DetailType": "ping", "Detail": "{}", "EventBusName": "nope"},
    ])
    assert out["FailedEntryCount"] == 3
    assert "EventId" in out["Entries"][0]
    assert out["Entries"][1]["ErrorCode"] == "InvalidArgument"
    assert out["Entries"][2]["ErrorCode"] == "MalformedDetail"
    assert out["Entries"][3]["ErrorCode"] == "ResourceNotFoundException"
    msgs = receive(sqs, url)
    assert [m["Body"] for m in msgs] == ['"hello"']


def test_dead_letter_queue_attributes(server):
    events, sqs = clients(server)
    dlq_url, dlq_arn = queue(sqs, name("dlq"))
    rule = name("dl")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["dl"]}))
    missing = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{name('missing')}"
    events.put_targets(Rule=rule, Targets=[{"Id": "m", "Arn": missing,
                                            "DeadLetterConfig": {"Arn": dlq_arn}}])
    events.put_events(Entries=[{"Source": "dl", "DetailType": "t", "Detail": "{}"}])
    msgs = receive(sqs, dlq_url)
    assert len(msgs) == 1
    attrs = {k: v["StringValue"] for k, v in msgs[0]["MessageAttributes"].items()}
    assert attrs["TARGET_ARN"] == missing
    assert attrs["RULE_ARN"].endswith(f":rule/{rule}")
    assert attrs["ERROR_CODE"] == "NO_RESOURCE"


def test_scheduled_rule_and_schedule_on_the_manual_clock(clock_server):
    events, sqs = clients(clock_server)
    scheduler = clock_server.client("scheduler", access_key=ACCOUNT)
    url, arn = queue(sqs, name("tick"))
    rule = name("every5")
    events.put_rule(Name=rule, ScheduleExpression="rate(5 minutes)")
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn, "Input": '{"from": "rule"}'}])
    group = name("grp")
    scheduler.create_schedule_group(Name=group)
    scheduler.create_schedule(Name="s", GroupName=group, ScheduleExpression="rate(5 minutes)",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/s",
                                      "Input": '{"from": "schedule"}'})
    with pytest.raises(ClientError) as e:
        scheduler.create_schedule(Name="s", GroupName=group, ScheduleExpression="rate(5 minutes)",
                                  FlexibleTimeWindow={"Mode": "OFF"},
                                  Target={"Arn": arn, "RoleArn": "arn:aws:iam::1:role/s"})
    assert e.value.response["Error"]["Code"] == "ConflictException"
    clock_server.advance(301)
    bodies = sorted(m["Body"] for m in receive(sqs, url, want=2))
    assert bodies == ['{"from": "rule"}', '{"from": "schedule"}']
    scheduler.delete_schedule_group(Name=group)
    with pytest.raises(ClientError) as e:
        scheduler.get_schedule(Name="s", GroupName=group)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
