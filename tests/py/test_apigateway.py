"""API Gateway HTTP APIs (apigatewayv2) through boto3, called with a plain HTTP client: routes
and their priority, Lambda proxy payloads 1.0 and 2.0, stages, CORS, Lambda authorizers, and
AWS's 404/502/503 answers."""

import base64
import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_util import create_function, unique

ECHO = """
import json
def handler(event, context):
    if event.get("rawPath", event.get("path", "")).endswith("/plain"):
        return {"plain": True}
    if event.get("rawPath", "").endswith("/text"):
        return "just text"
    if event.get("rawPath", "").endswith("/binary"):
        import base64
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-echo": "yes"},
        "multiValueHeaders": {"x-multi": ["a", "b"]},
        "cookies": ["session=abc; Path=/", "theme=dark"],
        "body": json.dumps(event),
    }
"""

FAILING = """
def handler(event, context):
    raise RuntimeError("boom")
"""

MALFORMED_V1 = """
def handler(event, context):
    return {"body": "no status"}
"""

SLOW = """
import time
def handler(event, context):
    time.sleep(3)
    return {"statusCode": 200, "body": "late"}
"""

AUTH_SIMPLE = """
import json, os
def handler(event, context):
    token = event["headers"].get("authorization", "")
    path = "/tmp/auth-calls-" + context.function_name
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    return {"isAuthorized": token == "let-me-in", "context": {"user": "alice", "calls": n + 1}}
"""

AUTH_POLICY = """
def handler(event, context):
    effect = "Allow" if event["headers"].get("authorization") == "allow" else "Deny"
    return {
        "principalId": "bob",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": [event["routeArn"]]}]},
        "context": {"role": "admin"},
    }
"""


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def apigw(server):
    return server.client("apigatewayv2")


@pytest.fixture(scope="module")
def echo_arn(lam):
    name = unique("echo")
    return create_function(lam, name, {"app.py": ECHO})["FunctionArn"]


