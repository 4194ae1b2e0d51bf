"""Lambda function URLs through boto3, called with a plain HTTP client: the config operations,
the payload format 2.0 event, AWS_IAM, CORS, aliases, errors."""

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from lambda_util import create_function, unique

ECHO = """
import json
def handler(event, context):
    if event["rawPath"] == "/fail":
        raise ValueError("nope")
    return {"statusCode": 201, "headers": {"x-fn": "1"}, "cookies": ["a=1"],
            "body": json.dumps(event)}
"""


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def echo(lam):
    name = unique("url")
    create_function(lam, name, {"app.py": ECHO})
    return name


def fetch(url, method="GET", body=None, headers=None, host=None):
    headers = dict(headers or {})
    if host:
        headers["Host"] = host
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def via_server(server, function_url, path="/", **kwargs):
    """Calls a function URL through the server's address with the URL's Host header."""
    host = urllib.parse.urlparse(function_url).hostname
    return fetch(server.endpoint + path, host=host, **kwargs)


def test_config_lifecycle(lam, echo):
    created = lam.create_function_url_config(FunctionName=echo, AuthType="NONE",
                                             Cors={"AllowOrigins": ["*"]})
    url = created["FunctionUrl"]
    assert url.startswith("http://") and ".lambda-url.us-east-1.localhost:" in url
    assert created["AuthType"] == "NONE" and created["Cors"] == {"AllowOrigins": ["*"]}
    assert created["FunctionArn"].endswith(f":function:{echo}")
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName=echo, AuthType="NONE")
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    got = lam.get_function_url_config(FunctionName=echo)
    assert got["FunctionUrl"] == url and "LastModifiedTime" in got
    updated = lam.update_function_url_config(FunctionName=echo, AuthType="AWS_IAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["FunctionUrl"] == url
    listed = lam.list_function_url_configs(FunctionName=echo)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [url]
    lam.delete_function_url_config(FunctionName=echo)
    with pytest.raises(ClientError) as e:
        lam.get_function_url_config(FunctionName=echo)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_invocation_event_and_response(server, lam, echo):
    url = lam.create_function_url_config(FunctionName=echo, AuthType="NONE")["FunctionUrl"]
    try:
        status, headers, body = via_server(
            server, url, "/some/path?x=1&x=2", method="POST", body=b"hello",
            headers={"Content-Type": "text/plain", "Cookie": "k=v"})
        assert status == 201, body
        assert headers["x-fn"] == "1" and headers.get_all("set-cookie") == ["a=1"]
        event = json.loads(body)
        assert event["version"] == "2.0" and event["routeKey"] == "$default"
        assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "x=1&x=2"
        assert event["queryStringParameters"] == {"x": "1,2"}
        assert event["cookies"] == ["k=v"] and event["body"] == "hello"
        rc = event["requestContext"]
        assert rc["accountId"] == "anonymous"
        assert rc["apiId"] == urllib.parse.urlparse(url).hostname.split(".")[0]
        assert rc["http"]["method"] == "POST" and rc["http"]["path"] == "/some/path"
        # The same URL by path, and a function error as a 502.
        url_id = rc["apiId"]
        status, _, body = fetch(f"{server.endpoint}/_aws/lambda-url/{url_id}/by/path")
        assert status == 201 and json.loads(body)["rawPath"] == "/by/path"
        status, _, body = fetch(f"{server.endpoint}/_aws/lambda-url/{url_id}/fail")
        assert (status, body) == (502, b"Internal Server Error")
        assert fetch(f"{server.endpoint}/_aws/lambda-url/nosuchurl/")[0] == 403
    finally:
        lam.delete_function_url_config(FunctionName=echo)


def test_aws_iam_requires_a_signature(server, lam, echo):
    url = lam.create_function_url_config(FunctionName=echo, AuthType="AWS_IAM")["FunctionUrl"]
    try:
        assert via_server(server, url, "/")[0] == 403
        host = urllib.parse.urlparse(url).hostname
        req = AWSRequest(method="GET", url=server.endpoint + "/signed", headers={"Host": host})
        SigV4Auth(Credentials("123456789012", "secret"), "lambda", "us-east-1").add_auth(req)
        status, _, body = fetch(server.endpoint + "/signed", headers=dict(req.headers.items()))
        assert status == 201, body
        assert json.loads(body)["requestContext"]["accountId"] == "123456789012"
    finally:
        lam.delete_function_url_config(FunctionName=echo)


def test_cors_and_alias_urls(server, lam, echo):
    version = lam.publish_version(FunctionName=echo)["Version"]
    lam.create_alias(FunctionName=echo, Name="live", FunctionVersion=version)
    url = lam.create_function_url_config(
        FunctionName=echo, Qualifier="live", AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET"],
              "MaxAge": 60})["FunctionUrl"]
    assert lam.get_function_url_config(FunctionName=echo, Qualifier="live")["FunctionArn"] \
        .endswith(f":function:{echo}:live")
    with pytest.raises(ClientError):
        lam.get_function_url_config(FunctionName=echo)
    status, headers, _ = via_server(server, url, "/", method="OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert headers["access-control-allow-methods"] == "GET"
    assert headers["access-control-max-age"] == "60"
    status, headers, _ = via_server(server, url, "/x", headers={"Origin": "https://app.example"})
    assert status == 201 and headers["access-control-allow-origin"] == "https://app.example"
    lam.delete_function_url_config(FunctionName=echo, Qualifier="live")
