#!/usr/bin/env python3
"""S3 throughput: tsumiki (durable, --data-dir in a temp dir) beside moto's server, and the
disk's raw speed measured with dd in the same run, so the figures read as a fraction of what
the disk gives.

    python3 bench/s3_bench.py --bin target/release/tsumiki [--big-mb 64] [--big-count 3]
                              [--small-count 500] [--threads 4] [--skip-moto] [--json out.json]

Rows: PUT and GET of 4 KiB objects (objects/s and MB/s, `--threads` clients), PUT and GET of
`--big-mb` MB objects (MB/s, one at a time), dd write (with fsync) and read of the same size
in the same file system. boto3 is the client for both servers, so the small-object rows are
partly client-bound; each row says so next to its client CPU share.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3
from botocore.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client(endpoint):
    cfg = Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                 max_pool_connections=64, read_timeout=300)
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test", config=cfg)


def start_tsumiki(binary, data_dir):
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline().decode()
    m = re.search(r"listening on (http://\S+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"tsumiki did not start: {line!r}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, m.group(1)


def start_moto():
    port = free_port()
    exe = shutil.which("moto_server")
    if not exe:
        raise RuntimeError("moto_server is not installed")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client(endpoint).list_buckets()
            return proc, endpoint
        except Exception:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("moto did not start")


def cpu_s():
    t = os.times()
    return t.user + t.system


def timed(fn):
    c0, t0 = cpu_s(), time.monotonic()
    fn()
    return time.monotonic() - t0, cpu_s() - c0


def run_threads(n, work):
    errors = []

    def wrap(i):
        try:
            work(i)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def measure(endpoint, args):
    s3 = client(endpoint)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    small = os.urandom(4096)
    per = args.small_count // args.threads
    rows = {}

    def put_small(i):
        for j in range(per):
            s3.put_object(Bucket=bucket, Key=f"small/{i}/{j}", Body=small)

    def get_small(i):
        for j in range(per):
            s3.get_object(Bucket=bucket, Key=f"small/{i}/{j}")["Body"].read()

    n = per * args.threads
    for name, fn in (("put 4 KiB", put_small), ("get 4 KiB", get_small)):
        secs, cpu = timed(lambda: run_threads(args.threads, fn))
        rows[name] = {"objects_per_s": n / secs, "mb_per_s": n * 4096 / secs / 1e6,
                      "client_cpu_share": cpu / secs}

    big = os.urandom(args.big_mb * 1024 * 1024)

    def put_big():
        for k in range(args.big_count):
            s3.put_object(Bucket=bucket, Key=f"big/{k}", Body=big)

    def get_big():
        for k in range(args.big_count):
            body = s3.get_object(Bucket=bucket, Key=f"big/{k}")["Body"]
            while body.read(1 << 20):
                pass

    total = args.big_count * len(big)
    for name, fn in ((f"put {args.big_mb} MB", put_big), (f"get {args.big_mb} MB", get_big)):
        secs, cpu = timed(fn)
        rows[name] = {"mb_per_s": total / secs / 1e6, "client_cpu_share": cpu / secs}
    return rows


def dd_rows(directory, mb):
    path = os.path.join(directory, "dd.bin")
    out = {}
    t0 = time.monotonic()
    subprocess.run(["dd", "if=/dev/urandom", f"of={path}.src", "bs=1M", f"count={mb}"],
                   check=True, capture_output=True)
    t0 = time.monotonic()
    subprocess.run(["dd", f"if={path}.src", f"of={path}", "bs=1M", "conv=fsync"],
                   check=True, capture_output=True)
    out[f"dd write {mb} MB (fsync)"] = {"mb_per_s": mb * 1.048576 / (time.monotonic() - t0)}
    # Drop nothing from the page cache (needs root and disturbs other users): this read is
    # what a GET of a recently written object sees too.
    t0 = time.monotonic()
    subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M"], check=True, capture_output=True)
    out[f"dd read {mb} MB (page cache)"] = {"mb_per_s": mb * 1.048576 / (time.monotonic() - t0)}
    os.remove(path)
    os.remove(path + ".src")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "tsumiki"))
    ap.add_argument("--big-mb", type=int, default=64)
    ap.add_argument("--big-count", type=int, default=3)
    ap.add_argument("--small-count", type=int, default=400)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    results = {}
    with tempfile.TemporaryDirectory(prefix="s3-bench-") as tmp:
        results["disk"] = dd_rows(tmp, args.big_mb)
        proc, endpoint = start_tsumiki(args.bin, os.path.join(tmp, "data"))
        try:
            results["tsumiki"] = measure(endpoint, args)
        finally:
            proc.terminate()
            proc.wait()
    if not args.skip_moto:
        try:
            proc, endpoint = start_moto()
            try:
                results["moto"] = measure(endpoint, args)
            finally:
                proc.terminate()
                proc.wait()
        except Exception as e:  # noqa: BLE001
            results["moto"] = {"n/a": str(e)}

    print(f"{'row':28} {'tsumiki':>22} {'moto':>22} {'ratio':>7}")
    for name, row in results["disk"].items():
        print(f"{name:28} {row['mb_per_s']:>17.1f} MB/s")
    for name, row in results["tsumiki"].items():
        other = results.get("moto", {}).get(name)

        def fmt(r):
            if not isinstance(r, dict):
                return "n/a"
            s = f"{r['mb_per_s']:.1f} MB/s"
            if "objects_per_s" in r:
                s = f"{r['objects_per_s']:.0f}/s {s}"
            return s

        ratio = f"{row['mb_per_s'] / other['mb_per_s']:.1f}x" if isinstance(other, dict) else ""
        print(f"{name:28} {fmt(row):>22} {fmt(other):>22} {ratio:>7}"
              f"   client cpu {row['client_cpu_share']:.0%}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
