#!/usr/bin/env python3
"""Trigger benchmark: event source mappings end to end, through real functions.

    python3 bench/triggers_bench.py --bin target/release/tsumiki [--messages 2000] [--records 5000]
    python3 bench/triggers_bench.py --endpoint http://127.0.0.1:4566

Rows:
- `sqs -> function`: N messages sent with SendMessageBatch (4 threads) to a queue with an SQS
  event source mapping (BatchSize 10) into a Python function. Throughput is N over the time
  from the first send to the last handler's end; latency is per message, from its
  `SentTimestamp` to the handler seeing it (both read the same machine's clock), p50 and p99.
- `sqs -> function, one at a time`: 50 messages, 200 ms apart, so the latency is that of an
  idle mapping rather than of a backlog (the burst row's latency is mostly queueing).
- `kinesis -> function`: N records put with PutRecords (500 a call) into a 4-shard stream
  with a mapping (BatchSize 100, TRIM_HORIZON); throughput is N over first put to last
  handler end; latency from `approximateArrivalTimestamp` to the handler.

Handlers log one line per batch (`BENCH {...}`) and the script reads them back from
CloudWatch Logs, so nothing but the server sits between send and handler. Functions are
warmed (one event each) before the timed window. Peers: moto's server runs Lambda functions
only in Docker and MiniStack does not run event source mappings, so this has no peer row; its
figures are absolute, for tracking tsumiki against itself.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
import io

import boto3
from botocore.config import Config

HANDLER = r'''
import json, time

def handler(event, context):
    now = time.time() * 1000
    lat = []
    for r in event["Records"]:
        if "attributes" in r and "SentTimestamp" in r["attributes"]:
            lat.append(now - int(r["attributes"]["SentTimestamp"]))
        elif "kinesis" in r:
            lat.append(now - r["kinesis"]["approximateArrivalTimestamp"] * 1000)
    print("BENCH " + json.dumps({"n": len(lat), "lat": [round(x, 1) for x in lat],
                                 "end": time.time() * 1000}))
    return {}
'''


def zip_of(source):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", source)
    return buf.getvalue()


def clients(endpoint):
    cfg = Config(retries={"max_attempts": 2}, max_pool_connections=32)

    def make(service):
        return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                            aws_access_key_id="123456789012", aws_secret_access_key="x",
                            config=cfg)
    return make


def percentile(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def create_function(lam, name):
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="app.handler",
                        Role="arn:aws:iam::123456789012:role/bench", Timeout=60,
                        Code={"ZipFile": zip_of(HANDLER)})
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 400})


def bench_lines(logs, function):
    out, token = [], None
    while True:
        kw = {"logGroupName": f"/aws/lambda/{function}", "filterPattern": '"BENCH"'}
        if token:
            kw["nextToken"] = token
        try:
            page = logs.filter_log_events(**kw)
        except logs.exceptions.ResourceNotFoundException:
            return []
        out += [json.loads(e["message"].split("BENCH ", 1)[1]) for e in page["events"]]
        token = page.get("nextToken")
        if not token:
            return out


def wait_for(logs, function, want, timeout):
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        lines = bench_lines(logs, function)
        if sum(x["n"] for x in lines) >= want:
            break
        time.sleep(0.5)
    return lines


def summarize(name, n, t0_ms, lines):
    done = sum(x["n"] for x in lines)
    lat = [v for x in lines for v in x["lat"]]
    end = max((x["end"] for x in lines), default=t0_ms)
    seconds = max(end - t0_ms, 1) / 1000
    row = {"row": name, "sent": n, "processed": done, "invocations": len(lines),
           "seconds": round(seconds, 2), "per_s": round(done / seconds, 1),
           "p50_ms": round(statistics.median(lat), 1) if lat else None,
           "p99_ms": round(percentile(lat, 99), 1) if lat else None}
    print(json.dumps(row))
    return row


def sqs_row(make, n):
    sqs, lam, logs = make("sqs"), make("lambda"), make("logs")
    tag = uuid.uuid4().hex[:8]
    queue, function = f"bench-{tag}", f"bench-sqs-{tag}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    create_function(lam, function)
    lam.create_event_source_mapping(EventSourceArn=f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                                    FunctionName=function, BatchSize=10)
    sqs.send_message(QueueUrl=url, MessageBody="warm")
    wait_for(logs, function, 1, 60)
    t0 = time.time() * 1000

    def sender(part):
        c = make("sqs")
        for i in range(0, len(part), 10):
            c.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(j), "MessageBody": b} for j, b in enumerate(part[i:i + 10])])

    bodies = [f"m{i}" for i in range(n)]
    threads = [threading.Thread(target=sender, args=(bodies[k::4],)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = wait_for(logs, function, n + 1, 300)
    lines = [x for x in lines if x["end"] >= t0]
    return summarize("sqs -> function", n, t0, lines)


def sqs_latency_row(make, n):
    """One message at a time, 200 ms apart: the latency of an idle mapping, no backlog."""
    sqs, lam, logs = make("sqs"), make("lambda"), make("logs")
    tag = uuid.uuid4().hex[:8]
    queue, function = f"bench-lat-{tag}", f"bench-lat-{tag}"
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    create_function(lam, function)
    lam.create_event_source_mapping(EventSourceArn=f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                                    FunctionName=function, BatchSize=10)
    sqs.send_message(QueueUrl=url, MessageBody="warm")
    wait_for(logs, function, 1, 60)
    t0 = time.time() * 1000
    for i in range(n):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        time.sleep(0.2)
    lines = wait_for(logs, function, n + 1, 120)
    lines = [x for x in lines if x["end"] >= t0]
    return summarize("sqs -> function, one at a time", n, t0, lines)


def kinesis_row(make, n):
    kin, lam, logs = make("kinesis"), make("lambda"), make("logs")
    tag = uuid.uuid4().hex[:8]
    stream, function = f"bench-{tag}", f"bench-kin-{tag}"
    kin.create_stream(StreamName=stream, ShardCount=4)
    create_function(lam, function)
    kin.put_record(StreamName=stream, Data=b"warm", PartitionKey="warm")
    lam.create_event_source_mapping(
        EventSourceArn=f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}",
        FunctionName=function, BatchSize=100, StartingPosition="TRIM_HORIZON")
    wait_for(logs, function, 1, 60)
    t0 = time.time() * 1000
    for i in range(0, n, 500):
        kin.put_records(StreamName=stream, Records=[
            {"Data": f"r{j}".encode(), "PartitionKey": f"k{j % 64}"}
            for j in range(i, min(n, i + 500))])
    lines = wait_for(logs, function, n + 1, 300)
    lines = [x for x in lines if x["end"] >= t0]
    return summarize("kinesis -> function", n, t0, lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="a tsumiki binary to start (durable, temp data dir)")
    ap.add_argument("--endpoint", help="a running server instead")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args()
    proc = None
    endpoint = args.endpoint
    if not endpoint:
        binary = args.bin or "target/release/tsumiki"
        data = tempfile.mkdtemp(prefix="tsumiki-bench-")
        proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data,
                                 "--default-account", "123456789012"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
    try:
        make = clients(endpoint)
        rows = [sqs_row(make, args.messages), sqs_latency_row(make, 50),
                kinesis_row(make, args.records)]
    finally:
        if proc:
            proc.terminate()
            proc.wait()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
