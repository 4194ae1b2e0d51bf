"""Sending, receiving and deleting messages: attributes, digests, batches, visibility, long polling."""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from sqs_util import attributes_of, drain, error_code, md5_hex, md5_of_attributes, receive


def test_send_receive_delete(sqs, queue):
    sent = sqs.send_message(QueueUrl=queue, MessageBody="hello world")
    assert sent["MD5OfMessageBody"] == md5_hex("hello world")
    assert "MD5OfMessageAttributes" not in sent
    [msg] = receive(sqs, queue)
    assert msg["MessageId"] == sent["MessageId"]
    assert msg["Body"] == "hello world"
    assert msg["MD5OfBody"] == md5_hex("hello world")
    assert msg["ReceiptHandle"]
    # In flight now: a second receive finds nothing.
    assert receive(sqs, queue) == []
    assert attributes_of(sqs, queue, "ApproximateNumberOfMessagesNotVisible")[
        "ApproximateNumberOfMessagesNotVisible"] == "1"
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])
    a = attributes_of(sqs, queue, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    assert a == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_delete_is_idempotent_with_the_current_handle(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    [msg] = receive(sqs, queue)
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=msg["ReceiptHandle"])


def test_unicode_body_digest(sqs, queue):
    body = "Grüße, 世界 \U0001F600\ttab\r\nnewline"
    sent = sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5_hex(body)
    [msg] = receive(sqs, queue)
    assert msg["Body"] == body and msg["MD5OfBody"] == md5_hex(body)


def test_receive_many_and_counts(sqs, queue):
    bodies = {f"m{i}" for i in range(15)}
    for b in bodies:
        sqs.send_message(QueueUrl=queue, MessageBody=b)
    assert attributes_of(sqs, queue, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"] == "15"
    first = receive(sqs, queue, MaxNumberOfMessages=10)
    assert 1 <= len(first) <= 10
    rest = drain(sqs, queue, 15 - len(first))
    assert {m["Body"] for m in first + rest} == bodies


def test_message_attributes_and_digests(sqs, queue):
    attrs = {
        "name": {"DataType": "String", "StringValue": "Ada"},
        "age": {"DataType": "Number", "StringValue": "36"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xffbinary"},
        "price": {"DataType": "Number.float", "StringValue": "3.14"},
        "unicode": {"DataType": "String.utf8", "StringValue": "ñ 世界"},
    }
    sent = sqs.send_message(QueueUrl=queue, MessageBody="with attributes", MessageAttributes=attrs)
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    assert sent["MD5OfMessageBody"] == md5_hex("with attributes")
    [msg] = receive(sqs, queue, MessageAttributeNames=["All"])
    assert msg["MessageAttributes"] == attrs
    assert msg["MD5OfMessageAttributes"] == md5_of_attributes(attrs)


def test_message_attribute_selection(sqs, queue):
    attrs = {
        "keep": {"DataType": "String", "StringValue": "1"},
        "drop": {"DataType": "String", "StringValue": "2"},
        "pre.a": {"DataType": "String", "StringValue": "3"},
        "pre.b": {"DataType": "Number", "StringValue": "4"},
    }
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)

    [msg] = receive(sqs, queue)
    assert "MessageAttributes" not in msg

    [msg] = receive(sqs, queue, MessageAttributeNames=["keep"])
    assert msg["MessageAttributes"] == {"keep": attrs["keep"]}
    # The digest covers what was returned, so SDKs can verify it.
    assert msg["MD5OfMessageAttributes"] == md5_of_attributes({"keep": attrs["keep"]})

    [msg] = receive(sqs, queue, MessageAttributeNames=["pre.*"])
    assert set(msg["MessageAttributes"]) == {"pre.a", "pre.b"}

    [msg] = receive(sqs, queue, MessageAttributeNames=[".*"])
    assert msg["MessageAttributes"] == attrs

    [msg] = receive(sqs, queue, MessageAttributeNames=["nope"])
    assert "MessageAttributes" not in msg


def test_message_attribute_prefix_wildcard_without_period(sqs, queue):
    """AWS: 'you can return all of the attributes starting with a prefix, for example bar.*'."""
    attrs = {"Custom1": {"DataType": "String", "StringValue": "a"},
             "Custom2": {"DataType": "String", "StringValue": "b"},
             "Other": {"DataType": "String", "StringValue": "c"}}
    sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    [msg] = receive(sqs, queue, MessageAttributeNames=["Custom.*"])
    assert set(msg.get("MessageAttributes", {})) == {"Custom1", "Custom2"}


@pytest.mark.parametrize("attrs", [
    {f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)},
    {"AWS.reserved": {"DataType": "String", "StringValue": "v"}},
    {"amazon.reserved": {"DataType": "String", "StringValue": "v"}},
    {"two..dots": {"DataType": "String", "StringValue": "v"}},
    {".leading": {"DataType": "String", "StringValue": "v"}},
    {"bad name": {"DataType": "String", "StringValue": "v"}},
    {"n": {"DataType": "Number", "StringValue": "not-a-number"}},
    {"n": {"DataType": "Decimal", "StringValue": "1"}},
    {"n": {"DataType": "String", "BinaryValue": b"x"}},
    {"n": {"DataType": "Binary", "StringValue": "x"}},
])
def test_invalid_message_attributes(sqs, queue, attrs):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageAttributes=attrs)
    assert error_code(e) == "InvalidParameterValue"


