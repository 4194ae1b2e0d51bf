"""Everything that depends on time, on a server whose clock only moves when the test says so.

Each test uses its own queues on the shared manual-clock server, so moving the clock for one
test does not disturb another: a test only ever looks at its own queues, and every assertion
is about time the test itself advanced.
"""

import threading
import time

import pytest
from botocore.exceptions import ClientError

from sqs_util import attributes_of, error_code, receive


def count(sqs, url, what="ApproximateNumberOfMessages"):
    return int(attributes_of(sqs, url, what)[what])


def clock_ms(server):
    return server.admin("GET", "/_tsumiki/clock")["now_ms"]


def test_clock_advances_on_request(clock_server):
    """In manual mode time still runs at wall-clock pace, and jumps when advanced."""
    before = clock_ms(clock_server)
    clock_server.advance(3600)
    after = clock_ms(clock_server)
    assert 3_600_000 <= after - before < 3_600_000 + 5_000


def test_timestamps_follow_the_clock(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    before = clock_ms(clock_server)
    csqs.send_message(QueueUrl=url, MessageBody="x")
    after = clock_ms(clock_server)
    clock_server.advance(7000)
    [m] = receive(csqs, url, MessageSystemAttributeNames=["All"])
    sent = int(m["Attributes"]["SentTimestamp"])
    assert before <= sent <= after
    assert int(m["Attributes"]["ApproximateFirstReceiveTimestamp"]) >= sent + 7_000_000


def test_visibility_timeout_expiry(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    [m1] = receive(csqs, url)
    clock_server.advance(27)
    assert receive(csqs, url) == []
    assert count(csqs, url, "ApproximateNumberOfMessagesNotVisible") == 1
    clock_server.advance(4)
    [m2] = receive(csqs, url, MessageSystemAttributeNames=["ApproximateReceiveCount"])
    assert m2["MessageId"] == m1["MessageId"]
    assert m2["Attributes"]["ApproximateReceiveCount"] == "2"


def test_receive_visibility_timeout_overrides_the_queue(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={"VisibilityTimeout": "300"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    receive(csqs, url, VisibilityTimeout=5)
    clock_server.advance(6)
    assert len(receive(csqs, url)) == 1


def test_change_message_visibility_extends_and_shortens(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={"VisibilityTimeout": "10"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    [m] = receive(csqs, url)
    csqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=100)
    clock_server.advance(50)
    assert receive(csqs, url) == []
    # The new timeout counts from the call, not from the receive.
    csqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=20)
    clock_server.advance(17)
    assert receive(csqs, url) == []
    clock_server.advance(4)
    assert len(receive(csqs, url)) == 1


def test_change_visibility_after_the_timeout_expired(clock_server, csqs, name):
    """Recorded against AWS (LocalStack's validated snapshot
    test_change_message_visibility_after_visibility_timeout_expiration): the call succeeds."""
    url = csqs.create_queue(QueueName=name(), Attributes={"VisibilityTimeout": "5"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    [m] = receive(csqs, url)
    clock_server.advance(6)
    csqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=60)


def test_total_visibility_is_capped_at_twelve_hours(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    [m] = receive(csqs, url, VisibilityTimeout=43200)
    clock_server.advance(3600)
    # 12 hours from the receive at most: 3600 s have passed, so 39600 s are left.
    csqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=39000)
    with pytest.raises(ClientError) as e:
        csqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=40000)
    assert error_code(e) == "InvalidParameterValue"


def test_delay_queue(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={"DelaySeconds": "60"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="delayed by the queue")
    csqs.send_message(QueueUrl=url, MessageBody="not delayed", DelaySeconds=0)
    [m] = receive(csqs, url, MaxNumberOfMessages=10)
    assert m["Body"] == "not delayed"
    csqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert count(csqs, url, "ApproximateNumberOfMessagesDelayed") == 1
    clock_server.advance(57)
    assert receive(csqs, url, MaxNumberOfMessages=10) == []
    clock_server.advance(4)
    assert [m["Body"] for m in receive(csqs, url, MaxNumberOfMessages=10)] == ["delayed by the queue"]


def test_per_message_delay(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="900", DelaySeconds=900)
    csqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "10", "DelaySeconds": 10}])
    assert count(csqs, url, "ApproximateNumberOfMessagesDelayed") == 2
    clock_server.advance(11)
    [m] = receive(csqs, url, MaxNumberOfMessages=10)
    assert m["Body"] == "10"
    csqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    clock_server.advance(890)
    assert [m["Body"] for m in receive(csqs, url, MaxNumberOfMessages=10)] == ["900"]


def test_retention_period_expiry(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="old")
    clock_server.advance(30)
    csqs.send_message(QueueUrl=url, MessageBody="young")
    clock_server.advance(31)
    # The old message expired even though nobody received it; the count shows it without a receive.
    deadline = time.monotonic() + 5
    while count(csqs, url) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # the sweeper runs on its own task; give it a moment of real time
    assert count(csqs, url) == 1
    assert [m["Body"] for m in receive(csqs, url, MaxNumberOfMessages=10)] == ["young"]


def test_retention_applies_to_in_flight_messages(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(), Attributes={
        "MessageRetentionPeriod": "60", "VisibilityTimeout": "600"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    assert len(receive(csqs, url)) == 1
    clock_server.advance(700)
    assert receive(csqs, url) == []


def test_long_poll_wakes_on_send(clock_server, csqs, name):
    """A 20 s poll returns as soon as a message arrives."""
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    other = clock_server.client()

    def send_later():
        time.sleep(0.5)
        other.send_message(QueueUrl=url, MessageBody="arrived")

    t = threading.Thread(target=send_later)
    started = time.monotonic()
    t.start()
    got = receive(csqs, url, WaitTimeSeconds=20)
    t.join()
    assert [m["Body"] for m in got] == ["arrived"]
    assert time.monotonic() - started < 15


def test_long_poll_ends_when_its_wait_time_passes(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    result = {}

    def poll():
        result["messages"] = receive(csqs, url, WaitTimeSeconds=20)

    t = threading.Thread(target=poll)
    t.start()
    # Business time passes only through the clock; keep nudging it until the poll ends (the
    # poll may not have started when the first advance lands).
    for _ in range(100):
        clock_server.advance(21)
        t.join(timeout=0.1)
        if not t.is_alive():
            break
    assert not t.is_alive()
    assert result["messages"] == []


def test_long_poll_wakes_when_a_delayed_message_becomes_visible(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="soon", DelaySeconds=5)
    result = {}

    def poll():
        result["messages"] = receive(csqs, url, WaitTimeSeconds=20)

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(0.3)
    clock_server.advance(6)
    t.join(timeout=10)
    assert not t.is_alive()
    assert [m["Body"] for m in result["messages"]] == ["soon"]


def test_fifo_deduplication_window_expires_after_five_minutes(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(fifo=True), Attributes={"FifoQueue": "true"})["QueueUrl"]
    first = csqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g", MessageDeduplicationId="d")
    clock_server.advance(290)
    again = csqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g", MessageDeduplicationId="d")
    assert again["MessageId"] == first["MessageId"]
    clock_server.advance(11)
    later = csqs.send_message(QueueUrl=url, MessageBody="a", MessageGroupId="g", MessageDeduplicationId="d")
    assert later["MessageId"] != first["MessageId"]
    assert count(csqs, url) == 2


def test_fifo_deduplication_outlives_delete(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(fifo=True), Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g")
    [m] = receive(csqs, url)
    csqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    clock_server.advance(60)
    csqs.send_message(QueueUrl=url, MessageBody="once", MessageGroupId="g")
    assert receive(csqs, url) == []


def test_fifo_delete_with_an_expired_receipt_handle(clock_server, csqs, name):
    """Recorded against AWS (test_fifo_delete_message_with_expired_receipt_handle): once the
    visibility timeout passed, a FIFO receipt handle is refused with InvalidParameterValue."""
    url = csqs.create_queue(QueueName=name(fifo=True), Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "1"})["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="g1-m1", MessageGroupId="1")
    [m] = receive(csqs, url)
    clock_server.advance(2)
    with pytest.raises(ClientError) as e:
        csqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert error_code(e) == "InvalidParameterValue"


def test_fifo_group_unblocks_when_visibility_expires(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name(fifo=True), Attributes={
        "FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "30"})["QueueUrl"]
    for body in ("m1", "m2"):
        csqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId="g")
    assert [m["Body"] for m in receive(csqs, url, MaxNumberOfMessages=1)] == ["m1"]
    assert receive(csqs, url, MaxNumberOfMessages=10) == []
    clock_server.advance(31)
    assert [m["Body"] for m in receive(csqs, url, MaxNumberOfMessages=10)] == ["m1", "m2"]


def test_purge_cooldown(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    csqs.send_message(QueueUrl=url, MessageBody="x")
    csqs.purge_queue(QueueUrl=url)
    assert count(csqs, url) == 0
    clock_server.advance(30)
    with pytest.raises(ClientError) as e:
        csqs.purge_queue(QueueUrl=url)
    assert error_code(e) == "AWS.SimpleQueueService.PurgeQueueInProgress"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    clock_server.advance(31)
    csqs.purge_queue(QueueUrl=url)


def test_queue_name_cooldown_after_delete(clock_server, csqs, name):
    n = name()
    url = csqs.create_queue(QueueName=n)["QueueUrl"]
    csqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        csqs.create_queue(QueueName=n)
    assert error_code(e) == "AWS.SimpleQueueService.QueueDeletedRecently"
    clock_server.advance(61)
    assert csqs.create_queue(QueueName=n)["QueueUrl"] == url


def test_last_modified_timestamp_moves_on_set(clock_server, csqs, name):
    url = csqs.create_queue(QueueName=name())["QueueUrl"]
    created = int(attributes_of(csqs, url, "LastModifiedTimestamp")["LastModifiedTimestamp"])
    clock_server.advance(100)
    csqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "1"})
    modified = int(attributes_of(csqs, url, "LastModifiedTimestamp")["LastModifiedTimestamp"])
    assert 99 <= modified - created <= 105
