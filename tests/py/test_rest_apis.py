"""API Gateway REST APIs (apigateway v1) through boto3, called with a plain HTTP client:
resources with path parts and {proxy+}, methods, AWS_PROXY integrations with the 1.0 proxy
event, deployments and stages, and REST APIs' own error answers."""

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_util import create_function, unique

ECHO = """
import json, time
def handler(event, context):
    if event["path"] == "/boom":
        raise RuntimeError("boom")
    if event["path"] == "/slow":
        time.sleep(3)
    return {"statusCode": 200, "headers": {"x-rest": "1"},
            "multiValueHeaders": {"x-many": ["a", "b"]}, "body": json.dumps(event)}
"""


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def apigw(server):
    return server.client("apigateway")


@pytest.fixture(scope="module")
def echo_arn(lam):
    return create_function(lam, unique("restecho"), {"app.py": ECHO})["FunctionArn"]


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


def add(apigw, api_id, parent, part, method, arn, **integration):
    res = apigw.create_resource(restApiId=api_id, parentId=parent, pathPart=part)
    apigw.put_method(restApiId=api_id, resourceId=res["id"], httpMethod=method,
                     authorizationType="NONE")
    apigw.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod=method,
                          type="AWS_PROXY", integrationHttpMethod="POST",
                          uri=lambda_uri(arn), **integration)
    return res


def test_rest_api_proxy_event_and_stages(server, apigw, echo_arn):
    api = apigw.create_rest_api(name=unique("rest"))
    api_id, root = api["id"], api["rootResourceId"]
    assert any(a["id"] == api_id for a in apigw.get_rest_apis()["items"])
    items = add(apigw, api_id, root, "items", "GET", echo_arn)
    item = add(apigw, api_id, items["id"], "{id}", "ANY", echo_arn)
    assert item["path"] == "/items/{id}"
    add(apigw, api_id, root, "{proxy+}", "ANY", echo_arn)
    for p in ("boom", "slow"):
        add(apigw, api_id, root, p, "GET", echo_arn, timeoutInMillis=500)
    paths = sorted(r["path"] for r in apigw.get_resources(restApiId=api_id)["items"])
    assert paths == ["/", "/boom", "/items", "/items/{id}", "/slow", "/{proxy+}"]
    with pytest.raises(ClientError) as e:
        apigw.create_resource(restApiId=api_id, parentId=root, pathPart="items")
    assert e.value.response["Error"]["Code"] == "ConflictException"
    method = apigw.get_method(restApiId=api_id, resourceId=item["id"], httpMethod="ANY")
    assert method["methodIntegration"]["type"] == "AWS_PROXY"
    assert method["methodIntegration"]["timeoutInMillis"] == 29000

    # Nothing answers before a deployment.
    assert call(server, api_id, "/dev/items")[0] == 404
    apigw.create_deployment(restApiId=api_id, stageName="dev", variables={"color": "red"})
    assert apigw.get_stage(restApiId=api_id, stageName="dev")["variables"] == {"color": "red"}

    status, headers, body = call(server, api_id, "/dev/items/42?q=1&q=2", method="DELETE",
                                 headers={"X-Test": "yes"})
    assert status == 200, body
    assert headers["x-rest"] == "1" and headers.get_all("x-many") == ["a", "b"]
    event = json.loads(body)
    assert event["resource"] == "/items/{id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "DELETE"
    assert event["pathParameters"] == {"id": "42"}
    assert event["queryStringParameters"] == {"q": "2"}
    assert event["multiValueQueryStringParameters"] == {"q": ["1", "2"]}
    assert event["multiValueHeaders"]["x-test"] == ["yes"]
    assert event["stageVariables"] == {"color": "red"}
    rc = event["requestContext"]
    assert rc["resourcePath"] == "/items/{id}" and rc["resourceId"] == item["id"]
    assert rc["stage"] == "dev" and rc["path"] == "/dev/items/42"

    status, _, body = call(server, api_id, "/dev/items")
    assert status == 200 and json.loads(body)["resource"] == "/items"
    status, _, body = call(server, api_id, "/dev/a/b/c", method="PUT", body=b"x")
    event = json.loads(body)
    assert event["resource"] == "/{proxy+}" and event["pathParameters"] == {"proxy": "a/b/c"}
    # The root has no method (and {proxy+} needs a segment): REST APIs answer 403.
    status, _, body = call(server, api_id, "/dev/")
    assert (status, json.loads(body)) == (403, {"message": "Missing Authentication Token"})
    assert call(server, api_id, "/nostage/items")[0] == 404
    status, _, body = call(server, api_id, "/dev/boom")
    assert (status, json.loads(body)) == (502, {"message": "Internal server error"})
    status, _, body = call(server, api_id, "/dev/slow")
    assert (status, json.loads(body)) == (504, {"message": "Endpoint request timed out"})


def test_rest_api_lifecycle_errors(apigw):
    api = apigw.create_rest_api(name=unique("rest"))
    with pytest.raises(ClientError) as e:
        apigw.create_deployment(restApiId=api["id"], stageName="x")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    with pytest.raises(ClientError) as e:
        apigw.create_resource(restApiId=api["id"], parentId=api["rootResourceId"],
                              pathPart="{bad")
    assert e.value.response["Error"]["Code"] == "BadRequestException"
    apigw.delete_rest_api(restApiId=api["id"])
    with pytest.raises(ClientError) as e:
        apigw.get_rest_api(restApiId=api["id"])
    assert e.value.response["Error"]["Code"] == "NotFoundException"