def test_system_attribute_selection(sqs, queue):
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    before_ms = int(time.time() * 1000) - 60_000
    sqs.send_message(QueueUrl=queue, MessageBody="x")

    [msg] = receive(sqs, queue)
    assert "Attributes" not in msg

    [msg] = receive(sqs, queue, AttributeNames=["SentTimestamp"])
    assert set(msg["Attributes"]) == {"SentTimestamp"}
    assert int(msg["Attributes"]["SentTimestamp"]) > before_ms

    [msg] = receive(sqs, queue, MessageSystemAttributeNames=["ApproximateReceiveCount", "SenderId"])
    assert set(msg["Attributes"]) == {"ApproximateReceiveCount", "SenderId"}
    assert msg["Attributes"]["ApproximateReceiveCount"] == "3"

    [msg] = receive(sqs, queue, MessageSystemAttributeNames=["All"])
    a = msg["Attributes"]
    assert {"SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp"} <= set(a)
    assert a["ApproximateReceiveCount"] == "4"
    assert int(a["ApproximateFirstReceiveTimestamp"]) >= int(a["SentTimestamp"])
    for fifo_only in ("MessageGroupId", "MessageDeduplicationId", "SequenceNumber"):
        assert fifo_only not in a


def test_trace_header_system_attribute(sqs, queue):
    system = {"AWSTraceHeader": {"DataType": "String",
                                 "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1"}}
    sent = sqs.send_message(QueueUrl=queue, MessageBody="traced", MessageSystemAttributes=system)
    assert sent["MD5OfMessageSystemAttributes"] == md5_of_attributes(system)
    [msg] = receive(sqs, queue, MessageSystemAttributeNames=["AWSTraceHeader"])
    assert msg["Attributes"] == {"AWSTraceHeader": system["AWSTraceHeader"]["StringValue"]}


def test_message_delay_per_message(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=600)
    sqs.send_message(QueueUrl=queue, MessageBody="now")
    got = receive(sqs, queue, MaxNumberOfMessages=10)
    assert [m["Body"] for m in got] == ["now"]
    assert attributes_of(sqs, queue, "ApproximateNumberOfMessagesDelayed")[
        "ApproximateNumberOfMessagesDelayed"] == "1"


# ---------------------------------------------------------------- sizes and contents

def test_message_of_maximum_size_is_accepted(sqs, queue):
    body = "x" * 1_048_576
    sent = sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert sent["MD5OfMessageBody"] == md5_hex(body)


