#!/usr/bin/env python3
"""Lambda invoke benchmark with boto3, against tsumiki and any peer that runs functions.

    python3 bench/lambda_bench.py --endpoint http://127.0.0.1:4566 [--endpoint http://127.0.0.1:4567 ...]

For each endpoint and runtime (python3.12 always; provided.al2023 when --bootstrap names a
binary, e.g. the `rust_echo` function of crates/testfns built with AWS's lambda_runtime crate):
cold start (first invoke of a fresh function, client round trip), warm invoke latency p50/p99
(sequential), and invokes/s at concurrency 1 and 16 (threads, one client each). Run peers in
the same run: these machines are noisy, so only ratios side by side mean much.
"""
import argparse
import io
import json
import statistics
import sys
import threading
import time
import uuid
import zipfile

import boto3
from botocore.config import Config

PY_HANDLER = b"def handler(event, context):\n    return event\n"


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data, exec_ in files:
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if exec_ else 0o644) << 16
            z.writestr(info, data)
    return buf.getvalue()


def client(endpoint):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="123456789012",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 0}, max_pool_connections=64),
    )


def percentile(samples, p):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * p / 100))]


def create(c, name, runtime, handler, code):
    c.create_function(
        FunctionName=name,
        Runtime=runtime,
        Role="arn:aws:iam::123456789012:role/bench",
        Handler=handler,
        Code={"ZipFile": code},
        Timeout=30,
    )
    try:
        c.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.05, "MaxAttempts": 400}
        )
    except Exception:  # noqa: BLE001 - peers without the waiter's states still run
        pass


def invoke_ms(c, name, payload=b'{"k":1}'):
    t = time.perf_counter()
    r = c.invoke(FunctionName=name, Payload=payload)
    body = r["Payload"].read()
    elapsed = (time.perf_counter() - t) * 1000
    if r.get("FunctionError"):
        raise RuntimeError(f"{name}: {body[:200]!r}")
    return elapsed


def throughput(endpoint, name, threads, seconds):
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def worker(i):
        c = client(endpoint)
        invoke_ms(c, name)  # each thread's first call opens its connection
        n = 0
        while time.perf_counter() < stop:
            c.invoke(FunctionName=name, Payload=b'{"k":1}')["Payload"].read()
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def bench(endpoint, runtime, code, handler, colds, warm_n, seconds):
    c = client(endpoint)
    tag = uuid.uuid4().hex[:6]
    cold = []
    for i in range(colds):
        name = f"bench-{runtime.replace('.', '')}-{tag}-{i}"
        create(c, name, runtime, handler, code)
        cold.append(invoke_ms(c, name))
    name = f"bench-{runtime.replace('.', '')}-{tag}-0"
    for _ in range(20):
        invoke_ms(c, name)
    warm = [invoke_ms(c, name) for _ in range(warm_n)]
    tput1 = throughput(endpoint, name, 1, seconds)
    # Let the 16 environments start before measuring.
    throughput(endpoint, name, 16, 1)
    tput16 = throughput(endpoint, name, 16, seconds)
    return {
        "endpoint": endpoint,
        "runtime": runtime,
        "cold_p50_ms": round(statistics.median(cold), 2),
        "cold_max_ms": round(max(cold), 2),
        "warm_p50_ms": round(percentile(warm, 50), 3),
        "warm_p99_ms": round(percentile(warm, 99), 3),
        "invokes_per_s_c1": round(tput1),
        "invokes_per_s_c16": round(tput16),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", action="append", required=True)
    ap.add_argument("--bootstrap", help="a provided.al2023 bootstrap binary to benchmark too")
    ap.add_argument("--colds", type=int, default=10)
    ap.add_argument("--warm", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()
    cases = [("python3.12", zip_of([("app.py", PY_HANDLER, False)]), "app.handler")]
    if args.bootstrap:
        with open(args.bootstrap, "rb") as f:
            cases.append(("provided.al2023", zip_of([("bootstrap", f.read(), True)]), "bootstrap"))
    rows = []
    for endpoint in args.endpoint:
        for runtime, code, handler in cases:
            try:
                row = bench(endpoint, runtime, code, handler, args.colds, args.warm, args.seconds)
            except Exception as e:  # noqa: BLE001 - a peer that cannot run a runtime is a result
                row = {"endpoint": endpoint, "runtime": runtime, "error": str(e)[:200]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
