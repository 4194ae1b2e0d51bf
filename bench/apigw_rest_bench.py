#!/usr/bin/env python3
"""REST API data-plane load test without functions: a MOCK integration with a mapping template,
open and behind an API key in a usage plan (key lookup, throttle bucket, durable usage count),
measured with wrk (Debian's `wrk`), against tsumiki and optionally a peer in the same run.

    python3 bench/apigw_rest_bench.py --endpoint http://127.0.0.1:4566 \
        [--peer http://127.0.0.1:4599 --peer-kind localstack] [--duration 5] [--connections 8]

Bounded and loopback only. LocalStack serves invoke URLs at
`/restapis/{id}/{stage}/_user_request_/{path}`; tsumiki at `/_aws/execute-api/{id}/{stage}/{path}`.
"""
import argparse
import re
import subprocess
import uuid

import boto3
from botocore.config import Config


def setup(endpoint):
    c = boto3.client("apigateway", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test",
                     config=Config(retries={"max_attempts": 1}))
    api = c.create_rest_api(name="bench-" + uuid.uuid4().hex[:6])
    api_id, root = api["id"], api["rootResourceId"]
    for part, keyed in (("open", False), ("keyed", True)):
        r = c.create_resource(restApiId=api_id, parentId=root, pathPart=part)
        c.put_method(restApiId=api_id, resourceId=r["id"], httpMethod="GET",
                     authorizationType="NONE", apiKeyRequired=keyed)
        c.put_integration(restApiId=api_id, resourceId=r["id"], httpMethod="GET", type="MOCK",
                          requestTemplates={"application/json": '{"statusCode": 200}'})
        c.put_method_response(restApiId=api_id, resourceId=r["id"], httpMethod="GET",
                              statusCode="200")
        c.put_integration_response(
            restApiId=api_id, resourceId=r["id"], httpMethod="GET", statusCode="200",
            responseTemplates={"application/json": '{"id": "$context.requestId"}'})
    c.create_deployment(restApiId=api_id, stageName="bench")
    key = c.create_api_key(name="bench", enabled=True)
    plan = c.create_usage_plan(name="bench", apiStages=[{"apiId": api_id, "stage": "bench"}],
                               throttle={"rateLimit": 100000.0, "burstLimit": 100000},
                               quota={"limit": 10_000_000, "period": "DAY"})
    c.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    return api_id, key["value"]


def url(endpoint, kind, api_id, path):
    if kind == "localstack":
        return f"{endpoint}/restapis/{api_id}/bench/_user_request_/{path}"
    return f"{endpoint}/_aws/execute-api/{api_id}/bench/{path}"


def wrk(target, duration, connections, header=None):
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", target]
    if header:
        cmd[1:1] = ["-H", header]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+\w+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return (float(rps.group(1)) if rps else 0.0, p99.group(1) if p99 else "?",
            int(non2xx.group(1)) if non2xx else 0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--peer")
    p.add_argument("--peer-kind", default="localstack")
    p.add_argument("--duration", type=int, default=5)
    p.add_argument("--connections", type=int, default=8)
    a = p.parse_args()
    runs = [("tsumiki", a.endpoint, "tsumiki")]
    if a.peer:
        runs.append((a.peer_kind, a.peer, a.peer_kind))
    print(f"{'server':<12} {'route':<8} {'req/s':>9} {'p99':>9} {'non-2xx':>8}")
    for name, endpoint, kind in runs:
        api_id, key = setup(endpoint)
        for route, header in (("open", None), ("keyed", f"x-api-key: {key}")):
            rps, p99, bad = wrk(url(endpoint, kind, api_id, route), a.duration, a.connections,
                                header)
            print(f"{name:<12} {route:<8} {rps:>9.0f} {p99:>9} {bad:>8}")


if __name__ == "__main__":
    main()