def test_oversized_message_is_rejected(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x" * 1_048_577)
    assert error_code(e) == "InvalidParameterValue"


def test_queue_maximum_message_size_counts_attributes(sqs, name):
    url = sqs.create_queue(QueueName=name(), Attributes={"MaximumMessageSize": "1024"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 1024)
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1025)
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=url, MessageBody="x" * 1000,
                         MessageAttributes={"attr": {"DataType": "String", "StringValue": "y" * 100}})
    assert error_code(e) == "InvalidParameterValue"


@pytest.mark.parametrize("body", ["nul \x00 byte", "bell \x07", "\ufffe"])
def test_invalid_body_characters(sqs, queue, body):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    assert error_code(e) == "InvalidMessageContents"


def test_empty_body_is_rejected(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="")
    assert error_code(e) in ("MissingParameter", "InvalidParameterValue")


@pytest.mark.parametrize("kwargs", [
    {"MaxNumberOfMessages": 11},
    {"MaxNumberOfMessages": 0},
    {"WaitTimeSeconds": 21},
    {"VisibilityTimeout": 43201},
])
def test_receive_parameter_ranges(sqs, queue, kwargs):
    with pytest.raises(ClientError) as e:
        sqs.receive_message(QueueUrl=queue, **kwargs)
    assert error_code(e) == "InvalidParameterValue"


def test_deduplication_id_on_a_standard_queue(sqs, queue):
    """AWS answers "Value ... for parameter MessageDeduplicationId is invalid. Reason: The request
    include parameter that is not valid for this queue type." (seen in production logs)."""
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", MessageDeduplicationId="d")
    assert error_code(e) == "InvalidParameterValue"


def test_send_delay_out_of_range(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message(QueueUrl=queue, MessageBody="x", DelaySeconds=901)
    assert error_code(e) == "InvalidParameterValue"


# ---------------------------------------------------------------- receipt handles and visibility

@pytest.mark.parametrize("handle", ["garbage", "AAAA", "x" * 500, "!!!not base64!!!", "a b c"])
def test_garbage_receipt_handles(sqs, queue, handle):
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=handle)
    assert error_code(e) == "ReceiptHandleIsInvalid"
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=handle, VisibilityTimeout=10)
    assert error_code(e) == "ReceiptHandleIsInvalid"


def test_receipt_handle_of_another_queue(sqs, name):
    a = sqs.create_queue(QueueName=name())["QueueUrl"]
    b = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=a, MessageBody="x")
    [msg] = receive(sqs, a)
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=b, ReceiptHandle=msg["ReceiptHandle"])
    assert error_code(e) == "ReceiptHandleIsInvalid"
    sqs.delete_message(QueueUrl=a, ReceiptHandle=msg["ReceiptHandle"])


def test_receive_with_visibility_zero_and_change_visibility(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    [m1] = receive(sqs, queue, VisibilityTimeout=0)
    [m2] = receive(sqs, queue)  # visible again at once
    assert m1["MessageId"] == m2["MessageId"]
    assert m1["ReceiptHandle"] != m2["ReceiptHandle"]
    assert receive(sqs, queue) == []
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m2["ReceiptHandle"], VisibilityTimeout=0)
    [m3] = receive(sqs, queue, AttributeNames=["ApproximateReceiveCount"])
    assert m3["Attributes"]["ApproximateReceiveCount"] == "3"


def test_change_visibility_beyond_twelve_hours(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    [m] = receive(sqs, queue)
    with pytest.raises(ClientError) as e:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=43201)
    assert error_code(e) == "InvalidParameterValue"


