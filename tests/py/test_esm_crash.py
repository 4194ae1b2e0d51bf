"""Crash safety of the SQS event source mapping: kill -9 the server while a mapping drains a
queue into a function, restart it on the same data directory, and every message is
processed at least once: none is lost (duplicates are allowed, as AWS's pollers are
at-least-once). The function records what it receives by sending each body to another
queue, through tsumiki itself.
"""

import time

from conftest import ACCOUNT, REGION
from test_kinesis import start_durable
from lambda_util import create_function

N = 300

COPIER_PY = r'''
import boto3
sqs = boto3.client("sqs")
OUT = None

def handler(event, context):
    global OUT
    if OUT is None:
        OUT = sqs.get_queue_url(QueueName="out")["QueueUrl"]
    entries = [{"Id": str(i), "MessageBody": r["body"]} for i, r in enumerate(event["Records"])]
    for i in range(0, len(entries), 10):
        sqs.send_message_batch(QueueUrl=OUT, Entries=entries[i:i + 10])
    return {}
'''


def drain(sqs, url, seen, until, timeout):
    """Moves bodies from ``url`` into ``seen`` (a list, duplicates kept) until ``until()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not until():
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                  WaitTimeSeconds=1).get("Messages", [])
        for m in got:
            seen.append(m["Body"])
        if got:
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])


def test_kill_9_while_a_mapping_drains_a_queue_loses_no_message(tmp_path):
    data = tmp_path / "data"
    sent = [f"m{i:04d}" for i in range(N)]
    seen = []
    proc, client = start_durable(data)
    try:
        sqs, lam = client("sqs"), client("lambda")
        # A short visibility timeout: batches in flight at the kill come back soon.
        src = sqs.create_queue(QueueName="in", Attributes={"VisibilityTimeout": "15"})["QueueUrl"]
        out = sqs.create_queue(QueueName="out")["QueueUrl"]
        for i in range(0, N, 10):
            sqs.send_message_batch(QueueUrl=src, Entries=[
                {"Id": str(j), "MessageBody": b} for j, b in enumerate(sent[i:i + 10])])
        create_function(lam, "copier", {"app.py": COPIER_PY})
        lam.create_event_source_mapping(
            EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:in",
            FunctionName="copier", BatchSize=10, ScalingConfig={"MaximumConcurrency": 2})
        # Kill once the drain is under way, not before and not after.
        drain(sqs, out, seen, lambda: len(seen) >= 40, timeout=90)
        assert len(seen) >= 40, "the mapping never started draining"
        assert len(set(seen)) < N, "the queue drained before the kill"
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    before_kill = len(set(seen))

    proc, client = start_durable(data)
    try:
        sqs = client("sqs")
        out = sqs.get_queue_url(QueueName="out")["QueueUrl"]
        drain(sqs, out, seen, lambda: set(seen) >= set(sent), timeout=120)
        src = sqs.get_queue_url(QueueName="in")["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["All"])["Attributes"]
    finally:
        proc.kill()
        proc.wait()
    missing = sorted(set(sent) - set(seen))
    assert not missing, f"{len(missing)} messages never processed: {missing[:10]}"
    assert set(seen) == set(sent)
    assert attrs["ApproximateNumberOfMessages"] == "0"
    duplicates = len(seen) - len(set(seen))
    print(f"crash test: {before_kill} distinct before the kill, {len(seen)} deliveries, "
          f"{duplicates} duplicates (at least once)")
