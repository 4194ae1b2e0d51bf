#!/usr/bin/env python3
"""Side-by-side DynamoDB benchmark: tsumiki against dynalite (npm) and moto's server, in one run.

Usage:
    python3 bench/dynamodb_bench.py [--bin target/release/tsumiki] [--seconds 3]
                                    [--dynalite /tmp/peers/dynalite/node_modules/.bin/dynalite]
                                    [--skip-moto] [--skip-dynalite] [--json out.json]

Each server is started on a free port (tsumiki with `--data-dir` on disk, so every write is
durable; dynalite in memory; moto in memory), then one server at a time runs the same boto3
workload, each row bounded by --seconds:
    put1/put16     PutItem, 1 or 16 threads (each its own client), distinct items
    get1/get16     GetItem of random existing items
    query1/query16 Query of one partition's 10 items
Rows print operations per second and tsumiki's ratio to each peer. boto3 spends more CPU per
call than tsumiki, and client and servers share the machine's cores, so tsumiki's rows are
mostly client-bound: the ratios are lower bounds. A server that cannot run a row prints n/a.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start_tsumiki(binary, tmp):
    proc = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
    return proc, endpoint


def start_dynalite(path):
    port = free_port()
    proc = subprocess.Popen([path, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    if not wait_port(port):
        proc.kill()
        raise RuntimeError("dynalite did not start")
    return proc, f"http://127.0.0.1:{port}"


def start_moto():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port):
        proc.kill()
        raise RuntimeError("moto did not start")
    return proc, f"http://127.0.0.1:{port}"


def client(endpoint):
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="bench", aws_secret_access_key="bench",
                        config=Config(retries={"max_attempts": 1}, max_pool_connections=32))


def run_row(endpoint, threads, seconds, op):
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def work(i):
        c = client(endpoint)
        n = 0
        while time.monotonic() < stop:
            op(c, i, n)
            n += 1
        counts[i] = n

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.monotonic() - start)


def bench(endpoint, seconds):
    c = client(endpoint)
    table = f"bench{random.randrange(1 << 30)}"
    c.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                         {"AttributeName": "sk", "AttributeType": "N"}],
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                              {"AttributeName": "sk", "KeyType": "RANGE"}])
    c.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 1})
    for p in range(20):
        for s in range(10):
            c.put_item(TableName=table, Item={"pk": {"S": f"q{p}"}, "sk": {"N": str(s)},
                                              "payload": {"S": "x" * 100}})

    def put(cl, i, n):
        cl.put_item(TableName=table, Item={"pk": {"S": f"w{i}-{n}"}, "sk": {"N": "0"},
                                           "payload": {"S": "x" * 100}})

    def get(cl, i, n):
        cl.get_item(TableName=table, Key={"pk": {"S": f"q{random.randrange(20)}"},
                                          "sk": {"N": str(random.randrange(10))}})

    def query(cl, i, n):
        cl.query(TableName=table, KeyConditionExpression="pk = :p",
                 ExpressionAttributeValues={":p": {"S": f"q{random.randrange(20)}"}})

    rows = {}
    for name, op in [("put", put), ("get", get), ("query", query)]:
        for threads in (1, 16):
            rows[f"{name}{threads}"] = run_row(endpoint, threads, seconds, op)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/tsumiki")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--dynalite", default="/tmp/peers/dynalite/node_modules/.bin/dynalite")
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--skip-dynalite", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    results = {}
    tmp = tempfile.mkdtemp(prefix="ddb-bench-")
    servers = [("tsumiki", lambda: start_tsumiki(args.bin, tmp))]
    if not args.skip_dynalite:
        servers.append(("dynalite", lambda: start_dynalite(args.dynalite)))
    if not args.skip_moto:
        servers.append(("moto", start_moto))
    try:
        for name, start in servers:
            try:
                proc, endpoint = start()
            except Exception as e:  # noqa: BLE001 - a peer that cannot start prints n/a
                results[name] = f"n/a: {e}"
                continue
            try:
                results[name] = bench(endpoint, args.seconds)
            except Exception as e:  # noqa: BLE001
                results[name] = f"n/a: {e}"
            finally:
                proc.kill()
                proc.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = ["put1", "put16", "get1", "get16", "query1", "query16"]
    peers = [n for n, _ in servers]
    print("row      " + "".join(f"{p:>12}" for p in peers) + "".join(f"{'vs ' + p:>14}" for p in peers[1:]))
    for r in rows:
        line = f"{r:<9}"
        for p in peers:
            v = results.get(p)
            line += f"{v[r]:>12.0f}" if isinstance(v, dict) else f"{'n/a':>12}"
        base = results.get("tsumiki")
        for p in peers[1:]:
            v = results.get(p)
            if isinstance(base, dict) and isinstance(v, dict) and v[r] > 0:
                line += f"{base[r] / v[r]:>13.2f}x"
            else:
                line += f"{'n/a':>14}"
        print(line)
    for p in peers:
        if isinstance(results.get(p), str):
            print(f"{p}: {results[p]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
