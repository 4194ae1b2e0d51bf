"""FIFO queues: ordering per group, group blocking, deduplication, FIFO-only rules."""

import hashlib

import pytest
from botocore.exceptions import ClientError

from sqs_util import attributes_of, error_code, receive


def send(sqs, url, body, group="g", dedup=None, **kwargs):
    kwargs = dict(QueueUrl=url, MessageBody=body, MessageGroupId=group, **kwargs)
    if dedup is not None:
        kwargs["MessageDeduplicationId"] = dedup
    return sqs.send_message(**kwargs)


@pytest.fixture
def cbd_queue(sqs, name):
    """A FIFO queue with content-based deduplication."""
    return sqs.create_queue(QueueName=name(fifo=True), Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]


def test_order_within_a_group(sqs, fifo_queue):
    sent = [send(sqs, fifo_queue, f"m{i}", dedup=f"d{i}") for i in range(8)]
    seqs = [int(s["SequenceNumber"]) for s in sent]
    assert seqs == sorted(seqs) and len(set(seqs)) == 8
    got = []
    for _ in range(10):
        batch = receive(sqs, fifo_queue, MaxNumberOfMessages=10)
        if not batch:
            break
        got += [m["Body"] for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=fifo_queue, ReceiptHandle=m["ReceiptHandle"])
    assert got == [f"m{i}" for i in range(8)]


def test_in_flight_message_blocks_its_group_only(sqs, fifo_queue):
    send(sqs, fifo_queue, "a1", group="A", dedup="a1")
    send(sqs, fifo_queue, "a2", group="A", dedup="a2")
    send(sqs, fifo_queue, "b1", group="B", dedup="b1")
    [first] = receive(sqs, fifo_queue, MaxNumberOfMessages=1)
    assert first["Body"] == "a1"
    # A is blocked while a1 is in flight; B is not.
    [second] = receive(sqs, fifo_queue, MaxNumberOfMessages=1)
    assert second["Body"] == "b1"
    assert receive(sqs, fifo_queue, MaxNumberOfMessages=10) == []
    sqs.delete_message(QueueUrl=fifo_queue, ReceiptHandle=first["ReceiptHandle"])
    [third] = receive(sqs, fifo_queue, MaxNumberOfMessages=10)
    assert third["Body"] == "a2"