def call(server, api_id, path, method="GET", body=None, headers=None, host=False):
    """(status, headers, body bytes) of one request to an invoke URL."""
    headers = dict(headers or {})
    if host:
        url = server.endpoint + path
        headers["Host"] = f"{api_id}.execute-api.localhost"
    else:
        url = f"{server.endpoint}/_aws/execute-api/{api_id}{path}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def make_api(apigw, routes, **api_kwargs):
    """An HTTP API with an auto-deployed $default stage; routes is [(route key, uri, fmt)]."""
    api = apigw.create_api(Name=unique("api"), ProtocolType="HTTP", **api_kwargs)
    api_id = api["ApiId"]
    for key, uri, fmt, *extra in routes:
        integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                         IntegrationUri=uri, PayloadFormatVersion=fmt,
                                         **(extra[0] if extra else {}))
        apigw.create_route(ApiId=api_id, RouteKey=key,
                           Target=f"integrations/{integ['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)
    return api_id


def test_control_plane_lifecycle(apigw, echo_arn):
    api = apigw.create_api(Name="lifecycle", ProtocolType="HTTP", Description="d")
    api_id = api["ApiId"]
    assert api["ApiEndpoint"].startswith(f"http://{api_id}.execute-api.localhost:")
    assert api["RouteSelectionExpression"] == "$request.method $request.path"
    assert any(a["ApiId"] == api_id for a in apigw.get_apis()["Items"])
    integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                     IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    assert integ["TimeoutInMillis"] == 30000
    route = apigw.create_route(ApiId=api_id, RouteKey="GET /x",
                               Target=f"integrations/{integ['IntegrationId']}")
    assert route["AuthorizationType"] == "NONE"
    with pytest.raises(ClientError) as e:
        apigw.create_route(ApiId=api_id, RouteKey="GET /x")
    assert e.value.response["Error"]["Code"] == "ConflictException"
    with pytest.raises(ClientError) as e:
        apigw.create_route(ApiId=api_id, RouteKey="FETCH /x")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    updated = apigw.update_route(ApiId=api_id, RouteId=route["RouteId"], RouteKey="GET /y")
    assert updated["RouteKey"] == "GET /y"
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=api_id)["Items"]] == ["GET /y"]
    stage = apigw.create_stage(ApiId=api_id, StageName="dev", StageVariables={"v": "1"})
    assert stage["StageVariables"] == {"v": "1"} and "DeploymentId" not in stage
    dep = apigw.create_deployment(ApiId=api_id, StageName="dev")
    assert apigw.get_stage(ApiId=api_id, StageName="dev")["DeploymentId"] == dep["DeploymentId"]
    assert apigw.update_api(ApiId=api_id, Name="renamed")["Name"] == "renamed"
    with pytest.raises(ClientError) as e:
        apigw.delete_integration(ApiId=api_id, IntegrationId=integ["IntegrationId"])
    assert e.value.response["Error"]["Code"] == "ConflictException"
    apigw.delete_route(ApiId=api_id, RouteId=route["RouteId"])
    apigw.delete_api(ApiId=api_id)
    with pytest.raises(ClientError) as e:
        apigw.get_api(ApiId=api_id)
    assert e.value.response["Error"]["Code"] == "NotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_websocket_apis_are_not_implemented(apigw):
    with pytest.raises(ClientError) as e:
        apigw.create_api(Name="ws", ProtocolType="WEBSOCKET",
                         RouteSelectionExpression="$request.body.action")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_payload_v2_event_and_response(server, apigw, echo_arn):
    api_id = make_api(apigw, [("POST /items/{id}", echo_arn, "2.0")])
    status, headers, body = call(
        server, api_id, "/items/42?a=1&a=2&b=x%20y", method="POST",
        body=b'{"k": 1}',
        headers={"Content-Type": "application/json", "Cookie": "c1=v1; c2=v2",
                 "X-Custom": "hello", "User-Agent": "tests"})
    assert status == 200, body
    event = json.loads(body)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{id}"
    assert event["rawPath"] == "/items/42"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["pathParameters"] == {"id": "42"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-custom"] == "hello"
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["apiId"] == api_id and rc["stage"] == "$default"
    assert rc["http"] == {"method": "POST", "path": "/items/42", "protocol": "HTTP/1.1",
                          "sourceIp": "127.0.0.1", "userAgent": "tests"}
    assert rc["accountId"] == "123456789012" and rc["routeKey"] == "POST /items/{id}"
    assert isinstance(rc["timeEpoch"], int) and rc["time"].endswith("+0000")
    assert "stageVariables" not in event
    # The response: headers, multi-value headers, cookies as Set-Cookie.
    assert headers["x-echo"] == "yes"
    assert headers.get_all("x-multi") == ["a", "b"]
    assert headers.get_all("set-cookie") == ["session=abc; Path=/", "theme=dark"]
    assert headers["apigw-requestid"]


def test_payload_v2_plain_results_and_binary(server, apigw, echo_arn):
    api_id = make_api(apigw, [("ANY /{proxy+}", echo_arn, "2.0")])
    status, headers, body = call(server, api_id, "/plain", host=True)
    assert (status, headers["content-type"], json.loads(body)) == (200, "application/json",
                                                                    {"plain": True})
    status, _, body = call(server, api_id, "/text")
    assert (status, body) == (200, b"just text")
    status, headers, body = call(server, api_id, "/binary")
    assert status == 200 and body == bytes(range(256))
    # A binary request body reaches the function base64-encoded.
    status, _, body = call(server, api_id, "/upload", method="PUT", body=bytes(range(256)),
                           headers={"Content-Type": "application/octet-stream"})
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == bytes(range(256))
    assert event["pathParameters"] == {"proxy": "upload"}


def test_payload_v1_event(server, apigw, echo_arn):
    api_id = make_api(apigw, [("GET /v1/{name}", echo_arn, "1.0")])
    status, _, body = call(server, api_id, "/v1/bob?x=1&x=2", headers={"X-A": "1"})
    assert status == 200, body
    event = json.loads(body)
    assert event["version"] == "1.0"
    assert event["resource"] == "/v1/{name}"
    assert event["path"] == "/v1/bob"
    assert event["httpMethod"] == "GET"
    assert event["queryStringParameters"] == {"x": "2"}
    assert event["multiValueQueryStringParameters"] == {"x": ["1", "2"]}
    assert event["multiValueHeaders"]["x-a"] == ["1"]
    assert event["pathParameters"] == {"name": "bob"}
    assert event["stageVariables"] is None and event["body"] is None
    assert event["requestContext"]["resourcePath"] == "/v1/{name}"
    assert event["requestContext"]["httpMethod"] == "GET"


def test_route_priority_and_not_found(server, apigw, echo_arn):
    api_id = make_api(apigw, [
        ("GET /pets/{id}", echo_arn, "2.0"),
        ("GET /pets/dog", echo_arn, "2.0"),
        ("ANY /pets/{id}", echo_arn, "2.0"),
        ("ANY /{proxy+}", echo_arn, "2.0"),
    ])
    def route_of(method, path):
        status, _, body = call(server, api_id, path, method=method)
        return status, (json.loads(body).get("routeKey") if status == 200 else json.loads(body))
    assert route_of("GET", "/pets/dog") == (200, "GET /pets/dog")
    assert route_of("GET", "/pets/7") == (200, "GET /pets/{id}")
    assert route_of("DELETE", "/pets/7") == (200, "ANY /pets/{id}")
    assert route_of("GET", "/other/deep/path") == (200, "ANY /{proxy+}")
    plain = make_api(apigw, [("GET /only", echo_arn, "2.0")])
    status, _, body = call(server, plain, "/missing")
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})
    status, _, body = call(server, "nosuchapi", "/x")
    assert (status, json.loads(body)) == (404, {"message": "Not Found"})


