"""Firehose durability: ``kill -9`` with acknowledged records buffered (not yet in S3) and with
flushes in flight, restart on the same data directory, then every acknowledged record is in S3
exactly once, and no record appears twice."""

import json
import re
import subprocess
import threading
import time
import urllib.request

import boto3
from botocore.config import Config

from conftest import ACCOUNT, tsumiki_bin

LISTENING = re.compile(r"listening on (http://\S+)")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/firehose"


def start(data_dir, log, *extra):
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT, *extra],
                            stdout=subprocess.PIPE, stderr=log)
    m = LISTENING.search(proc.stdout.readline().decode())
    assert m, "tsumiki did not start"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, m.group(1)


def client(endpoint, service):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                                      read_timeout=30, connect_timeout=5))


def lines_in(s3, bucket):
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out += s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read().decode().splitlines()
    return out


def test_kill9_keeps_buffered_records_and_redoes_cut_flushes_exactly_once(tmp_path):
    log = open(tmp_path / "server.log", "wb")
    data = tmp_path / "data"
    proc, endpoint = start(data, log)
    s3, fh = client(endpoint, "s3"), client(endpoint, "firehose")
    for name, interval in (("held", 900), ("busy", 0)):
        s3.create_bucket(Bucket=name)
        fh.create_delivery_stream(
            DeliveryStreamName=name,
            ExtendedS3DestinationConfiguration={
                "RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{name}",
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": interval}})

    acked = {"held": set(), "busy": set()}
    tried = {"held": set(), "busy": set()}
    lock, stop = threading.Lock(), threading.Event()

    def putter(stream, worker):
        c = client(endpoint, "firehose")
        for b in range(100_000):
            if stop.is_set():
                return
            recs = [f"{stream}-{worker}-{b}-{i}" for i in range(50)]
            with lock:
                tried[stream].update(recs)
            try:
                out = c.put_record_batch(DeliveryStreamName=stream,
                                         Records=[{"Data": (r + "\n").encode()} for r in recs])
            except Exception:
                return
            assert out["FailedPutCount"] == 0
            with lock:
                acked[stream].update(recs)

    threads = [threading.Thread(target=putter, args=(s, w)) for s in ("held", "busy") for w in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        with lock:
            if len(acked["held"]) >= 2000 and len(acked["busy"]) >= 2000:
                break
    assert lines_in(s3, "held") == [], "the 900 s buffer must still be unflushed"
    proc.kill()  # SIGKILL: no shutdown path runs
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked["held"]) >= 100 and len(acked["busy"]) >= 100

    proc, endpoint = start(data, log, "--clock", "manual")
    try:
        s3 = client(endpoint, "s3")
        urllib.request.urlopen(urllib.request.Request(
            endpoint + "/_tsumiki/clock/advance", data=json.dumps({"seconds": 901}).encode(),
            method="POST", headers={"Content-Type": "application/json"}), timeout=10).read()
        deadline = time.monotonic() + 60
        while True:
            got = {s: lines_in(s3, s) for s in ("held", "busy")}
            if all(acked[s] <= set(got[s]) for s in got) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for s in ("held", "busy"):
            lines = got[s]
            assert len(lines) == len(set(lines)), f"{s}: a record reached S3 twice"
            missing = acked[s] - set(lines)
            assert not missing, f"{s}: {len(missing)} acknowledged records lost"
            assert set(lines) <= tried[s]
    finally:
        proc.kill()
        proc.wait()