def test_purge_queue(sqs, queue):
    for i in range(5):
        sqs.send_message(QueueUrl=queue, MessageBody=str(i))
    sqs.purge_queue(QueueUrl=queue)
    assert receive(sqs, queue, MaxNumberOfMessages=10) == []
    assert attributes_of(sqs, queue, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"] == "0"


# ---------------------------------------------------------------- batches

def test_send_message_batch_with_a_failing_entry(sqs, queue):
    attrs = {"k": {"DataType": "String", "StringValue": "v"}}
    resp = sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "ok1", "MessageBody": "first", "MessageAttributes": attrs},
        {"Id": "bad", "MessageBody": "nul \x00"},
        {"Id": "ok2", "MessageBody": "second", "DelaySeconds": 0},
    ])
    ok = {e["Id"]: e for e in resp["Successful"]}
    assert set(ok) == {"ok1", "ok2"}
    assert ok["ok1"]["MD5OfMessageBody"] == md5_hex("first")
    assert ok["ok1"]["MD5OfMessageAttributes"] == md5_of_attributes(attrs)
    assert ok["ok2"]["MD5OfMessageBody"] == md5_hex("second")
    [failed] = resp["Failed"]
    assert failed["Id"] == "bad"
    assert failed["SenderFault"] is True
    assert failed["Code"] == "InvalidMessageContents"
    got = drain(sqs, queue, 2)
    assert sorted(m["Body"] for m in got) == ["first", "second"]


def test_batch_shape_errors(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": f"i{i}", "MessageBody": "x"} for i in range(11)])
    assert error_code(e) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "same", "MessageBody": "x"},
                                                        {"Id": "same", "MessageBody": "y"}])
    assert error_code(e) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=queue, Entries=[])
    assert error_code(e) == "AWS.SimpleQueueService.EmptyBatchRequest"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "has space", "MessageBody": "x"}])
    assert error_code(e) == "AWS.SimpleQueueService.InvalidBatchEntryId"
    with pytest.raises(ClientError) as e:
        sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "x" * 600_000},
                                                        {"Id": "b", "MessageBody": "x" * 600_000}])
    assert error_code(e) == "AWS.SimpleQueueService.BatchRequestTooLong"
    # Nothing of a rejected batch was sent.
    assert attributes_of(sqs, queue, "ApproximateNumberOfMessages")["ApproximateNumberOfMessages"] == "0"


def test_delete_and_change_visibility_batch_shape_errors(sqs, queue):
    for call in (sqs.delete_message_batch, sqs.change_message_visibility_batch):
        with pytest.raises(ClientError) as e:
            call(QueueUrl=queue, Entries=[{"Id": f"i{i}", "ReceiptHandle": "h"} for i in range(11)])
        assert error_code(e) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
        with pytest.raises(ClientError) as e:
            call(QueueUrl=queue, Entries=[{"Id": "x", "ReceiptHandle": "h"}, {"Id": "x", "ReceiptHandle": "h"}])
        assert error_code(e) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
        with pytest.raises(ClientError) as e:
            call(QueueUrl=queue, Entries=[])
        assert error_code(e) == "AWS.SimpleQueueService.EmptyBatchRequest"


def test_empty_batch_messages_name_the_operation(sqs, queue):
    """AWS (moto's aws_verified test): 'There should be at least one DeleteMessageBatchRequestEntry in the request.'"""
    for call, entry in ((sqs.send_message_batch, "SendMessageBatchRequestEntry"),
                        (sqs.delete_message_batch, "DeleteMessageBatchRequestEntry"),
                        (sqs.change_message_visibility_batch, "ChangeMessageVisibilityBatchRequestEntry")):
        with pytest.raises(ClientError) as e:
            call(QueueUrl=queue, Entries=[])
        assert entry in e.value.response["Error"]["Message"]


