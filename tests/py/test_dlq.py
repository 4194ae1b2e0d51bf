"""Dead-letter queues: redrive policy, redrive after maxReceiveCount, source listing, and
message move tasks (StartMessageMoveTask / ListMessageMoveTasks / CancelMessageMoveTask)."""

import json
import time

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from sqs_util import arn_of, attributes_of, error_code, receive


def redrive(dlq_arn, max_receives):
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})


def make_pair(sqs, name, max_receives=2, fifo=False, **source_attrs):
    extra = {"FifoQueue": "true"} if fifo else {}
    dlq = sqs.create_queue(QueueName=name("dlq", fifo=fifo), Attributes=extra)["QueueUrl"]
    src = sqs.create_queue(QueueName=name("src", fifo=fifo), Attributes={
        **extra, "RedrivePolicy": redrive(arn_of(sqs, dlq), max_receives), **source_attrs})["QueueUrl"]
    return src, dlq


def count(sqs, url):
    return int(attributes_of(sqs, url, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"])


def test_redrive_policy_round_trip(sqs, name):
    src, dlq = make_pair(sqs, name, max_receives=5)
    policy = json.loads(attributes_of(sqs, src, "RedrivePolicy")["RedrivePolicy"])
    assert policy["deadLetterTargetArn"] == arn_of(sqs, dlq)
    assert int(policy["maxReceiveCount"]) == 5
    # maxReceiveCount given as a string is accepted too.
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": arn_of(sqs, dlq), "maxReceiveCount": "7"})})
    assert int(json.loads(attributes_of(sqs, src, "RedrivePolicy")["RedrivePolicy"])["maxReceiveCount"]) == 7
    # An empty policy removes it.
    sqs.set_queue_attributes(QueueUrl=src, Attributes={"RedrivePolicy": ""})
    assert "RedrivePolicy" not in attributes_of(sqs, src)


@pytest.mark.parametrize("policy", [
    "not json",
    json.dumps({"maxReceiveCount": 3}),
    json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:x", "maxReceiveCount": 0}),
    json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:x", "maxReceiveCount": 1001}),
    json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:does-not-exist", "maxReceiveCount": 3}),
])
def test_invalid_redrive_policies(sqs, name, policy):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"RedrivePolicy": policy})
    assert error_code(e) in ("InvalidAttributeValue", "InvalidParameterValue")


def test_invalid_dead_letter_arn_is_an_invalid_parameter_value(sqs, name):
    """Recorded against AWS (LocalStack's validated snapshot
    test_invalid_dead_letter_arn_rejected_before_lookup): InvalidParameterValue,
    "Value {...} for parameter RedrivePolicy is invalid. Reason: Invalid value for deadLetterTargetArn."."""
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": "dummy", "maxReceiveCount": 42})})
    assert error_code(e) == "InvalidParameterValue"
    assert "Invalid value for deadLetterTargetArn" in e.value.response["Error"]["Message"]


def test_dead_letter_queue_must_have_the_same_type(sqs, name):
    fifo_dlq = sqs.create_queue(QueueName=name(fifo=True), Attributes={"FifoQueue": "true"})["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"RedrivePolicy": redrive(arn_of(sqs, fifo_dlq), 3)})
    assert error_code(e) in ("InvalidAttributeValue", "InvalidParameterValue")


def test_list_dead_letter_source_queues(sqs, name):
    dlq = sqs.create_queue(QueueName=name("dlq"))["QueueUrl"]
    sources = sorted(sqs.create_queue(QueueName=name("src"), Attributes={
        "RedrivePolicy": redrive(arn_of(sqs, dlq), 3)})["QueueUrl"] for _ in range(3))
    sqs.create_queue(QueueName=name("unrelated"))
    assert sorted(sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]) == sources
    paged = []
    token = None
    for _ in range(5):
        kwargs = {"QueueUrl": dlq, "MaxResults": 2}
        if token:
            kwargs["NextToken"] = token
        resp = sqs.list_dead_letter_source_queues(**kwargs)
        paged += resp["queueUrls"]
        token = resp.get("NextToken")
        if not token:
            break
    assert sorted(paged) == sources
    lonely = sqs.create_queue(QueueName=name("lonely"))["QueueUrl"]
    assert sqs.list_dead_letter_source_queues(QueueUrl=lonely)["queueUrls"] == []


