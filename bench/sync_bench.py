#!/usr/bin/env python3
"""Synchronous-trigger load test, tsumiki against serverless-offline in one run: requests/s and
p50/p99 latency through an HTTP API (quick create, payload format 2.0) to a warm function,
measured with wrk (Debian's `wrk`, installed with apt-get when missing), and the ratios.

    python3 bench/sync_bench.py [--tsumiki-bin target/release/tsumiki] [--bootstrap PATH]
        [--duration 5] [--connections 1,8] [--no-peer]

Routes: python3.12 and nodejs20.x on both; provided.al2023 on tsumiki only (its bootstrap is
--bootstrap, e.g. crates/testfns' `rust_echo`, else the `rust_echo` next to the tsumiki binary;
serverless-offline runs `provided` functions only in Docker, which this machine has not).
serverless-offline 13 with the Serverless Framework 3 (v4 needs a login) is installed with npm
into ~/.cache/tsumiki-bench/sls on first use and runs offline. Both handlers answer
`{"statusCode": 200, "body": "ok"}`.

Bounded (each row --duration seconds) and loopback only; one server under load at a time:
tsumiki's rows, then serverless-offline started, measured and stopped. Each server is started
here in its own process group and only that group is stopped.
"""
import argparse
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config

REPO = Path(__file__).resolve().parents[1]
SLS_DIR = Path.home() / ".cache" / "tsumiki-bench" / "sls"

PY = b"""def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""
NODE = b"""exports.handler = async () => ({ statusCode: 200, body: "ok" });
"""
SLS_YML = """service: bench
frameworkVersion: "3"
provider:
  name: aws
  runtime: python3.12
  region: us-east-1
plugins:
  - serverless-offline
functions:
  py:
    handler: app.handler
    events:
      - httpApi: {path: /hello, method: get}
  node:
    handler: index.handler
    runtime: nodejs20.x
    events:
      - httpApi: {path: /node, method: get}
"""


def zip_of(name, data, executable):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(name)
        info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
        z.writestr(info, data)
    return buf.getvalue()


def ensure_wrk():
    if shutil.which("wrk"):
        return
    print("installing wrk (apt-get)", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)


def wrk(url, host, connections, duration):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*", out)
    return {
        "rps": rps,
        "p50": pct.get("50", "?"),
        "p99": pct.get("99", "?"),
        "bad": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(0) if errors else "",
    }


def ms(text):
    """wrk's latency text (`812.00us`, `4.72ms`, `1.01s`) in milliseconds."""
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        return None
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def start_tsumiki(binary):
    proc = subprocess.Popen(
        [str(binary), "serve", "--listen", "127.0.0.1:0", "--in-memory"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
        env=dict(os.environ, NO_COLOR="1"))
    line = proc.stdout.readline().decode()
    m = re.search(r"listening on (http://\S+)", line)
    if not m:
        stop(proc)
        sys.exit(f"tsumiki did not start: {line!r}")
    return proc, m.group(1)


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def wait_ok(url, host=None, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            req = urllib.request.Request(url, headers={"Host": host} if host else {})
            body = urllib.request.urlopen(req, timeout=30).read()
            return body
        except Exception:  # noqa: BLE001 - the server is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def tsumiki_rows(endpoint, cases, connections, duration):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
    lam, apigw = boto3.client("lambda", **kw), boto3.client("apigatewayv2", **kw)
    port = endpoint.rsplit(":", 1)[1]
    rows = []
    for label, runtime, code, handler in cases:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        arn = lam.create_function(FunctionName=name, Runtime=runtime,
                                  Role="arn:aws:iam::000000000000:role/r", Handler=handler,
                                  Code={"ZipFile": code}, Timeout=10)["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        api = apigw.create_api(Name=name, ProtocolType="HTTP", Target=arn)
        host = f"{api['ApiId']}.execute-api.localhost:{port}"
        url = f"http://127.0.0.1:{port}/hello"
        wait_ok(url, host)  # warm
        for c in connections:
            rows.append(("tsumiki", label, c, wrk(url, host, c, duration)))
    return rows


def ensure_sls():
    if (SLS_DIR / "node_modules" / "serverless-offline").is_dir():
        return
    SLS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"installing serverless@3 and serverless-offline@13 into {SLS_DIR} (npm)",
          file=sys.stderr)
    subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent",
                    "serverless@3", "serverless-offline@13"], cwd=SLS_DIR, check=True)


