#!/usr/bin/env python3
"""HTTP API load test: requests/s and latency percentiles through an API Gateway HTTP API
(quick create, payload format 2.0) to a warm function, measured with wrk (Debian's `wrk`).

    python3 bench/apigw_bench.py --endpoint http://127.0.0.1:4566 [--bootstrap PATH]
        [--duration 10] [--connections 1,8]

Runtimes: python3.12 always; provided.al2023 with --bootstrap (e.g. crates/testfns'
`rust_echo`), else with a POSIX-shell bootstrap that speaks the Runtime API through curl (AWS's
tutorial bootstrap: slow per request, it measures the gateway less than the process spawns).
Bounded and loopback only. Peers: serverless-offline is not installed on this machine; run
it beside tsumiki and pass its URL with --peer-url to compare in the same run.
"""
import argparse
import io
import re
import shutil
import subprocess
import sys
import urllib.request
import uuid
import zipfile

import boto3
from botocore.config import Config

PY = b"""def handler(event, context):
    return {"statusCode": 200, "body": "ok"}
"""

SH_BOOTSTRAP = b"""#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
H=$(mktemp)
while true; do
  curl -sS -D "$H" -o /dev/null "$API/invocation/next"
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$H" | tr -d '\\r' | cut -d' ' -f2)
  curl -sS -o /dev/null -X POST "$API/invocation/$ID/response" -d '{"statusCode":200,"body":"ok"}'
done
"""


def zip_of(name, data, executable):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(name)
        info.external_attr = ((0o755 if executable else 0o644) | 0o100000) << 16
        z.writestr(info, data)
    return buf.getvalue()


def wrk(url, host, connections, duration):
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url]
    if host:
        args[1:1] = ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, pct.get("50", "?"), pct.get("99", "?"), int(non2xx.group(1)) if non2xx else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", default="http://127.0.0.1:4566")
    ap.add_argument("--bootstrap", help="a provided.al2023 bootstrap binary")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", default="1,8")
    ap.add_argument("--peer-url", action="append", default=[],
                    help="NAME=URL of the same route on a peer (e.g. serverless-offline)")
    a = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install -y wrk")
    kw = dict(endpoint_url=a.endpoint, region_name="us-east-1", aws_access_key_id="testing",
              aws_secret_access_key="testing", config=Config(retries={"max_attempts": 1}))
    lam, apigw = boto3.client("lambda", **kw), boto3.client("apigatewayv2", **kw)
    bootstrap = open(a.bootstrap, "rb").read() if a.bootstrap else SH_BOOTSTRAP
    cases = [("python3.12", zip_of("app.py", PY, False), "app.handler"),
             ("provided.al2023" + ("" if a.bootstrap else " (sh+curl)"),
              zip_of("bootstrap", bootstrap, True), "bootstrap")]
    port = a.endpoint.rsplit(":", 1)[1]
    print(f"{'target':34} {'conns':>5} {'req/s':>9} {'p50':>9} {'p99':>9} {'non-2xx':>8}")
    for runtime, code, handler in cases:
        name = f"bench-{uuid.uuid4().hex[:8]}"
        arn = lam.create_function(FunctionName=name, Runtime=runtime.split()[0],
                                  Role="arn:aws:iam::000000000000:role/r", Handler=handler,
                                  Code={"ZipFile": code}, Timeout=10)["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName=name)
        api = apigw.create_api(Name=name, ProtocolType="HTTP", Target=arn)
        host = f"{api['ApiId']}.execute-api.localhost:{port}"
        url = f"http://127.0.0.1:{port}/hello"
        req = urllib.request.Request(url, headers={"Host": host})
        assert urllib.request.urlopen(req, timeout=30).read() == b"ok"  # warm
        for c in [int(x) for x in a.connections.split(",")]:
            rps, p50, p99, bad = wrk(url, host, c, a.duration)
            print(f"tsumiki {runtime:26} {c:>5} {rps:>9.0f} {p50:>9} {p99:>9} {bad:>8}")
    for peer in a.peer_url:
        label, url = peer.split("=", 1)
        for c in [int(x) for x in a.connections.split(",")]:
            rps, p50, p99, bad = wrk(url, None, c, a.duration)
            print(f"{label:34} {c:>5} {rps:>9.0f} {p50:>9} {p99:>9} {bad:>8}")


if __name__ == "__main__":
    main()
