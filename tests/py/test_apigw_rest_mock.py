"""REST APIs' MOCK integrations with integration responses (selection patterns, response
templates in tsumiki's VTL subset, header mappings) and HTTP_PROXY integrations, through boto3
and a plain HTTP client."""

import http.server
import json
import threading
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_util import create_function, unique


@pytest.fixture(scope="module")
def rest(server):
    return server.client("apigateway")


def call(server, api_id, path, method="GET", body=None, headers=None):
    req = urllib.request.Request(f"{server.endpoint}/_aws/execute-api/{api_id}{path}",
                                 data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_mock_integration_responses(server, rest):
    api = rest.create_rest_api(name=unique("mock"))
    api_id, root = api["id"], api["rootResourceId"]
    items = rest.create_resource(restApiId=api_id, parentId=root, pathPart="items")
    item = rest.create_resource(restApiId=api_id, parentId=items["id"], pathPart="{id}")
    rid = item["id"]
    rest.put_method(restApiId=api_id, resourceId=rid, httpMethod="GET", authorizationType="NONE")
    rest.put_integration(
        restApiId=api_id, resourceId=rid, httpMethod="GET", type="MOCK",
        passthroughBehavior="NEVER",
        requestTemplates={"application/json":
                          "#if($input.params('fail') == 'yes'){\"statusCode\": 503}"
                          "#else{\"statusCode\": 200}#end"})
    rest.put_method_response(restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="200",
                             responseParameters={"method.response.header.X-Mock": False})
    rest.put_method_response(restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="503")
    ok = rest.put_integration_response(
        restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="200",
        responseParameters={"method.response.header.X-Mock": "'yes'",
                            "method.response.header.X-Stage": "context.stage"},
        responseTemplates={"application/json":
                           '{"id": "$input.params(\'id\')", "stage": "$context.stage", '
                           '"requestId": "$context.requestId", '
                           '"q": "$util.escapeJavaScript($input.params(\'q\'))"}'})
    assert ok["statusCode"] == "200"
    rest.put_integration_response(
        restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="503",
        selectionPattern="5\\d{2}", responseTemplates={"application/json": '{"error": "down"}'})
    got = rest.get_integration_response(restApiId=api_id, resourceId=rid, httpMethod="GET",
                                        statusCode="503")
    assert got["selectionPattern"] == "5\\d{2}"
    assert rest.get_method_response(restApiId=api_id, resourceId=rid, httpMethod="GET",
                                    statusCode="200")["statusCode"] == "200"
    method = rest.get_method(restApiId=api_id, resourceId=rid, httpMethod="GET")
    assert set(method["methodIntegration"]["integrationResponses"]) == {"200", "503"}
    with pytest.raises(ClientError) as e:
        rest.put_integration_response(restApiId=api_id, resourceId=items["id"], httpMethod="GET",
                                      statusCode="200")
    assert e.value.response["Error"]["Code"] == "NotFoundException"

    # A method whose MOCK has no integration response at all.
    rest.put_method(restApiId=api_id, resourceId=items["id"], httpMethod="GET",
                    authorizationType="NONE")
    rest.put_integration(restApiId=api_id, resourceId=items["id"], httpMethod="GET", type="MOCK",
                         requestTemplates={"application/json": '{"statusCode": 200}'})
    rest.create_deployment(restApiId=api_id, stageName="test")

    status, headers, body = call(server, api_id, "/test/items/42?q=a%22b%2Fc")
    assert status == 200, body
    assert headers["X-Mock"] == "yes" and headers["X-Stage"] == "test"
    doc = json.loads(body)
    assert doc["id"] == "42" and doc["stage"] == "test" and doc["requestId"]
    # escapeJavaScript escaped the quote and the slash; the JSON decodes back to the value.
    assert doc["q"] == 'a"b/c' and b'a\\"b\\/c' in body
    status, _, body = call(server, api_id, "/test/items/42?fail=yes")
    assert (status, json.loads(body)) == (503, {"error": "down"})
    # passthroughBehavior NEVER and no template for the media type.
    status, _, body = call(server, api_id, "/test/items/42", method="GET",
                           headers={"Content-Type": "text/plain"})
    assert (status, json.loads(body)) == (415, {"message": "Unsupported Media Type"})
    status, _, body = call(server, api_id, "/test/items")
    assert (status, json.loads(body)) == (500, {"message": "Internal server error"})


@pytest.fixture(scope="module")
def backend():
    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            n = int(self.headers.get("content-length") or 0)
            data = json.dumps({"method": self.command, "path": self.path,
                               "headers": {k.lower(): v for k, v in self.headers.items()},
                               "body": self.rfile.read(n).decode()}).encode()
            self.send_response(207)
            self.send_header("content-type", "application/json")
            self.send_header("x-backend", "1")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = answer

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_http_proxy_integration(server, rest, backend):
    api = rest.create_rest_api(name=unique("httpproxy"))
    api_id, root = api["id"], api["rootResourceId"]
    res = rest.create_resource(restApiId=api_id, parentId=root, pathPart="{proxy+}")
    rest.put_method(restApiId=api_id, resourceId=res["id"], httpMethod="ANY",
                    authorizationType="NONE")
    with pytest.raises(ClientError):
        rest.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod="ANY",
                             type="HTTP_PROXY", integrationHttpMethod="ANY")
    rest.put_integration(restApiId=api_id, resourceId=res["id"], httpMethod="ANY",
                         type="HTTP_PROXY", integrationHttpMethod="ANY",
                         uri=backend + "/base/{proxy}")
    rest.create_deployment(restApiId=api_id, stageName="v1")
    status, headers, body = call(server, api_id, "/v1/a/b?x=1&y=2", method="POST", body=b"hi",
                                 headers={"X-Custom": "c"})
    assert status == 207 and headers["x-backend"] == "1"
    seen = json.loads(body)
    assert seen["method"] == "POST" and seen["path"] == "/base/a/b?x=1&y=2"
    assert seen["headers"]["x-custom"] == "c" and seen["body"] == "hi"