def test_delete_message_batch_with_a_garbage_handle(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    msgs = drain(sqs, queue, 2)
    assert len(msgs) == 2
    resp = sqs.delete_message_batch(QueueUrl=queue, Entries=[
        {"Id": "m0", "ReceiptHandle": msgs[0]["ReceiptHandle"]},
        {"Id": "junk", "ReceiptHandle": "not-a-receipt-handle"},
        {"Id": "m1", "ReceiptHandle": msgs[1]["ReceiptHandle"]},
    ])
    assert sorted(e["Id"] for e in resp["Successful"]) == ["m0", "m1"]
    [failed] = resp["Failed"]
    assert failed["Id"] == "junk" and failed["Code"] == "ReceiptHandleIsInvalid" and failed["SenderFault"] is True
    a = attributes_of(sqs, queue, "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
    assert a == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}


def test_change_message_visibility_batch(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": "a", "MessageBody": "a"}, {"Id": "b", "MessageBody": "b"}])
    msgs = drain(sqs, queue, 2)
    resp = sqs.change_message_visibility_batch(QueueUrl=queue, Entries=[
        {"Id": "back", "ReceiptHandle": msgs[0]["ReceiptHandle"], "VisibilityTimeout": 0},
        {"Id": "keep", "ReceiptHandle": msgs[1]["ReceiptHandle"], "VisibilityTimeout": 300},
        {"Id": "junk", "ReceiptHandle": "zzz", "VisibilityTimeout": 10},
    ])
    assert sorted(e["Id"] for e in resp["Successful"]) == ["back", "keep"]
    assert [(f["Id"], f["Code"]) for f in resp["Failed"]] == [("junk", "ReceiptHandleIsInvalid")]
    again = receive(sqs, queue, MaxNumberOfMessages=10)
    assert [m["MessageId"] for m in again] == [msgs[0]["MessageId"]]


# ---------------------------------------------------------------- long polling (real clock)

def test_long_poll_returns_when_a_message_arrives(sqs, queue):
    def send_later():
        time.sleep(1.0)
        sqs.send_message(QueueUrl=queue, MessageBody="wake up")

    sender = threading.Thread(target=send_later)
    started = time.monotonic()
    sender.start()
    got = receive(sqs, queue, WaitTimeSeconds=20)
    elapsed = time.monotonic() - started
    sender.join()
    assert [m["Body"] for m in got] == ["wake up"]
    assert elapsed < 15, f"long poll took {elapsed:.1f}s; it should return as soon as the message arrives"


def test_queue_default_wait_time_long_polls(sqs, name):
    url = sqs.create_queue(QueueName=name(), Attributes={"ReceiveMessageWaitTimeSeconds": "20"})["QueueUrl"]

    def send_later():
        time.sleep(1.0)
        sqs.send_message(QueueUrl=url, MessageBody="by attribute")

    sender = threading.Thread(target=send_later)
    started = time.monotonic()
    sender.start()
    got = sqs.receive_message(QueueUrl=url).get("Messages", [])  # no WaitTimeSeconds: the queue's applies
    elapsed = time.monotonic() - started
    sender.join()
    assert [m["Body"] for m in got] == ["by attribute"]
    assert elapsed < 15


def test_long_poll_on_another_queue_is_not_woken(sqs, name):
    """A send to one queue does not answer a poll on another with that message."""
    a = sqs.create_queue(QueueName=name())["QueueUrl"]
    b = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.send_message(QueueUrl=b, MessageBody="for b")
    assert receive(sqs, a, WaitTimeSeconds=1) == []


def test_delete_with_an_earlier_receipt_handle_succeeds(sqs, queue):
    """AWS: with an older receipt handle 'the request succeeds, but the message might not be
    deleted'. Whether it is deleted is left open by the docs, so only the success is checked."""
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue, MessageBody="x")
    [first] = receive(sqs, queue)
    [second] = receive(sqs, queue)
    assert first["ReceiptHandle"] != second["ReceiptHandle"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"])
    assert receive(sqs, queue) == []


def test_receive_with_reserved_looking_attribute_filters(sqs, queue):
    """Recorded against AWS (test_receive_message_message_attribute_names_filters): filters
    such as 'AWS.' or '..foo' are not errors; they just match nothing."""
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "0"})
    sqs.send_message(QueueUrl=queue, MessageBody="x",
                     MessageAttributes={"Hello": {"DataType": "String", "StringValue": "There"}})
    for names in (["AWS."], ["..foo"], ["Foo", "Help"]):
        [m] = receive(sqs, queue, MessageAttributeNames=names)
        assert not m.get("MessageAttributes")