def peer_rows(connections, duration, port=39311):
    ensure_sls()
    work = Path(tempfile.mkdtemp(prefix="sls-bench-"))
    (work / "serverless.yml").write_text(SLS_YML)
    (work / "app.py").write_bytes(PY)
    (work / "index.js").write_bytes(NODE)
    (work / "node_modules").symlink_to(SLS_DIR / "node_modules")
    env = dict(os.environ, SLS_TELEMETRY_DISABLED="1", SLS_NOTIFICATIONS_MODE="off",
               SLS_DEPRECATION_DISABLE="*")
    proc = subprocess.Popen(
        [str(SLS_DIR / "node_modules" / ".bin" / "serverless"), "offline", "start",
         "--httpPort", str(port), "--lambdaPort", str(port + 1), "--noPrependStageInUrl"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True)
    rows = []
    try:
        for label, path in [("python3.12", "/hello"), ("nodejs20.x", "/node")]:
            url = f"http://127.0.0.1:{port}{path}"
            wait_ok(url)  # started and warm
            for c in connections:
                rows.append(("serverless-offline", label, c, wrk(url, None, c, duration)))
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsumiki-bin", help="default: target/release/tsumiki, else target/debug")
    ap.add_argument("--bootstrap", help="a provided.al2023 bootstrap binary (rust_echo)")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--no-peer", action="store_true")
    a = ap.parse_args()
    ensure_wrk()
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    binary = Path(a.tsumiki_bin) if a.tsumiki_bin else next(
        (p for p in [target / "release" / "tsumiki", target / "debug" / "tsumiki"] if p.exists()),
        None)
    if binary is None or not binary.exists():
        sys.exit("no tsumiki binary: cargo build --release -p tsumiki --bin tsumiki")
    bootstrap = Path(a.bootstrap) if a.bootstrap else binary.parent / "rust_echo"
    if not bootstrap.exists():
        bootstrap = target / "debug" / "rust_echo"
    connections = [int(x) for x in a.connections.split(",")]
    cases = [("python3.12", "python3.12", zip_of("app.py", PY, False), "app.handler"),
             ("nodejs20.x", "nodejs20.x", zip_of("index.js", NODE, False), "index.handler")]
    if bootstrap.exists():
        cases.append(("provided.al2023 (rust_echo)", "provided.al2023",
                      zip_of("bootstrap", bootstrap.read_bytes(), True), "bootstrap"))
    print(f"tsumiki: {binary}; wrk -t1, {a.duration} s per row; machine load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True)
    proc, endpoint = start_tsumiki(binary)
    try:
        rows = tsumiki_rows(endpoint, cases, connections, a.duration)
    finally:
        stop(proc)
    if a.no_peer:
        peer = []
    else:
        try:
            peer = peer_rows(connections, a.duration)
        except Exception as e:  # noqa: BLE001 - report the peer as missing, keep our rows
            print(f"serverless-offline: n/a ({e})", file=sys.stderr)
            peer = []
    rows += peer
    print(f"{'server':20} {'route':28} {'conns':>5} {'req/s':>9} {'p50':>9} {'p99':>9} "
          f"{'non-2xx':>8}")
    for server, label, c, r in rows:
        print(f"{server:20} {label:28} {c:>5} {r['rps']:>9.0f} {r['p50']:>9} {r['p99']:>9} "
              f"{r['bad']:>8} {r['socket_errors']}")
    by = {(s, label, c): r for s, label, c, r in rows}
    print("\nratios tsumiki / serverless-offline (req/s higher is better; p99 lower is better)")
    for label in ["python3.12", "nodejs20.x"]:
        for c in connections:
            t, p = by.get(("tsumiki", label, c)), by.get(("serverless-offline", label, c))
            if not (t and p):
                continue
            tp99, pp99 = ms(t["p99"]), ms(p["p99"])
            p99 = f"{tp99 / pp99:.2f}x" if tp99 and pp99 else "?"
            print(f"  {label:14} c={c:<3} req/s {t['rps'] / p['rps']:.2f}x   p99 {p99}")


if __name__ == "__main__":
    main()
