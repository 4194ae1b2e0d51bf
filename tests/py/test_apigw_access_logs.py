"""Stage access logs of REST and HTTP APIs arriving in CloudWatch Logs, in the stage's format
with $context variables."""

import json
import time
import urllib.error
import urllib.request

from conftest import ACCOUNT
from lambda_util import unique
from test_apigw_keys import mock_api


def get(server, api_id, path, headers=None):
    req = urllib.request.Request(f"{server.endpoint}/_aws/execute-api/{api_id}{path}",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def lines(logs, group, stream, n):
    """The stream's messages once there are ``n`` (lines are written after the response)."""
    deadline = time.time() + 10
    while True:
        try:
            events = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                         startFromHead=True)["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        if len(events) >= n or time.time() > deadline:
            return [e["message"] for e in events]
        time.sleep(0.05)


def test_rest_stage_access_log(server):
    rest, logs = server.client("apigateway"), server.client("logs")
    group = unique("/apigw/access")
    logs.create_log_group(logGroupName=group)
    arn = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}"
    api_id = mock_api(rest, key_required=False, stage="live")
    fmt = ('{"requestId":"$context.requestId","method":"$context.httpMethod",'
           '"resource":"$context.resourcePath","status":"$context.status",'
           '"ip":"$context.identity.sourceIp","err":"$context.error.message"}')
    stage = rest.update_stage(restApiId=api_id, stageName="live", patchOperations=[
        {"op": "replace", "path": "/accessLogSettings/destinationArn", "value": arn},
        {"op": "replace", "path": "/accessLogSettings/format", "value": fmt}])
    assert stage["accessLogSettings"] == {"destinationArn": arn, "format": fmt}
    assert get(server, api_id, "/live/items") == 200
    assert get(server, api_id, "/live/nothing-here") == 403
    got = [json.loads(m) for m in lines(logs, group, f"{api_id}_live", 2)]
    assert len(got) == 2, got
    by_status = {g["status"]: g for g in got}
    assert by_status["200"]["method"] == "GET" and by_status["200"]["resource"] == "/items"
    assert by_status["200"]["ip"] == "127.0.0.1" and by_status["200"]["err"] == "-"
    assert by_status["403"]["err"] == "Missing Authentication Token"
    assert by_status["200"]["requestId"] != by_status["403"]["requestId"]


def test_http_stage_access_log(server):
    v2, logs = server.client("apigatewayv2"), server.client("logs")
    group = unique("/apigw/http-access")
    logs.create_log_group(logGroupName=group)
    api_id = v2.create_api(Name=unique("logs"), ProtocolType="HTTP")["ApiId"]
    integ = v2.create_integration(ApiId=api_id, IntegrationType="HTTP_PROXY",
                                  IntegrationMethod="ANY", IntegrationUri="http://127.0.0.1:9/x",
                                  PayloadFormatVersion="1.0")
    v2.create_route(ApiId=api_id, RouteKey="GET /down",
                    Target=f"integrations/{integ['IntegrationId']}")
    v2.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, AccessLogSettings={
        "DestinationArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}",
        "Format": "$context.requestId|$context.routeKey|$context.status|$context.protocol"})
    assert get(server, api_id, "/down") == 500
    assert get(server, api_id, "/missing") == 404
    got = sorted(m.split("|")[1:3] for m in lines(logs, group, f"{api_id}_$default", 2))
    assert got == [["-", "404"], ["GET /down", "500"]]