def test_redrive_after_max_receive_count(clock_server, csqs, name):
    src, dlq = make_pair(csqs, name, max_receives=2, VisibilityTimeout="10")
    sent = csqs.send_message(QueueUrl=src, MessageBody="poison",
                             MessageAttributes={"a": {"DataType": "String", "StringValue": "kept"}})
    for expected_count in ("1", "2"):
        [m] = receive(csqs, src, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        assert m["Attributes"]["ApproximateReceiveCount"] == expected_count
        clock_server.advance(11)
    # The third receive would exceed maxReceiveCount: the message goes to the dead-letter queue.
    assert receive(csqs, src) == []
    [dead] = receive(csqs, dlq, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"])
    assert dead["MessageId"] == sent["MessageId"]
    assert dead["Body"] == "poison"
    assert dead["MessageAttributes"] == {"a": {"DataType": "String", "StringValue": "kept"}}
    assert dead["Attributes"]["DeadLetterQueueSourceArn"] == arn_of(csqs, src)
    assert count(csqs, src) == 0


def test_fifo_redrive_keeps_group_order(clock_server, csqs, name):
    src, dlq = make_pair(csqs, name, max_receives=1, fifo=True,
                         VisibilityTimeout="10", ContentBasedDeduplication="true")
    for body in ("first", "second"):
        csqs.send_message(QueueUrl=src, MessageBody=body, MessageGroupId="g")
    assert [m["Body"] for m in receive(csqs, src, MaxNumberOfMessages=1)] == ["first"]
    clock_server.advance(11)
    got = receive(csqs, src, MaxNumberOfMessages=10)
    assert [m["Body"] for m in got] == ["second"]
    assert [m["Body"] for m in receive(csqs, dlq, MaxNumberOfMessages=10)] == ["first"]


def wait_for_status(clock_server, sqs, source_arn, wanted, rounds=50):
    """Advances the clock a second at a time (the task moves one batch per second)."""
    for _ in range(rounds):
        results = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=10)["Results"]
        if results and results[0]["Status"] in wanted:
            return results
        clock_server.advance(1)
        time.sleep(0.02)
    raise AssertionError(f"move task never reached {wanted}: {results}")


def dead_letter(clock_server, sqs, src, n):
    """Sends n messages to src and lets each exceed maxReceiveCount=1."""
    for i in range(n):
        sqs.send_message(QueueUrl=src, MessageBody=f"m{i}")
    got = []
    for _ in range(n):
        got += receive(sqs, src, MaxNumberOfMessages=10)
        if len(got) >= n:
            break
    assert len(got) == n
    clock_server.advance(11)
    assert receive(sqs, src, MaxNumberOfMessages=10) == []


def test_move_task_redrives_to_the_source(clock_server, csqs, name):
    src, dlq = make_pair(csqs, name, max_receives=1, VisibilityTimeout="10")
    dead_letter(clock_server, csqs, src, 3)
    assert count(csqs, dlq) == 3
    dlq_arn = arn_of(csqs, dlq)
    handle = csqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle
    [task] = wait_for_status(clock_server, csqs, dlq_arn, {"COMPLETED"})
    assert task["SourceArn"] == dlq_arn
    assert task["ApproximateNumberOfMessagesMoved"] == 3
    assert task["ApproximateNumberOfMessagesToMove"] == 3
    assert "TaskHandle" not in task  # only running tasks show their handle
    assert count(csqs, dlq) == 0
    back = receive(csqs, src, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in back) == ["m0", "m1", "m2"]


def test_move_task_to_an_explicit_destination(clock_server, csqs, name):
    src, dlq = make_pair(csqs, name, max_receives=1, VisibilityTimeout="10")
    elsewhere = csqs.create_queue(QueueName=name("elsewhere"))["QueueUrl"]
    dead_letter(clock_server, csqs, src, 2)
    dlq_arn = arn_of(csqs, dlq)
    csqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=arn_of(csqs, elsewhere),
                                 MaxNumberOfMessagesPerSecond=10)
    [task] = wait_for_status(clock_server, csqs, dlq_arn, {"COMPLETED"})
    assert task["DestinationArn"] == arn_of(csqs, elsewhere)
    assert task["MaxNumberOfMessagesPerSecond"] == 10
    assert count(csqs, elsewhere) == 2
    assert count(csqs, src) == 0