def test_named_stage_with_variables_and_deployments(server, apigw, echo_arn):
    api_id = apigw.create_api(Name=unique("api"), ProtocolType="HTTP")["ApiId"]
    integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                     IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    apigw.create_route(ApiId=api_id, RouteKey="GET /hello",
                       Target=f"integrations/{integ['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="prod", StageVariables={"color": "blue"})
    # Not deployed yet: nothing answers.
    assert call(server, api_id, "/prod/hello")[0] == 404
    apigw.create_deployment(ApiId=api_id, StageName="prod")
    status, _, body = call(server, api_id, "/prod/hello")
    assert status == 200, body
    event = json.loads(body)
    assert event["requestContext"]["stage"] == "prod"
    assert event["stageVariables"] == {"color": "blue"}
    assert event["rawPath"] == "/hello"
    # A route added later is not served until the next deployment.
    apigw.create_route(ApiId=api_id, RouteKey="GET /later",
                       Target=f"integrations/{integ['IntegrationId']}")
    assert call(server, api_id, "/prod/later")[0] == 404
    apigw.create_deployment(ApiId=api_id, StageName="prod")
    assert call(server, api_id, "/prod/later")[0] == 200


def test_quick_create(server, apigw, echo_arn):
    api = apigw.create_api(Name=unique("quick"), ProtocolType="HTTP", Target=echo_arn)
    routes = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    assert [r["RouteKey"] for r in routes] == ["$default"]
    stages = apigw.get_stages(ApiId=api["ApiId"])["Items"]
    assert [(s["StageName"], s["AutoDeploy"]) for s in stages] == [("$default", True)]
    status, _, body = call(server, api["ApiId"], "/anything/at/all", method="PATCH", host=True)
    assert status == 200
    assert json.loads(body)["routeKey"] == "$default"


def test_function_errors_and_malformed_responses_are_502(server, apigw, lam):
    failing = create_function(lam, unique("fail"), {"app.py": FAILING})["FunctionArn"]
    malformed = create_function(lam, unique("bad"), {"app.py": MALFORMED_V1})["FunctionArn"]
    api_id = make_api(apigw, [("GET /fail", failing, "2.0"), ("GET /bad", malformed, "1.0"),
                              ("GET /gone", "arn:aws:lambda:us-east-1:123456789012:function:nope",
                               "2.0")])
    assert call(server, api_id, "/fail")[::2] == (502, b'{"message":"Internal Server Error"}')
    assert call(server, api_id, "/bad")[::2] == (502, b'{"message":"Internal Server Error"}')
    assert call(server, api_id, "/gone")[0] == 500


def test_integration_timeout_is_503(server, apigw, lam):
    slow = create_function(lam, unique("slow"), {"app.py": SLOW})["FunctionArn"]
    api_id = make_api(apigw, [("GET /slow", slow, "2.0", {"TimeoutInMillis": 500})])
    status, _, body = call(server, api_id, "/slow")
    assert (status, json.loads(body)) == (503, {"message": "Service Unavailable"})


def test_cors_preflight_and_headers(server, apigw, echo_arn):
    api_id = make_api(apigw, [("GET /c", echo_arn, "2.0")], CorsConfiguration={
        "AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"],
        "AllowHeaders": ["content-type", "x-token"], "ExposeHeaders": ["x-echo"],
        "MaxAge": 300, "AllowCredentials": True})
    status, headers, _ = call(server, api_id, "/c", method="OPTIONS", headers={
        "Origin": "https://example.com", "Access-Control-Request-Method": "POST"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "https://example.com"
    assert headers["access-control-allow-methods"] == "GET,POST"
    assert headers["access-control-allow-headers"] == "content-type,x-token"
    assert headers["access-control-max-age"] == "300"
    assert headers["access-control-allow-credentials"] == "true"
    status, headers, _ = call(server, api_id, "/c", headers={"Origin": "https://example.com"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://example.com"
    assert headers["access-control-expose-headers"] == "x-echo"
    _, headers, _ = call(server, api_id, "/c", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def test_lambda_authorizer_simple_responses_with_cache(server, apigw, lam, echo_arn):
    auth_fn = unique("auth")
    auth_arn = create_function(lam, auth_fn, {"app.py": AUTH_SIMPLE})["FunctionArn"]
    api_id = make_api(apigw, [])
    authorizer = apigw.create_authorizer(
        ApiId=api_id, AuthorizerType="REQUEST", Name="simple",
        AuthorizerUri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{auth_arn}/invocations",
        AuthorizerPayloadFormatVersion="2.0", EnableSimpleResponses=True,
        IdentitySource=["$request.header.Authorization"], AuthorizerResultTtlInSeconds=300)
    integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                     IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    apigw.create_route(ApiId=api_id, RouteKey="GET /secret", AuthorizationType="CUSTOM",
                       AuthorizerId=authorizer["AuthorizerId"],
                       Target=f"integrations/{integ['IntegrationId']}")
    status, _, body = call(server, api_id, "/secret")
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    status, _, body = call(server, api_id, "/secret", headers={"Authorization": "wrong"})
    assert (status, json.loads(body)) == (403, {"message": "Forbidden"})
    status, _, body = call(server, api_id, "/secret", headers={"Authorization": "let-me-in"})
    assert status == 200, body
    auth = json.loads(body)["requestContext"]["authorizer"]
    assert auth["lambda"]["user"] == "alice"
    first_calls = auth["lambda"]["calls"]
    # Cached by identity for the TTL: the authorizer does not run again.
    status, _, body = call(server, api_id, "/secret", headers={"Authorization": "let-me-in"})
    assert json.loads(body)["requestContext"]["authorizer"]["lambda"]["calls"] == first_calls


def test_lambda_authorizer_iam_policy(server, apigw, lam, echo_arn):
    auth_arn = create_function(lam, unique("policy"), {"app.py": AUTH_POLICY})["FunctionArn"]
    api_id = make_api(apigw, [])
    authorizer = apigw.create_authorizer(
        ApiId=api_id, AuthorizerType="REQUEST", Name="policy", AuthorizerUri=auth_arn,
        AuthorizerPayloadFormatVersion="2.0", IdentitySource=["$request.header.Authorization"])
    integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                     IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    apigw.create_route(ApiId=api_id, RouteKey="GET /admin", AuthorizationType="CUSTOM",
                       AuthorizerId=authorizer["AuthorizerId"],
                       Target=f"integrations/{integ['IntegrationId']}")
    assert call(server, api_id, "/admin", headers={"Authorization": "deny"})[0] == 403
    status, _, body = call(server, api_id, "/admin", headers={"Authorization": "allow"})
    assert status == 200, body
    auth = json.loads(body)["requestContext"]["authorizer"]
    assert auth["lambda"] == {"role": "admin"}


def start_durable(data_dir):
    """A server of our own on ``data_dir`` (not in memory), and a boto3 client factory."""
    import re
    import subprocess

    import boto3

    from conftest import ACCOUNT, REGION, tsumiki_bin

    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)

    def client(service):
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return proc, endpoint, client


class _Endpoint:
    def __init__(self, endpoint):
        self.endpoint = endpoint


def test_apis_and_function_urls_survive_kill_9(tmp_path):
    """Acknowledged API and function URL changes are durable: kill -9, restart on the same
    data directory, and the same URLs answer."""
    proc, endpoint, client = start_durable(tmp_path / "data")
    try:
        lam, apigw = client("lambda"), client("apigatewayv2")
        arn = create_function(lam, "durable-echo", {"app.py": ECHO})["FunctionArn"]
        api_id = make_api(apigw, [("GET /d/{x}", arn, "2.0")])
        apigw.create_stage(ApiId=api_id, StageName="named", StageVariables={"k": "v"})
        apigw.create_deployment(ApiId=api_id, StageName="named")
        url = lam.create_function_url_config(FunctionName="durable-echo",
                                             AuthType="NONE")["FunctionUrl"]
        assert call(_Endpoint(endpoint), api_id, "/d/1")[0] == 200
    finally:
        proc.kill()  # SIGKILL
        proc.wait()
    proc, endpoint, client = start_durable(tmp_path / "data")
    try:
        server = _Endpoint(endpoint)
        status, _, body = call(server, api_id, "/d/2")
        assert status == 200 and json.loads(body)["pathParameters"] == {"x": "2"}
        status, _, body = call(server, api_id, "/named/d/3")
        assert status == 200 and json.loads(body)["stageVariables"] == {"k": "v"}
        url_id = url.split("//")[1].split(".")[0]
        req = urllib.request.Request(f"{endpoint}/_aws/lambda-url/{url_id}/after")
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["rawPath"] == "/after"
        assert client("lambda").get_function_url_config(
            FunctionName="durable-echo")["FunctionUrl"] == url
    finally:
        proc.kill()
        proc.wait()
