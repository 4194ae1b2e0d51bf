"""API Gateway authorizers through boto3, called with a plain HTTP client: REST APIs' TOKEN
and REQUEST Lambda authorizers (identity sources, validation expressions, IAM policies with
wildcards, explicit and implicit denies, context passed on, TTL caching seen in the
authorizer's invocation count), and HTTP APIs' JWT authorizers against a locally served JWKS
with RS256 and ES256 tokens signed here."""

import base64
import http.server
import json
import threading
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT
from lambda_util import create_function, unique

ECHO = """
import json
def handler(event, context):
    return {"statusCode": 200, "body": json.dumps(event)}
"""

# Counts its own invocations in /tmp (one warm sandbox per function here).
COUNTER = """
import os
def count(context):
    path = "/tmp/auth-calls-" + context.function_name
    n = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(n + 1))
    return n + 1
"""

TOKEN_AUTH = COUNTER + """
def handler(event, context):
    n = count(context)
    assert event["type"] == "TOKEN"
    token = event["authorizationToken"]
    if token == "Bearer boom":
        raise Exception("Unauthorized")
    if token == "Bearer nobody":
        return {"principalId": "nobody", "policyDocument": {"Version": "2012-10-17", "Statement": []}}
    effect = "Deny" if token == "Bearer deny" else "Allow"
    api = event["methodArn"].split("/")[0]
    return {
        "principalId": "user-" + token.split()[1],
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": api + "/*/GET/*"}]},
        "context": {"calls": n, "admin": True, "who": token.split()[1]},
    }
"""

REQUEST_AUTH = COUNTER + """
def handler(event, context):
    n = count(context)
    assert event["type"] == "REQUEST"
    ok = (event["headers"].get("x-user") == "carol"
          and (event.get("queryStringParameters") or {}).get("tenant") == "t1")
    return {
        "principalId": "carol",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow" if ok else "Deny",
             "Resource": event["methodArn"]}]},
        "context": {"calls": n, "tenant": event["queryStringParameters"]["tenant"]},
    }
"""


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def rest(server):
    return server.client("apigateway")


@pytest.fixture(scope="module")
def echo_arn(lam):
    return create_function(lam, unique("authecho"), {"app.py": ECHO})["FunctionArn"]


def call(server, api_id, path, method="GET", body=None, headers=None):
    req = urllib.request.Request(f"{server.endpoint}/_aws/execute-api/{api_id}{path}",
                                 data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def lambda_uri(arn):
    return f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations"


def rest_method(rest, api_id, parent, part, method, arn, **auth):
    res = rest.create_resource(restApiId=api_id, parentId=parent, pathPart=part)
    rest.put_method(restApiId=api_id, resourceId=res["id"], httpMethod=method,
                    authorizationType=auth.pop("authorizationType", "NONE"), **auth)
    rest.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod=method,
                         type="AWS_PROXY", integrationHttpMethod="POST", uri=lambda_uri(arn))
    return res