def test_http_custom_integration(server, rest, backend):
    """HTTP (non-proxy): the request template is the backend's body, the backend's status picks
    the integration response, whose template reads the backend's answer."""
    api = rest.create_rest_api(name=unique("httpcustom"))
    api_id = api["id"]
    res = rest.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="{id}")
    rid = res["id"]
    rest.put_method(restApiId=api_id, resourceId=rid, httpMethod="GET", authorizationType="NONE")
    rest.put_integration(restApiId=api_id, resourceId=rid, httpMethod="GET", type="HTTP",
                         integrationHttpMethod="POST", uri=backend + "/items/{id}",
                         requestTemplates={"application/json": '{"wanted": "$input.params(\'id\')"}'})
    rest.put_integration_response(
        restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="200",
        selectionPattern="2\\d{2}",
        responseParameters={"method.response.header.X-From": "integration.response.header.x-backend"},
        responseTemplates={"application/json":
                           '{"sent": $input.json(\'$.body\'), "method": "$input.path(\'$.method\')"}'})
    rest.create_deployment(restApiId=api_id, stageName="c")
    status, headers, body = call(server, api_id, "/c/7")
    assert status == 200, body
    assert headers["X-From"] == "1"
    doc = json.loads(body)
    assert doc["method"] == "POST" and json.loads(doc["sent"]) == {"wanted": "7"}


ADDER = """
def handler(event, context):
    if "a" not in event or event["a"] is None:
        raise ValueError("BadInput: a is missing")
    return {"sum": event["a"] + event["b"]}
"""


def test_lambda_custom_integration(server, rest):
    lam = server.client("lambda")
    arn = create_function(lam, unique("adder"), {"app.py": ADDER})["FunctionArn"]
    api = rest.create_rest_api(name=unique("awscustom"))
    api_id = api["id"]
    res = rest.create_resource(restApiId=api_id, parentId=api["rootResourceId"], pathPart="add")
    rid = res["id"]
    rest.put_method(restApiId=api_id, resourceId=rid, httpMethod="GET", authorizationType="NONE")
    rest.put_integration(
        restApiId=api_id, resourceId=rid, httpMethod="GET", type="AWS", integrationHttpMethod="POST",
        uri=f"arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/{arn}/invocations",
        requestTemplates={"application/json":
                          "#set($a = $input.params('a'))"
                          '{"a": #if($a != "")$a#{else}null#end, "b": $input.params(\'b\')}'})
    rest.put_integration_response(restApiId=api_id, resourceId=rid, httpMethod="GET",
                                  statusCode="200",
                                  responseTemplates={"application/json": '{"result": $input.path(\'$.sum\')}'})
    rest.put_integration_response(
        restApiId=api_id, resourceId=rid, httpMethod="GET", statusCode="400",
        selectionPattern="BadInput.*",
        responseTemplates={"application/json": '{"error": "$input.path(\'$.errorMessage\')"}'})
    with pytest.raises(ClientError) as e:
        rest.put_integration(restApiId=api_id, resourceId=rid, httpMethod="GET", type="AWS",
                             integrationHttpMethod="POST",
                             uri="arn:aws:apigateway:us-east-1:sqs:path/000000000000/q")
    assert e.value.response["Error"]["Code"] == "NotImplemented"
    rest.create_deployment(restApiId=api_id, stageName="c")
    status, _, body = call(server, api_id, "/c/add?a=2&b=3")
    assert (status, json.loads(body)) == (200, {"result": 5})
    status, _, body = call(server, api_id, "/c/add?b=3")
    assert (status, json.loads(body)) == (400, {"error": "BadInput: a is missing"})
