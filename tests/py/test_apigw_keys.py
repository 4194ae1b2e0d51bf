"""API keys and usage plans of REST APIs through boto3, called with a plain HTTP client:
x-api-key enforcement, quotas and throttles on the manual clock, GetUsage, stage throttling
of REST and HTTP APIs, and usage counts surviving kill -9."""

import datetime
import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_util import unique
from test_apigateway import _Endpoint, start_durable


def call(server, api_id, path, headers=None):
    req = urllib.request.Request(f"{server.endpoint}/_aws/execute-api/{api_id}{path}",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def mock_api(rest, key_required=True, stage="prod"):
    """A REST API whose GET /items answers 200 {"ok": true} from a MOCK integration."""
    api = rest.create_rest_api(name=unique("keys"))
    api_id = api["id"]
    res = rest.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="items")
    rest.put_method(restApiId=api_id, resourceId=res["id"], httpMethod="GET",
                    authorizationType="NONE", apiKeyRequired=key_required)
    rest.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod="GET", type="MOCK",
                         requestTemplates={"application/json": '{"statusCode": 200}'})
    rest.put_integration_response(restApiId=api_id, resourceId=res["id"], httpMethod="GET",
                                  statusCode="200",
                                  responseTemplates={"application/json": '{"ok": true}'})
    rest.create_deployment(restApiId=api_id, stageName=stage)
    return api_id


def today(server):
    """The server's (manual) clock's UTC day."""
    return datetime.datetime.fromtimestamp(server.admin("GET", "/_tsumiki/clock")["now_ms"] / 1000,
                                           datetime.timezone.utc).date()


def test_api_keys_and_quota(clock_server):
    rest = clock_server.client("apigateway")
    api_id = mock_api(rest)
    key = rest.create_api_key(name=unique("k"), enabled=True)
    assert len(key["value"]) >= 20 and key["enabled"] is True
    assert "value" not in rest.get_api_key(apiKey=key["id"])
    assert rest.get_api_key(apiKey=key["id"], includeValue=True)["value"] == key["value"]
    given = rest.create_api_key(name=unique("given"), value="a-given-key-value-0123456789",
                                enabled=True)
    assert given["value"] == "a-given-key-value-0123456789"
    with pytest.raises(ClientError) as e:
        rest.create_api_key(name="short", value="short")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    disabled = rest.create_api_key(name=unique("off"))
    assert disabled["enabled"] is False
    names = [k["name"] for k in rest.get_api_keys(includeValues=True)["items"]]
    assert key["name"] in names

    with pytest.raises(ClientError) as e:
        rest.create_usage_plan(name="bad", apiStages=[{"apiId": api_id, "stage": "nope"}])
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    plan = rest.create_usage_plan(name=unique("plan"), apiStages=[{"apiId": api_id, "stage": "prod"}],
                                  quota={"limit": 3, "period": "DAY"},
                                  throttle={"rateLimit": 100.0, "burstLimit": 100})
    assert plan["quota"] == {"limit": 3, "offset": 0, "period": "DAY"}
    pk = rest.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    assert (pk["id"], pk["type"], pk["value"], pk["name"]) == (
        key["id"], "API_KEY", key["value"], key["name"])
    rest.create_usage_plan_key(usagePlanId=plan["id"], keyId=disabled["id"], keyType="API_KEY")
    assert {k["id"] for k in rest.get_usage_plan_keys(usagePlanId=plan["id"])["items"]} == {
        key["id"], disabled["id"]}
    assert [p["id"] for p in rest.get_usage_plans(keyId=key["id"])["items"]] == [plan["id"]]

    forbidden = (403, {"message": "Forbidden"})
    assert call(clock_server, api_id, "/prod/items") == forbidden
    assert call(clock_server, api_id, "/prod/items", {"x-api-key": "wrong-key-value-00000000000"}) == forbidden
    # Enabled but in no plan for this stage; in the plan but disabled.
    assert call(clock_server, api_id, "/prod/items", {"x-api-key": given["value"]}) == forbidden
    assert call(clock_server, api_id, "/prod/items", {"x-api-key": disabled["value"]}) == forbidden

    h = {"x-api-key": key["value"]}
    for _ in range(3):
        assert call(clock_server, api_id, "/prod/items", h) == (200, {"ok": True})
    assert call(clock_server, api_id, "/prod/items", h) == (429, {"message": "Limit Exceeded"})
    day = today(clock_server)
    usage = rest.get_usage(usagePlanId=plan["id"], startDate=str(day), endDate=str(day))
    assert usage["items"][key["id"]] == [[3, 0]]
    # The quota period rolls over with the clock.
    clock_server.advance(86_400)
    assert call(clock_server, api_id, "/prod/items", h) == (200, {"ok": True})
    nxt = day + datetime.timedelta(days=1)
    usage = rest.get_usage(usagePlanId=plan["id"], keyId=key["id"], startDate=str(day),
                           endDate=str(nxt))
    assert usage["items"] == {key["id"]: [[3, 0], [1, 2]]}

    rest.delete_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"])
    assert call(clock_server, api_id, "/prod/items", h) == forbidden
    # UpdateMethod lifts the requirement once a new deployment reaches the stage.
    res = [r for r in rest.get_resources(restApiId=api_id)["items"] if r["path"] == "/items"][0]
    m = rest.update_method(restApiId=api_id, resourceId=res["id"], httpMethod="GET",
                           patchOperations=[{"op": "replace", "path": "/apiKeyRequired",
                                             "value": "false"}])
    assert m["apiKeyRequired"] is False
    assert call(clock_server, api_id, "/prod/items") == forbidden
    rest.create_deployment(restApiId=api_id, stageName="prod")
    assert call(clock_server, api_id, "/prod/items") == (200, {"ok": True})
    rest.delete_api_key(apiKey=key["id"])
    with pytest.raises(ClientError) as e:
        rest.get_api_key(apiKey=key["id"])
    assert e.value.response["Error"]["Code"] == "NotFoundException"