def test_rest_token_authorizer(server, rest, lam, echo_arn):
    auth_arn = create_function(lam, unique("tokauth"), {"app.py": TOKEN_AUTH})["FunctionArn"]
    api = rest.create_rest_api(name=unique("tok"))
    api_id, root = api["id"], api["rootResourceId"]
    with pytest.raises(ClientError) as e:
        rest.create_authorizer(restApiId=api_id, name="bad", type="TOKEN",
                               authorizerUri=lambda_uri(auth_arn))
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as e:
        rest.create_authorizer(restApiId=api_id, name="long", type="TOKEN",
                               authorizerUri=lambda_uri(auth_arn),
                               identitySource="method.request.header.Authorization",
                               authorizerResultTtlInSeconds=3601)
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    a = rest.create_authorizer(restApiId=api_id, name="tok", type="TOKEN",
                               authorizerUri=lambda_uri(auth_arn),
                               identitySource="method.request.header.Authorization",
                               identityValidationExpression="Bearer [a-z]+")
    assert a["authorizerResultTtlInSeconds"] == 300
    assert rest.get_authorizer(restApiId=api_id, authorizerId=a["id"])["name"] == "tok"
    assert [x["id"] for x in rest.get_authorizers(restApiId=api_id)["items"]] == [a["id"]]
    with pytest.raises(ClientError) as e:
        rest_method(rest, api_id, root, "x", "GET", echo_arn,
                    authorizationType="CUSTOM", authorizerId="nope")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    secured = dict(authorizationType="CUSTOM", authorizerId=a["id"])
    rest_method(rest, api_id, root, "items", "GET", echo_arn, **secured)
    rest_method(rest, api_id, root, "write", "POST", echo_arn, **secured)
    rest.create_deployment(restApiId=api_id, stageName="prod")

    def go(token, path="/prod/items", method="GET"):
        headers = {"Authorization": token} if token else {}
        status, headers, body = call(server, api_id, path, method=method, headers=headers)
        return status, json.loads(body), headers

    status, body, headers = go(None)
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert headers["x-amzn-ErrorType"] == "UnauthorizedException"
    # Fails the validation expression: 401 without running the function.
    assert go("Bearer BAD1")[:2] == (401, {"message": "Unauthorized"})
    assert go("Bearer boom")[:2] == (401, {"message": "Unauthorized"})
    status, body, _ = go("Bearer deny")
    assert (status, body) == (
        403, {"message": "User is not authorized to access this resource with an explicit deny"})
    status, body, _ = go("Bearer nobody")
    assert (status, body) == (403, {"message": "User is not authorized to access this resource"})

    status, body, _ = go("Bearer alice")
    assert status == 200, body
    authorizer = body["requestContext"]["authorizer"]
    assert authorizer["principalId"] == "user-alice"
    assert authorizer["who"] == "alice" and authorizer["admin"] is True
    calls = authorizer["calls"]
    # Cached by token for the TTL: the function does not run again ...
    status, body, _ = go("Bearer alice")
    assert status == 200 and body["requestContext"]["authorizer"]["calls"] == calls
    # ... and the cached policy (GET only) is evaluated against each method's ARN.
    status, body, _ = go("Bearer alice", "/prod/write", "POST")
    assert status == 403, body
    # Another token runs the function again.
    status, body, _ = go("Bearer bob")
    assert status == 200 and body["requestContext"]["authorizer"]["calls"] == calls + 1

    # Without caching every request runs the function.
    rest.update_authorizer(restApiId=api_id, authorizerId=a["id"], patchOperations=[
        {"op": "replace", "path": "/authorizerResultTtlInSeconds", "value": "0"}])
    rest.create_deployment(restApiId=api_id, stageName="prod")
    first = go("Bearer carol")[1]["requestContext"]["authorizer"]["calls"]
    second = go("Bearer carol")[1]["requestContext"]["authorizer"]["calls"]
    assert second == first + 1

    # The access log sees the authorizer's output.
    logs = server.client("logs")
    group = unique("/tok/access")
    logs.create_log_group(logGroupName=group)
    rest.update_stage(restApiId=api_id, stageName="prod", patchOperations=[
        {"op": "replace", "path": "/accessLogSettings/destinationArn",
         "value": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{group}"},
        {"op": "replace", "path": "/accessLogSettings/format",
         "value": "$context.authorizer.principalId $context.authorizer.who $context.status"}])
    assert go("Bearer dan")[0] == 200
    assert go("Bearer deny")[0] == 403
    deadline = time.time() + 10
    while True:
        try:
            events = logs.get_log_events(logGroupName=group, logStreamName=f"{api_id}_prod")["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        if len(events) >= 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert sorted(e["message"] for e in events) == ["- - 403", "user-dan dan 200"]


def test_rest_request_authorizer(server, rest, lam, echo_arn):
    auth_arn = create_function(lam, unique("reqauth"), {"app.py": REQUEST_AUTH})["FunctionArn"]
    api = rest.create_rest_api(name=unique("req"))
    api_id, root = api["id"], api["rootResourceId"]
    a = rest.create_authorizer(
        restApiId=api_id, name="req", type="REQUEST", authorizerUri=lambda_uri(auth_arn),
        identitySource="method.request.header.X-User, method.request.querystring.tenant",
        authorizerResultTtlInSeconds=60)
    items = rest_method(rest, api_id, root, "items", "GET", echo_arn,
                        authorizationType="CUSTOM", authorizerId=a["id"])
    rest_method(rest, api_id, items["id"], "{id}", "GET", echo_arn,
                authorizationType="CUSTOM", authorizerId=a["id"])
    rest.create_deployment(restApiId=api_id, stageName="dev")

    # A missing identity source answers 401 without running the function.
    status, _, body = call(server, api_id, "/dev/items?tenant=t1")
    assert (status, json.loads(body)) == (401, {"message": "Unauthorized"})
    status, _, body = call(server, api_id, "/dev/items?tenant=t2", headers={"X-User": "carol"})
    assert status == 403, body
    status, _, body = call(server, api_id, "/dev/items?tenant=t1", headers={"X-User": "carol"})
    assert status == 200, body
    auth = json.loads(body)["requestContext"]["authorizer"]
    assert auth["principalId"] == "carol" and auth["tenant"] == "t1"
    # The policy names the first method's ARN only: the cached answer denies another path.
    status, _, body = call(server, api_id, "/dev/items/7?tenant=t1", headers={"X-User": "carol"})
    assert status == 403, body
    status, _, body = call(server, api_id, "/dev/items?tenant=t1", headers={"X-User": "carol"})
    assert json.loads(body)["requestContext"]["authorizer"]["calls"] == auth["calls"]


# --- HTTP APIs: JWT authorizers ---------------------------------------------------------------

def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n, size=None):
    return b64u(n.to_bytes(size or (n.bit_length() + 7) // 8, "big"))


def sign(key, kid, claims):
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    head = b64u(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = b64u(json.dumps(claims).encode())
    msg = f"{head}.{body}".encode()
    if alg == "RS256":
        sig = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    else:
        r, s = utils.decode_dss_signature(key.sign(msg, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{head}.{body}.{b64u(sig)}"


@pytest.fixture(scope="module")
def issuer():
    """A local OpenID issuer serving its discovery document and JWKS; yields (url, keys)."""
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rn = rsa_key.public_key().public_numbers()
    en = ec_key.public_key().public_numbers()
    jwks = {"keys": [
        {"kty": "RSA", "kid": "rsa1", "use": "sig", "alg": "RS256", "n": uint(rn.n), "e": uint(rn.e)},
        {"kty": "EC", "kid": "ec1", "use": "sig", "crv": "P-256", "x": uint(en.x, 32), "y": uint(en.y, 32)},
    ]}
    fetches = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            fetches.append(self.path)
            base = f"http://127.0.0.1:{self.server.server_port}"
            if self.path == "/.well-known/openid-configuration":
                doc = {"issuer": base, "jwks_uri": base + "/keys"}
            elif self.path == "/keys":
                doc = jwks
            else:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield (f"http://127.0.0.1:{httpd.server_port}",
           {"rsa": rsa_key, "ec": ec_key, "fetches": fetches})
    httpd.shutdown()


@pytest.fixture(scope="module")
def apigw(server):
    return server.client("apigatewayv2")


def test_http_api_jwt_authorizer(server, apigw, echo_arn, issuer):
    url, keys = issuer
    api_id = apigw.create_api(Name=unique("jwt"), ProtocolType="HTTP")["ApiId"]
    with pytest.raises(ClientError) as e:
        apigw.create_authorizer(ApiId=api_id, AuthorizerType="JWT", Name="bad",
                                IdentitySource=["$request.header.Authorization"],
                                JwtConfiguration={"Audience": ["app"]})
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    a = apigw.create_authorizer(ApiId=api_id, AuthorizerType="JWT", Name="jwt",
                                IdentitySource=["$request.header.Authorization"],
                                JwtConfiguration={"Issuer": url, "Audience": ["app", "cli"]})
    v2 = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                  IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    v1 = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                  IntegrationUri=echo_arn, PayloadFormatVersion="1.0")
    secured = dict(AuthorizationType="JWT", AuthorizerId=a["AuthorizerId"])
    apigw.create_route(ApiId=api_id, RouteKey="GET /me", **secured,
                       Target=f"integrations/{v2['IntegrationId']}")
    apigw.create_route(ApiId=api_id, RouteKey="GET /v1", **secured,
                       Target=f"integrations/{v1['IntegrationId']}")
    apigw.create_route(ApiId=api_id, RouteKey="POST /items", **secured,
                       AuthorizationScopes=["items:write", "admin"],
                       Target=f"integrations/{v2['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    now = int(time.time())
    good = {"iss": url, "aud": "app", "sub": "alice", "exp": now + 600, "iat": now,
            "scope": "items:read profile", "groups": ["a", "b"]}

    def go(token, path="/me", method="GET"):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        status, headers, body = call(server, api_id, path, method=method, headers=headers)
        return status, headers, json.loads(body)

    status, headers, body = go(None)
    assert (status, body) == (401, {"message": "Unauthorized"})
    assert 'error="invalid_token"' in headers["www-authenticate"]

    status, _, body = go(sign(keys["rsa"], "rsa1", good))
    assert status == 200, body
    jwt = body["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"]["sub"] == "alice"
    # AWS hands claims on as strings.
    assert jwt["claims"]["exp"] == str(now + 600) and jwt["claims"]["groups"] == "[a b]"
    assert jwt["scopes"] == ["items:read", "profile"]
    status, _, body = go(sign(keys["ec"], "ec1", {**good, "sub": "eve"}))
    assert status == 200 and body["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] == "eve"
    # Payload 1.0 puts claims and scopes straight under the authorizer.
    status, _, body = go(sign(keys["rsa"], "rsa1", good), "/v1")
    assert status == 200 and body["requestContext"]["authorizer"]["claims"]["sub"] == "alice"
    # An access token naming the audience in client_id passes too.
    no_aud = {k: v for k, v in good.items() if k != "aud"}
    assert go(sign(keys["rsa"], "rsa1", {**no_aud, "client_id": "cli"}))[0] == 200

    for bad in ({**good, "exp": now - 10}, {**good, "aud": "other"}, {**good, "iss": url + "/x"},
                {**good, "nbf": now + 600}, no_aud):
        status, _, body = go(sign(keys["rsa"], "rsa1", bad))
        assert (status, body) == (401, {"message": "Unauthorized"}), bad
    # Signed by a key the issuer does not publish, under a published kid.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert go(sign(stranger, "rsa1", good))[0] == 401
    assert go(sign(stranger, "nope", good))[0] == 401
    assert go("not.a.jwt")[0] == 401

    # Scopes: one of the route's scopes is needed.
    status, _, body = go(sign(keys["rsa"], "rsa1", good), "/items", "POST")
    assert (status, body) == (403, {"message": "Forbidden"})
    writer = {**good, "scope": "items:write"}
    assert go(sign(keys["ec"], "ec1", writer), "/items", "POST")[0] == 200
    # The JWKS was fetched once (then kept), plus refetches for the unknown kid.
    assert keys["fetches"].count("/keys") <= 2


KEY_AUTH = """
def handler(event, context):
    return {
        "principalId": "tenant",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": event["methodArn"]}]},
        "usageIdentifierKey": event["headers"].get("x-tenant-key", ""),
    }
"""


def test_rest_api_key_from_authorizer(server, rest, lam, echo_arn):
    """With apiKeySource AUTHORIZER the key is the authorizer's usageIdentifierKey."""
    auth_arn = create_function(lam, unique("keyauth"), {"app.py": KEY_AUTH})["FunctionArn"]
    api = rest.create_rest_api(name=unique("keysrc"), apiKeySource="AUTHORIZER")
    api_id = api["id"]
    a = rest.create_authorizer(restApiId=api_id, name="k", type="REQUEST",
                               authorizerUri=lambda_uri(auth_arn), authorizerResultTtlInSeconds=0)
    res = rest.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="t")
    rest.put_method(restApiId=api_id, resourceId=res["id"], httpMethod="GET",
                    authorizationType="CUSTOM", authorizerId=a["id"], apiKeyRequired=True)
    rest.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod="GET",
                         type="AWS_PROXY", integrationHttpMethod="POST", uri=lambda_uri(echo_arn))
    rest.create_deployment(restApiId=api_id, stageName="p")
    key = rest.create_api_key(name=unique("tenant"), enabled=True)
    plan = rest.create_usage_plan(name=unique("tp"), apiStages=[{"apiId": api_id, "stage": "p"}])
    rest.create_usage_plan_key(usagePlanId=plan["id"], keyId=key["id"], keyType="API_KEY")
    # The x-api-key header does not count with this key source.
    status, _, _ = call(server, api_id, "/p/t", headers={"x-api-key": key["value"]})
    assert status == 403
    status, _, body = call(server, api_id, "/p/t", headers={"x-tenant-key": key["value"]})
    assert status == 200, body
    assert json.loads(body)["requestContext"]["authorizer"]["principalId"] == "tenant"


HTTP_V1_AUTH = COUNTER + """
def handler(event, context):
    n = count(context)
    assert event["version"] == "1.0" and event["type"] == "REQUEST"
    token = event["headers"].get("authorization")
    if token == "raise":
        raise Exception("Unauthorized")
    effect = "Allow" if token == "ok" else "Deny"
    return {
        "principalId": "dave",
        "policyDocument": {"Version": "2012-10-17", "Statement": [
            {"Action": "execute-api:Invoke", "Effect": effect, "Resource": event["methodArn"]}]},
        "context": {"calls": n, "source": event["identitySource"]},
    }
"""


def test_http_api_lambda_authorizer_payload_1(server, apigw, lam, echo_arn):
    auth_arn = create_function(lam, unique("v1auth"), {"app.py": HTTP_V1_AUTH})["FunctionArn"]
    api_id = apigw.create_api(Name=unique("v1auth"), ProtocolType="HTTP")["ApiId"]
    with pytest.raises(ClientError) as e:
        apigw.create_authorizer(ApiId=api_id, AuthorizerType="REQUEST", Name="bad",
                                AuthorizerUri=auth_arn, AuthorizerPayloadFormatVersion="1.0",
                                EnableSimpleResponses=True,
                                IdentitySource=["$request.header.Authorization"])
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    a = apigw.create_authorizer(ApiId=api_id, AuthorizerType="REQUEST", Name="v1",
                                AuthorizerUri=auth_arn, AuthorizerPayloadFormatVersion="1.0",
                                IdentitySource=["$request.header.Authorization"],
                                AuthorizerResultTtlInSeconds=300)
    integ = apigw.create_integration(ApiId=api_id, IntegrationType="AWS_PROXY",
                                     IntegrationUri=echo_arn, PayloadFormatVersion="2.0")
    apigw.create_route(ApiId=api_id, RouteKey="GET /v1", AuthorizationType="CUSTOM",
                       AuthorizerId=a["AuthorizerId"],
                       Target=f"integrations/{integ['IntegrationId']}")
    apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True)

    def go(token):
        status, _, body = call(server, api_id, "/v1",
                               headers={"Authorization": token} if token else {})
        return status, json.loads(body)

    assert go(None) == (401, {"message": "Unauthorized"})
    assert go("raise") == (401, {"message": "Unauthorized"})
    assert go("nope") == (403, {"message": "Forbidden"})
    status, body = go("ok")
    assert status == 200, body
    auth = body["requestContext"]["authorizer"]
    assert auth["principalId"] == "dave" and auth["lambda"]["source"] == "ok"
    status, body = go("ok")
    assert body["requestContext"]["authorizer"]["lambda"]["calls"] == auth["lambda"]["calls"]