def test_cancel_a_running_move_task(clock_server, csqs, name):
    src, dlq = make_pair(csqs, name, max_receives=1, VisibilityTimeout="10")
    dead_letter(clock_server, csqs, src, 5)
    dlq_arn = arn_of(csqs, dlq)
    # One message per second: the task is still running after its first batch.
    handle = csqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    [running] = wait_for_status(clock_server, csqs, dlq_arn, {"RUNNING"})
    assert running["TaskHandle"] == handle
    moved = csqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert 0 <= moved < 5
    [task] = wait_for_status(clock_server, csqs, dlq_arn, {"CANCELLED"})
    clock_server.advance(5)
    assert count(csqs, src) + count(csqs, dlq) == 5
    assert count(csqs, dlq) > 0
    # A finished task cannot be cancelled.
    with pytest.raises(ClientError) as e:
        csqs.cancel_message_move_task(TaskHandle=handle)
    assert error_code(e) in ("AWS.SimpleQueueService.UnsupportedOperation", "UnsupportedOperation",
                             "ResourceNotFoundException")


def test_only_one_running_task_per_source(clock_server, csqs, name):
    """Recorded against AWS (LocalStack's validated snapshot test_start_multiple_move_tasks):
    InvalidParameterValue, "There is already a task running. Only one active task is allowed
    for a source queue arn at a given time."."""
    src, dlq = make_pair(csqs, name, max_receives=1, VisibilityTimeout="10")
    dead_letter(clock_server, csqs, src, 3)
    dlq_arn = arn_of(csqs, dlq)
    handle = csqs.start_message_move_task(SourceArn=dlq_arn, MaxNumberOfMessagesPerSecond=1)["TaskHandle"]
    try:
        with pytest.raises(ClientError) as e:
            csqs.start_message_move_task(SourceArn=dlq_arn)
        assert error_code(e) == "InvalidParameterValue"
    finally:
        csqs.cancel_message_move_task(TaskHandle=handle)


def test_move_task_errors(sqs, name):
    plain = sqs.create_queue(QueueName=name())["QueueUrl"]
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name('nope')}")
    assert error_code(e) == "ResourceNotFoundException"
    # Recorded against AWS (test_source_needs_redrive_policy).
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn_of(sqs, plain))  # not a dead-letter queue
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn_of(sqs, plain), DestinationArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name('gone')}")
    assert error_code(e) in ("InvalidParameterValue", "ResourceNotFoundException")
    with pytest.raises(ClientError) as e:
        sqs.list_message_move_tasks(SourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name('nope')}")
    assert error_code(e) == "ResourceNotFoundException"
    assert sqs.list_message_move_tasks(SourceArn=arn_of(sqs, plain))["Results"] == []


def test_cancel_with_a_garbage_task_handle(sqs):
    """Recorded against AWS (test_cancel_with_invalid_task_handle): InvalidParameterValue,
    "Value for parameter TaskHandle is invalid."."""
    with pytest.raises(ClientError) as e:
        sqs.cancel_message_move_task(TaskHandle="not-a-task-handle")
    assert error_code(e) == "InvalidParameterValue"


def test_destination_must_exist(sqs, name):
    """Recorded against AWS (test_destination_needs_to_exist)."""
    dlq = sqs.create_queue(QueueName=name("dlq"))["QueueUrl"]
    sqs.create_queue(QueueName=name("src"), Attributes={"RedrivePolicy": redrive(arn_of(sqs, dlq), 1)})
    with pytest.raises(ClientError) as e:
        sqs.start_message_move_task(SourceArn=arn_of(sqs, dlq),
                                    DestinationArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name('gone')}")
    assert error_code(e) == "ResourceNotFoundException"


def test_move_task_fails_when_its_destination_is_deleted(clock_server, csqs, name):
    """Recorded against AWS (test_move_task_delete_destination_queue_while_running): the task
    ends FAILED with FailureReason AWS.SimpleQueueService.NonExistentQueue."""
    src, dlq = make_pair(csqs, name, max_receives=1, VisibilityTimeout="10")
    dead_letter(clock_server, csqs, src, 4)
    target = csqs.create_queue(QueueName=name("target"))["QueueUrl"]
    dlq_arn = arn_of(csqs, dlq)
    csqs.start_message_move_task(SourceArn=dlq_arn, DestinationArn=arn_of(csqs, target),
                                 MaxNumberOfMessagesPerSecond=1)
    wait_for_status(clock_server, csqs, dlq_arn, {"RUNNING"})
    csqs.delete_queue(QueueUrl=target)
    [task] = wait_for_status(clock_server, csqs, dlq_arn, {"FAILED"})
    assert task["FailureReason"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert 0 < task["ApproximateNumberOfMessagesMoved"] < 4