def test_returning_a_message_unblocks_the_group_in_order(sqs, fifo_queue):
    for i in range(3):
        send(sqs, fifo_queue, f"m{i}", dedup=f"d{i}")
    [m0] = receive(sqs, fifo_queue, MaxNumberOfMessages=1)
    assert m0["Body"] == "m0"
    sqs.change_message_visibility(QueueUrl=fifo_queue, ReceiptHandle=m0["ReceiptHandle"], VisibilityTimeout=0)
    again = receive(sqs, fifo_queue, MaxNumberOfMessages=10,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert [m["Body"] for m in again] == ["m0", "m1", "m2"]
    assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"


def test_explicit_deduplication_id(sqs, fifo_queue):
    first = send(sqs, fifo_queue, "one", dedup="same")
    second = send(sqs, fifo_queue, "two", dedup="same")
    assert second["MessageId"] == first["MessageId"]
    got = receive(sqs, fifo_queue, MaxNumberOfMessages=10)
    assert [m["Body"] for m in got] == ["one"]


def test_content_based_deduplication(sqs, cbd_queue):
    a = send(sqs, cbd_queue, "same body")
    b = send(sqs, cbd_queue, "same body")
    c = send(sqs, cbd_queue, "other body")
    assert a["MessageId"] == b["MessageId"] != c["MessageId"]
    # An explicit id overrides the generated one.
    d = send(sqs, cbd_queue, "same body", dedup="explicit")
    assert d["MessageId"] != a["MessageId"]
    got = receive(sqs, cbd_queue, MaxNumberOfMessages=10,
                  MessageSystemAttributeNames=["MessageDeduplicationId"])
    assert [m["Body"] for m in got] == ["same body", "other body", "same body"]
    # The generated id is the SHA-256 of the body (AWS: "uses a SHA-256 hash to generate the
    # MessageDeduplicationId using the body of the message").
    assert got[0]["Attributes"]["MessageDeduplicationId"] == hashlib.sha256(b"same body").hexdigest()
    assert got[2]["Attributes"]["MessageDeduplicationId"] == "explicit"


def test_deduplication_scope_message_group(sqs, name):
    url = sqs.create_queue(QueueName=name(fifo=True), Attributes={
        "FifoQueue": "true", "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId"})["QueueUrl"]
    a = send(sqs, url, "x", group="G1", dedup="d")
    b = send(sqs, url, "y", group="G2", dedup="d")
    c = send(sqs, url, "z", group="G1", dedup="d")
    assert a["MessageId"] != b["MessageId"]
    assert c["MessageId"] == a["MessageId"]
    got = receive(sqs, url, MaxNumberOfMessages=10)
    assert sorted(m["Body"] for m in got) == ["x", "y"]


def test_fifo_system_attributes(sqs, fifo_queue):
    sent = send(sqs, fifo_queue, "body", group="grp", dedup="ded")
    [m] = receive(sqs, fifo_queue, MessageSystemAttributeNames=["All"])
    a = m["Attributes"]
    assert a["MessageGroupId"] == "grp"
    assert a["MessageDeduplicationId"] == "ded"
    assert a["SequenceNumber"] == sent["SequenceNumber"]
    assert {"SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"} <= set(a)


def test_send_results_carry_sequence_numbers_only_for_fifo(sqs, fifo_queue, queue):
    assert "SequenceNumber" in send(sqs, fifo_queue, "x", dedup="x")
    assert "SequenceNumber" not in sqs.send_message(QueueUrl=queue, MessageBody="x")
    batch = sqs.send_message_batch(QueueUrl=fifo_queue, Entries=[
        {"Id": "a", "MessageBody": "a", "MessageGroupId": "g", "MessageDeduplicationId": "a"},
        {"Id": "b", "MessageBody": "b", "MessageGroupId": "g", "MessageDeduplicationId": "b"}])
    seqs = [int(e["SequenceNumber"]) for e in sorted(batch["Successful"], key=lambda e: e["Id"])]
    assert seqs[0] < seqs[1]


def test_missing_group_id(sqs, cbd_queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=cbd_queue, MessageBody="x")
    assert error_code(e) == "MissingParameter"


def test_missing_deduplication_id(sqs, fifo_queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=fifo_queue, MessageBody="x", MessageGroupId="g")
    assert error_code(e) == "InvalidParameterValue"


def test_per_message_delay_is_rejected(sqs, fifo_queue):
    with pytest.raises(ClientError) as e:
        send(sqs, fifo_queue, "x", dedup="x", DelaySeconds=2)
    assert error_code(e) == "InvalidParameterValue"


def test_batch_missing_group_id_fails_the_request(sqs, cbd_queue):
    """Recorded against AWS (LocalStack's validated snapshot
    test_send_batch_missing_message_group_id_for_fifo_queue): the whole request fails with
    InvalidParameterValue "The request must contain the parameter MessageGroupId."."""
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=cbd_queue, Entries=[{"Id": "a", "MessageBody": "x"}])
    assert error_code(e) == "InvalidParameterValue"
    assert "MessageGroupId" in e.value.response["Error"]["Message"]


def test_batch_missing_deduplication_id_fails_the_request(sqs, fifo_queue):
    """Recorded against AWS (test_send_batch_missing_deduplication_id_for_fifo_queue): the whole
    request fails, nothing of it is sent."""
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=fifo_queue, Entries=[
            {"Id": "ok", "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"},
            {"Id": "bad", "MessageBody": "y", "MessageGroupId": "g"}])
    assert error_code(e) == "InvalidParameterValue"
    assert attributes_of(sqs, fifo_queue, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"] == "0"


def test_queue_type_cannot_change(sqs, fifo_queue, queue):
    """Recorded against AWS (test_set_unsupported_attribute_fifo)."""
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"FifoQueue": "true"})
    assert error_code(e) == "InvalidAttributeName"
    sqs.set_queue_attributes(QueueUrl=fifo_queue, Attributes={"FifoQueue": "true"})
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=fifo_queue, Attributes={"FifoQueue": "false"})
    assert error_code(e) == "InvalidAttributeValue"


def test_recreate_fifo_with_different_attribute(sqs, name):
    n = name(fifo=True)
    sqs.create_queue(QueueName=n, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=n, Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"})
    assert error_code(e) == "QueueAlreadyExists"


def test_toggle_content_based_deduplication(sqs, fifo_queue):
    sqs.set_queue_attributes(QueueUrl=fifo_queue, Attributes={"ContentBasedDeduplication": "true"})
    assert attributes_of(sqs, fifo_queue, "ContentBasedDeduplication") == {"ContentBasedDeduplication": "true"}
    send(sqs, fifo_queue, "no explicit id now")
    sqs.set_queue_attributes(QueueUrl=fifo_queue, Attributes={"ContentBasedDeduplication": "false"})
    with pytest.raises(ClientError) as e:
        send(sqs, fifo_queue, "and now one is needed")
    assert error_code(e) == "InvalidParameterValue"
