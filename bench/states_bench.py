#!/usr/bin/env python3
"""Step Functions executions through the API, tsumiki against moto's server in one run.

    python3 bench/states_bench.py [--binary target/release/tsumiki] [--executions 300]

Then, when `sfn-load` (crates/bench) sits beside the binary, tsumiki alone under load from the
AWS SDK for Rust: 8 clients, Standard (StartExecution, the window ending when none is RUNNING)
and Express (StartSyncExecution), server CPU per execution without a DescribeExecution each.

For each server and each type (STANDARD durable, EXPRESS): a 10-Pass-state machine, then one
client runs StartExecution and polls DescribeExecution until the execution ends (Express:
StartSyncExecution). Reports executions per second and the server's CPU per execution.
moto does not execute state machines by default (its executions stay RUNNING or succeed at
once without running states), so its figures measure only the API round trips: read them as
a floor, not as a like-for-like comparison. tsumiki runs durable (`--data-dir`).
"""

import argparse
import json
import subprocess
import os
import sys
import tempfile
import time

import boto3
from botocore.config import Config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sqs_bench import free_port, proc_cpu_seconds, start_moto, start_tsumiki  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def definition():
    states = {}
    for i in range(10):
        s = {"Type": "Pass", "Parameters": {"i": i, "prev.$": "$"}, "OutputPath": "$.i"}
        if i == 9:
            s["End"] = True
        else:
            s["Next"] = f"S{i + 1}"
        states[f"S{i}"] = s
    return json.dumps({"StartAt": "S0", "States": states})


def run(server, n, kind):
    sfn = boto3.client("stepfunctions", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="123456789012", aws_secret_access_key="x",
                       config=Config(retries={"max_attempts": 0}, inject_host_prefix=False))
    arn = sfn.create_state_machine(name=f"bench-{kind.lower()}", definition=definition(),
                                   roleArn="arn:aws:iam::123456789012:role/r", type=kind)["stateMachineArn"]
    cpu0 = proc_cpu_seconds(server.pid)
    t0 = time.perf_counter()
    done = 0
    for i in range(n):
        if kind == "EXPRESS":
            try:
                sfn.start_sync_execution(stateMachineArn=arn, input=json.dumps({"n": i}))
            except Exception as e:  # moto may not implement it
                return {"na": str(e)[:80]}
        else:
            ex = sfn.start_execution(stateMachineArn=arn, input=json.dumps({"n": i}))["executionArn"]
            for _ in range(1000):
                if sfn.describe_execution(executionArn=ex)["status"] != "RUNNING":
                    break
            else:
                return {"na": "executions do not finish"}
        done += 1
    wall = time.perf_counter() - t0
    cpu1 = proc_cpu_seconds(server.pid)
    return {"per_s": done / wall, "cpu_us": (cpu1 - cpu0) / done * 1e6 if cpu0 is not None else float("nan")}


def rust_rows(binary, server):
    """`sfn-load` rows (AWS SDK for Rust, 8 clients), when the tool was built beside `binary`."""
    tool = os.path.join(os.path.dirname(binary), "sfn-load")
    if not os.path.exists(tool):
        return [("tsumiki", "rust x8", {"na": f"no {tool} (cargo build --release -p tsumiki-bench --bin sfn-load)"})]
    rows = []
    for kind, n in (("standard", 4000), ("express", 12000)):
        out = subprocess.run([tool, "--endpoint", server.endpoint, "--kind", kind, "--clients", "8",
                              "--executions", str(n), "--server-pid", str(server.pid)],
                             capture_output=True, text=True)
        if out.returncode != 0:
            rows.append(("tsumiki", f"{kind} x8", {"na": out.stderr.strip()[:80]}))
            continue
        d = json.loads(out.stdout)
        rows.append(("tsumiki", f"{kind.upper()} x8 (Rust)",
                     {"per_s": d["executions_per_s"], "cpu_us": d["server_cpu_us_per_execution"]}))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "tsumiki"))
    ap.add_argument("--executions", type=int, default=300)
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
                rows.append((label, "-", {"na": server.na}))
                continue
            try:
                for kind in ("STANDARD", "EXPRESS"):
                    rows.append((server.label, kind, run(server, args.executions, kind)))
                if label == "tsumiki":
                    rows.extend(rust_rows(args.binary, server))
            finally:
                server.stop()
    print(f"10-Pass machine, {args.executions} executions, 1 client (Standard: start + describe until done)")
    print(f"{'server':<10} {'type':<20} {'exec/s':>8} {'server CPU us/exec':>20}")
    for label, kind, r in rows:
        if "na" in r:
            print(f"{label:<10} {kind:<20} n/a: {r['na']}")
        else:
            print(f"{label:<10} {kind:<20} {r['per_s']:>8.1f} {r['cpu_us']:>20.0f}")


if __name__ == "__main__":
    main()
