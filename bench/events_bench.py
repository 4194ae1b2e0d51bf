#!/usr/bin/env python3
"""PutEvents -> rule -> SQS target, end to end, tsumiki against moto's server in one run.

    python3 bench/events_bench.py [--binary target/release/tsumiki] [--events 300] [--rules 100]

For each server: one queue, `--rules` rules on the default bus of which exactly one matches
(so matching cost shows), the matching rule's target is the queue. Then, sequentially, one
client: PutEvents of one event, then ReceiveMessage (long poll) until it arrives, then
DeleteMessage. The latency is PutEvents' start to the message in hand: p50, p99, mean.
tsumiki runs durable (`--data-dir` in a temporary directory). Reuses sqs_bench.py's server
helpers (moto via `python3 -m moto.server` or ../shared/peers/start_peers.sh).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sqs_bench import free_port, start_moto, start_tsumiki  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="123456789012",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}),
    )


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def run(endpoint, n_events, n_rules):
    events, sqs = client("events", endpoint), client("sqs", endpoint)
    url = sqs.create_queue(QueueName="bench-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for i in range(n_rules):
        events.put_rule(Name=f"other-{i}", EventPattern=json.dumps({"source": [f"other.{i}"]}))
        events.put_targets(Rule=f"other-{i}", Targets=[{"Id": "q", "Arn": arn}])
    events.put_rule(Name="bench", EventPattern=json.dumps({"source": ["bench"], "detail": {"n": [{"numeric": [">=", 0]}]}}))
    events.put_targets(Rule="bench", Targets=[{"Id": "q", "Arn": arn}])
    latencies = []
    for i in range(n_events + 10):
        t0 = time.perf_counter()
        events.put_events(Entries=[{"Source": "bench", "DetailType": "t", "Detail": json.dumps({"n": i})}])
        msgs = []
        while not msgs:
            msgs = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5).get("Messages", [])
        dt = time.perf_counter() - t0
        sqs.delete_message(QueueUrl=url, ReceiptHandle=msgs[0]["ReceiptHandle"])
        if i >= 10:  # warm-up
            latencies.append(dt * 1000)
    return {
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "mean_ms": statistics.mean(latencies),
        "events": len(latencies),
    }


def main():
    ap = argparse.ArgumentParser()
    default_bin = os.path.join(ROOT, "target", "release", "tsumiki")
    ap.add_argument("--binary", default=default_bin)
    ap.add_argument("--events", type=int, default=300)
    ap.add_argument("--rules", type=int, default=100)
    ap.add_argument("--skip-moto", action="store_true")
    args = ap.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        servers = [("tsumiki", lambda: start_tsumiki(args.binary, data))]
        if not args.skip_moto:
            servers.append(("moto", lambda: start_moto(free_port())))
        for label, start in servers:
            server = start()
            if server.na:
                rows.append((label, None, server.na))
                continue
            try:
                rows.append((server.label, run(server.endpoint, args.events, args.rules), None))
            finally:
                server.stop()
    print(f"PutEvents -> SQS target, {args.events} events, {args.rules + 1} rules, 1 client")
    print(f"{'server':<14} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    base = None
    for label, r, na in rows:
        if r is None:
            print(f"{label:<14} n/a: {na}")
            continue
        print(f"{label:<14} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['mean_ms']:>8.2f}")
        base = base or r
    if len(rows) == 2 and all(r for _, r, _ in rows):
        t, m = rows[0][1], rows[1][1]
        print(f"moto/tsumiki: p50 x{m['p50_ms'] / t['p50_ms']:.1f}, p99 x{m['p99_ms'] / t['p99_ms']:.1f}")


if __name__ == "__main__":
    main()