def test_throttles_on_the_clock(clock_server):
    rest = clock_server.client("apigateway")
    api_id = mock_api(rest)
    key = rest.create_api_key(name=unique("t"), enabled=True)
    plan = rest.create_usage_plan(name=unique("tplan"),
                                  apiStages=[{"apiId": api_id, "stage": "prod"}],
                                  throttle={"rateLimit": 1.0, "burstLimit": 2})
    rest.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    h = {"x-api-key": key["value"]}
    assert [call(clock_server, api_id, "/prod/items", h)[0] for _ in range(3)] == [200, 200, 429]
    assert call(clock_server, api_id, "/prod/items", h)[1] == {"message": "Too Many Requests"}
    clock_server.advance(1)
    assert call(clock_server, api_id, "/prod/items", h)[0] == 200

    # A REST stage's method throttling, without keys.
    open_api = mock_api(rest, key_required=False, stage="s")
    rest.update_stage(restApiId=open_api, stageName="s", patchOperations=[
        {"op": "replace", "path": "/*/*/throttling/rateLimit", "value": "1"},
        {"op": "replace", "path": "/*/*/throttling/burstLimit", "value": "1"}])
    settings = rest.get_stage(restApiId=open_api, stageName="s")["methodSettings"]["*/*"]
    assert settings["throttlingBurstLimit"] == 1 and settings["throttlingRateLimit"] == 1.0
    assert [call(clock_server, open_api, "/s/items")[0] for _ in range(2)] == [200, 429]
    clock_server.advance(1)
    assert call(clock_server, open_api, "/s/items")[0] == 200

    # An HTTP API stage's route throttling.
    v2 = clock_server.client("apigatewayv2")
    http_api = v2.create_api(Name=unique("thr"), ProtocolType="HTTP")["ApiId"]
    integ = v2.create_integration(ApiId=http_api, IntegrationType="HTTP_PROXY",
                                  IntegrationMethod="ANY", IntegrationUri="http://127.0.0.1:9/x",
                                  PayloadFormatVersion="1.0")
    v2.create_route(ApiId=http_api, RouteKey="GET /t", Target=f"integrations/{integ['IntegrationId']}")
    v2.create_stage(ApiId=http_api, StageName="$default", AutoDeploy=True,
                    RouteSettings={"GET /t": {"ThrottlingBurstLimit": 1, "ThrottlingRateLimit": 1.0}})
    # The first request passes the throttle (and fails at the closed backend port).
    assert call(clock_server, http_api, "/t")[0] == 500
    assert call(clock_server, http_api, "/t") == (429, {"message": "Too Many Requests"})


def test_usage_survives_kill_9(tmp_path):
    proc, endpoint, client = start_durable(tmp_path / "data")
    server = _Endpoint(endpoint)
    try:
        rest = client("apigateway")
        api_id = mock_api(rest)
        key = rest.create_api_key(name="durable", enabled=True)
        plan = rest.create_usage_plan(name="durable", apiStages=[{"apiId": api_id, "stage": "prod"}],
                                      quota={"limit": 2, "period": "MONTH"})
        rest.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
        h = {"x-api-key": key["value"]}
        assert call(server, api_id, "/prod/items", h)[0] == 200
        assert call(server, api_id, "/prod/items", h)[0] == 200
    finally:
        proc.kill()
        proc.wait()
    proc, endpoint, client = start_durable(tmp_path / "data")
    server = _Endpoint(endpoint)
    try:
        assert call(server, api_id, "/prod/items", h) == (429, {"message": "Limit Exceeded"})
        assert client("apigateway").get_api_key(apiKey=key["id"])["name"] == "durable"
    finally:
        proc.kill()
        proc.wait()
