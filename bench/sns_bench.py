#!/usr/bin/env python3
"""SNS Publish -> SQS fan-out to 10 subscriptions, tsumiki against moto's server in one run.

    python3 bench/sns_bench.py [--binary target/release/tsumiki] [--messages 1000] [--threads 4]

For each server: one topic, `--subs` queues subscribed with raw delivery. `--threads` boto3
clients publish `--messages` messages (PublishBatch of 10 with `--batch`, else Publish); the
publish rate is messages accepted per second. Then the queues are drained until every message
arrived in every queue; the delivery rate is messages x subscriptions delivered per second,
from the first publish to the last message in hand (draining is part of it, the same for both
servers). tsumiki runs durable (`--data-dir` in a temporary directory). Reuses sqs_bench.py's
server helpers (moto via `python3 -m moto.server` or ../shared/peers/start_peers.sh).
"""

import argparse
import os
import sys
import tempfile
import threading
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
        config=Config(retries={"max_attempts": 0}, max_pool_connections=32),
    )


def run(endpoint, n_messages, n_subs, threads, batch):
    sns, sqs = client("sns", endpoint), client("sqs", endpoint)
    topic = sns.create_topic(Name="bench-fanout")["TopicArn"]
    urls = []
    for i in range(n_subs):
        url = sqs.create_queue(QueueName=f"bench-fanout-{i}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                      Attributes={"RawMessageDelivery": "true"})
        urls.append(url)
    per_thread = n_messages // threads

    def publisher(t):
        c = client("sns", endpoint)
        if batch:
            for j in range(0, per_thread, 10):
                c.publish_batch(TopicArn=topic, PublishBatchRequestEntries=[
                    {"Id": str(k), "Message": f"{t}-{j + k}"} for k in range(min(10, per_thread - j))])
        else:
            for j in range(per_thread):
                c.publish(TopicArn=topic, Message=f"{t}-{j}")

    t0 = time.perf_counter()
    workers = [threading.Thread(target=publisher, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    published_s = time.perf_counter() - t0
    total = per_thread * threads
    counts = [0] * n_subs

    def drainer(i):
        c = client("sqs", endpoint)
        seen = set()
        deadline = time.perf_counter() + 300
        while len(seen) < total and time.perf_counter() < deadline:
            msgs = c.receive_message(QueueUrl=urls[i], MaxNumberOfMessages=10,
                                     WaitTimeSeconds=1).get("Messages", [])
            if msgs:
                seen |= {m["Body"] for m in msgs}
                c.delete_message_batch(QueueUrl=urls[i], Entries=[
                    {"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(msgs)])
        counts[i] = len(seen)

    drains = [threading.Thread(target=drainer, args=(i,)) for i in range(n_subs)]
    for d in drains:
        d.start()
    for d in drains:
        d.join()
    delivered_s = time.perf_counter() - t0
    return {
        "published": total,
        "publish_per_s": total / published_s,
        "delivered": sum(counts),
        "complete": all(c == total for c in counts),
        "deliveries_per_s": sum(counts) / delivered_s,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "tsumiki"))
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--subs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--batch", action="store_true", help="PublishBatch of 10 instead of Publish")
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
                r = run(server.endpoint, args.messages, args.subs, args.threads, args.batch)
                rows.append((server.label, r, None))
                print(f"# {server.label}: {r}", flush=True)
            finally:
                server.stop()
    kind = "PublishBatch" if args.batch else "Publish"
    print(f"SNS {kind} -> {args.subs} SQS subscriptions (raw), {args.messages} messages, "
          f"{args.threads} publishers")
    print(f"{'server':<14} {'publish/s':>10} {'deliveries/s':>13} {'complete':>9}")
    for label, r, na in rows:
        if r is None:
            print(f"{label:<14} n/a: {na}")
            continue
        print(f"{label:<14} {r['publish_per_s']:>10.0f} {r['deliveries_per_s']:>13.0f} "
              f"{str(r['complete']):>9}")
    if len(rows) == 2 and all(r for _, r, _ in rows):
        t, m = rows[0][1], rows[1][1]
        print(f"tsumiki/moto: publish x{t['publish_per_s'] / m['publish_per_s']:.1f}, "
              f"deliveries x{t['deliveries_per_s'] / m['deliveries_per_s']:.1f}")


if __name__ == "__main__":
    main()
