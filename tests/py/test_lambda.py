"""Lambda through boto3: the control plane (functions, versions, aliases, layers, concurrency,
tags, policies) and Invoke on real execution environments (python, nodejs, provided.al2023
with a shell bootstrap and with AWS's own awslambdaric).

Every assertion is about AWS's documented behaviour: the Lambda API reference for shapes and
error codes, the Runtime API for what a runtime sees, and AWS's runtimes for the payloads of
function errors. The module runs its own server (environments are processes of that server,
so they go away with it); tests use unique function names, and tests about account-wide
numbers use an account of their own (a 12-digit access key id acts in that account).
"""

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, Server
from lambda_util import (ROLE, code_sha256, create_function, error_of, invoke, log_tail,
                         make_zip, unique, wait_updated, zip_dir)

ARN_PREFIX = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
# The nodejs runtimes run on the machine's `node`, as the python ones run on its `python3`.
needs_node = pytest.mark.skipif(shutil.which("node") is None,
                                reason="the nodejs runtimes need `node` on the PATH")


# A python handler that reports what it sees; the event steers it.
PROBE_PY = r'''
import os
import time

COUNT = 0
ENV_KEYS = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_VERSION", "AWS_REGION",
            "AWS_DEFAULT_REGION", "_HANDLER", "LAMBDA_TASK_ROOT", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_RUNTIME_API", "AWS_ENDPOINT_URL", "MY_SETTING", "TZ"]


def handler(event, context):
    global COUNT
    COUNT += 1
    event = event if isinstance(event, dict) else {"value": event}
    if "print" in event:
        print(event["print"])
    if "sleep" in event:
        time.sleep(event["sleep"])
    if "raise" in event:
        raise ValueError(event["raise"])
    cc = context.client_context
    return {
        "event": event,
        "count": COUNT,
        "pid": os.getpid(),
        "cwd": os.getcwd(),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "client_custom": cc.custom if cc else None,
        "env": {k: os.environ.get(k) for k in ENV_KEYS},
    }
'''


NODE_CJS = r'''
exports.handler = async (event, context) => {
  if (event.raise) throw new Error(event.raise);
  console.log("node says", JSON.stringify(event));
  return {
    event,
    kind: "cjs",
    pid: process.pid,
    functionName: context.functionName,
    memoryLimitInMB: context.memoryLimitInMB,
    awsRequestId: context.awsRequestId,
    invokedFunctionArn: context.invokedFunctionArn,
    remaining: context.getRemainingTimeInMillis(),
    region: process.env.AWS_REGION,
    handlerEnv: process.env._HANDLER,
    custom: context.clientContext ? context.clientContext.custom : null,
  };
};
'''


NODE_ESM = r'''
export const handler = async (event, context) => ({
  event,
  kind: "esm",
  functionName: context.functionName,
  awsRequestId: context.awsRequestId,
});
'''


NODE_CALLBACK = r'''
exports.handler = (event, context, callback) => {
  setTimeout(() => {
    if (event.fail) callback(new Error("callback failure"));
    else callback(null, { doubled: event.n * 2, awsRequestId: context.awsRequestId });
  }, 10);
};
'''


@pytest.fixture(scope="module")
def lam_server(tmp_path_factory):
    s = Server.start(tmp_path_factory.mktemp("tsumiki-lambda"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def lam(lam_server):
    return lam_server.client("lambda")


@pytest.fixture(scope="module")
def probe(lam):
    """A python3.12 function shared by the tests that only read what it reports."""
    name = unique("probe")
    create_function(lam, name, {"app.py": PROBE_PY}, MemorySize=256,
                    Environment={"Variables": {"MY_SETTING": "from-config"}})
    return name


def account_client(server, account, service="lambda"):
    """A client acting in ``account`` (tsumiki takes a 12-digit access key id as the account)."""
    return server.client(service, access_key=account)


def function_error(resp, payload, error_type):
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == error_type, payload
    return payload


# --- control plane -----------------------------------------------------------------------


def test_create_get_and_states(lam):
    name = unique()
    zip_bytes = make_zip({"app.py": PROBE_PY})
    out = create_function(lam, name, zip_bytes, wait=False, Description="the probe",
                          MemorySize=512, Timeout=7, Tags={"team": "core"})
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert out["FunctionName"] == name
    assert out["FunctionArn"] == ARN_PREFIX + name
    assert out["Runtime"] == "python3.12"
    assert out["Handler"] == "app.handler"
    assert out["Role"] == ROLE
    assert out["MemorySize"] == 512
    assert out["Timeout"] == 7
    assert out["Description"] == "the probe"
    assert out["Version"] == "$LATEST"
    assert out["PackageType"] == "Zip"
    assert out["CodeSha256"] == code_sha256(zip_bytes)
    assert out["CodeSize"] == len(zip_bytes)
    assert out["State"] == "Pending"
    assert out["StateReasonCode"] == "Creating"
    assert out["LastUpdateStatus"] == "InProgress"

    lam.get_waiter("function_active_v2").wait(FunctionName=name,
                                              WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    got = lam.get_function(FunctionName=name)
    conf = got["Configuration"]
    assert conf["State"] == "Active"
    assert conf["LastUpdateStatus"] == "Successful"
    assert "StateReasonCode" not in conf
    assert conf["CodeSha256"] == code_sha256(zip_bytes)
    assert conf["CodeSize"] == len(zip_bytes)
    assert conf["LoggingConfig"]["LogGroup"] == f"/aws/lambda/{name}"
    assert got["Tags"] == {"team": "core"}
    assert got["Code"]["RepositoryType"] == "S3"

    same = lam.get_function_configuration(FunctionName=name)
    for key in ("FunctionArn", "CodeSha256", "RevisionId", "State", "MemorySize"):
        assert same[key] == conf[key]
    # Every name form reaches the same function.
    for ref in (ARN_PREFIX + name, f"{ACCOUNT}:function:{name}", f"{name}:$LATEST"):
        assert lam.get_function_configuration(FunctionName=ref)["FunctionArn"] == ARN_PREFIX + name


def test_get_function_code_location_downloads_the_package(lam):
    """More in test_lambda_code_location.py (versions, layers, tampering, expiry)."""
    name = unique()
    zip_bytes = make_zip({"app.py": PROBE_PY})
    create_function(lam, name, zip_bytes)
    got = lam.get_function(FunctionName=name)
    with urllib.request.urlopen(got["Code"]["Location"], timeout=10) as resp:
        assert code_sha256(resp.read()) == got["Configuration"]["CodeSha256"] == code_sha256(zip_bytes)


def test_list_functions_pages_with_marker(lam_server):
    lam = account_client(lam_server, "100000000001")
    names = sorted(unique("list") for _ in range(5))
    for n in names:
        create_function(lam, n, {"app.py": PROBE_PY}, wait=False)
    seen, marker, pages = [], None, 0
    while True:
        kwargs = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_functions(**kwargs)
        pages += 1
        assert len(page["Functions"]) <= 2
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == 3
    assert sorted(seen) == names
    via_paginator = [f["FunctionName"]
                     for p in lam.get_paginator("list_functions").paginate(
                         PaginationConfig={"PageSize": 2})
                     for f in p["Functions"]]
    assert sorted(via_paginator) == names


def test_list_functions_with_all_versions(lam_server):
    lam = account_client(lam_server, "100000000003")
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, Publish=True)
    latest_only = [f["FunctionArn"] for f in lam.list_functions()["Functions"]]
    assert latest_only == [ARN_PREFIX.replace(ACCOUNT, "100000000003") + name]
    every = lam.list_functions(FunctionVersion="ALL")["Functions"]
    assert sorted(f["Version"] for f in every) == ["$LATEST", "1"]


def test_update_code_and_configuration(lam):
    name = unique()
    create_function(lam, name, {"app.py": "def handler(e, c):\n    return 'one'\n"})
    before = lam.get_function_configuration(FunctionName=name)

    new_zip = make_zip({"app.py": "import os\ndef handler(e, c):\n"
                                  "    return ['two', os.environ.get('MY_SETTING')]\n"})
    out = lam.update_function_code(FunctionName=name, ZipFile=new_zip)
    assert out["LastUpdateStatus"] == "InProgress"
    assert out["CodeSha256"] == code_sha256(new_zip)
    assert out["CodeSize"] == len(new_zip)
    assert out["RevisionId"] != before["RevisionId"]
    wait_updated(lam, name)
    assert lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "Successful"
    assert invoke(lam, name, {})[1] == ["two", None]

    out = lam.update_function_configuration(
        FunctionName=name, MemorySize=1024, Timeout=12, Description="changed",
        Environment={"Variables": {"MY_SETTING": "v2"}})
    assert out["MemorySize"] == 1024
    assert out["Timeout"] == 12
    assert out["LastUpdateStatus"] == "InProgress"
    assert out["Environment"] == {"Variables": {"MY_SETTING": "v2"}}
    wait_updated(lam, name)
    conf = lam.get_function_configuration(FunctionName=name)
    assert (conf["MemorySize"], conf["Timeout"], conf["Description"]) == (1024, 12, "changed")
    # A configuration change reaches the next invocation (a fresh environment).
    assert invoke(lam, name, {})[1] == ["two", "v2"]

    # A stale RevisionId is refused (optimistic locking).
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName=name, Timeout=5,
                                          RevisionId=before["RevisionId"])
    assert error_of(e)[:2] == ("PreconditionFailedException", 412)


def test_delete_function(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY})
    out = lam.delete_function(FunctionName=name)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName=name)
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        lam.delete_function(FunctionName=name)
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


# --- errors ------------------------------------------------------------------------------


def test_unknown_function_is_not_found(lam):
    name = unique("missing")
    for call in (lambda: lam.get_function(FunctionName=name),
                 lambda: lam.get_function_configuration(FunctionName=name),
                 lambda: lam.invoke(FunctionName=name, Payload=b"{}"),
                 lambda: lam.update_function_configuration(FunctionName=name, Timeout=5)):
        with pytest.raises(ClientError) as e:
            call()
        code, status, resp = error_of(e)
        assert (code, status) == ("ResourceNotFoundException", 404)
        assert resp["Type"] == "User"
        assert f"function:{name}" in resp["Error"]["Message"]


def test_duplicate_create_conflicts(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, wait=False)
    with pytest.raises(ClientError) as e:
        create_function(lam, name, {"app.py": PROBE_PY}, wait=False)
    assert error_of(e)[:2] == ("ResourceConflictException", 409)


@pytest.mark.parametrize("change, needle", [
    ({"Runtime": "python3.7"}, "python3.7"),
    ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}}, "AWS_REGION"),
    ({"Environment": {"Variables": {"BIG": "x" * 4100}}}, "4KB"),
], ids=["deprecated-runtime", "reserved-env-key", "env-over-4kb"])
def test_invalid_parameters(lam, change, needle):
    args = dict(FunctionName=unique(), Runtime="python3.12", Role=ROLE, Handler="app.handler",
                Code={"ZipFile": make_zip({"app.py": PROBE_PY})})
    args.update(change)
    with pytest.raises(ClientError) as e:
        lam.create_function(**args)
    code, status, resp = error_of(e)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert needle in resp["Error"]["Message"]


def test_memory_above_10240_is_refused(lam):
    with pytest.raises(ClientError) as e:
        create_function(lam, unique(), {"app.py": PROBE_PY}, wait=False, MemorySize=10241)
    code, status, resp = error_of(e)
    # AWS answers 400 naming the 10240 MB limit.
    assert status == 400
    assert code in ("InvalidParameterValueException", "ValidationException")
    assert "10240" in resp["Error"]["Message"]
    # The limit itself is fine.
    create_function(lam, unique(), {"app.py": PROBE_PY}, wait=False, MemorySize=10240)


def test_bad_zip_is_refused(lam):
    with pytest.raises(ClientError) as e:
        create_function(lam, unique(), b"this is not a zip file", wait=False)
    code, status, resp = error_of(e)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "Could not unzip uploaded file" in resp["Error"]["Message"]


def test_invalid_json_payload(lam, probe):
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=probe, Payload=b"{not json")
    code, status, resp = error_of(e)
    assert (code, status) == ("InvalidRequestContentException", 400)
    assert resp["Error"]["Message"].startswith("Could not parse request body into json")


def test_payload_over_6mb(lam, probe):
    payload = json.dumps("x" * (6 * 1024 * 1024)).encode()
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=probe, Payload=payload)
    code, status, resp = error_of(e)
    assert (code, status) == ("RequestTooLargeException", 413)
    assert "6291456" in resp["Error"]["Message"]


def test_mismatched_qualifier(lam, probe):
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=f"{probe}:1", Qualifier="2")
    assert error_of(e)[:2] == ("InvalidParameterValueException", 400)


# --- invoking python ---------------------------------------------------------------------


def test_python_invoke_round_trip_and_context(lam, probe):
    event = {"hello": "world", "n": [1, 2.5, None, True], "nested": {"é": "ü"}}
    resp, out = invoke(lam, probe, event)
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert out["event"] == event
    assert out["function_name"] == probe
    assert out["function_version"] == "$LATEST"
    assert str(out["memory_limit_in_mb"]) == "256"
    assert out["aws_request_id"] == resp["ResponseMetadata"]["RequestId"]
    assert out["invoked_function_arn"] == ARN_PREFIX + probe
    assert 0 < out["remaining_ms"] <= 30_000
    assert out["log_group_name"] == f"/aws/lambda/{probe}"
    # The stream is named date/[version]id, as AWS names them.
    assert "/[$LATEST]" in out["log_stream_name"]

    env = out["env"]
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == probe
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_REGION"] == REGION
    assert env["AWS_DEFAULT_REGION"] == REGION
    assert env["_HANDLER"] == "app.handler"
    assert env["AWS_LAMBDA_LOG_GROUP_NAME"] == f"/aws/lambda/{probe}"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.12"
    assert env["MY_SETTING"] == "from-config"
    assert env["TZ"] == ":UTC"
    assert env["AWS_LAMBDA_RUNTIME_API"]
    # The handler runs in its task root, where its code is.
    assert env["LAMBDA_TASK_ROOT"] and out["cwd"] == env["LAMBDA_TASK_ROOT"]


def test_qualified_invoke_reports_the_qualified_arn(lam, probe):
    resp, out = invoke(lam, probe, {}, Qualifier="$LATEST")
    assert out["invoked_function_arn"] == ARN_PREFIX + probe + ":$LATEST"
    resp, out = invoke(lam, ARN_PREFIX + probe, {})
    assert out["invoked_function_arn"] == ARN_PREFIX + probe


def test_log_type_tail(lam, probe):
    resp, out = invoke(lam, probe, {"print": "a line from the function"}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    text = log_tail(resp)
    lines = text.splitlines()
    assert f"START RequestId: {rid} Version: $LATEST" in lines
    assert "a line from the function" in lines
    assert f"END RequestId: {rid}" in lines
    report = [line for line in lines if line.startswith(f"REPORT RequestId: {rid}")]
    assert len(report) == 1
    assert "Duration:" in report[0] and "Billed Duration:" in report[0]
    assert "Memory Size: 256 MB" in report[0] and "Max Memory Used:" in report[0]
    # The function's line comes between START and END.
    start = lines.index(f"START RequestId: {rid} Version: $LATEST")
    assert start < lines.index("a line from the function") < lines.index(f"END RequestId: {rid}")
    # Without LogType there is no LogResult.
    assert "LogResult" not in invoke(lam, probe, {})[0]


def test_dry_run_and_event_status_codes(lam, probe):
    resp = lam.invoke(FunctionName=probe, InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    resp = lam.invoke(FunctionName=probe, InvocationType="Event", Payload=b'{"x": 1}')
    assert resp["StatusCode"] == 202
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=unique("missing"), InvocationType="DryRun")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def test_client_context_reaches_the_function(lam, probe):
    cc = {"custom": {"user": "u-1", "n": 2}, "env": {"platform": "test"},
          "client": {"installation_id": "i-1", "app_title": "t"}}
    encoded = base64.b64encode(json.dumps(cc).encode()).decode()
    _, out = invoke(lam, probe, {}, ClientContext=encoded)
    assert out["client_custom"] == {"user": "u-1", "n": 2}
    assert invoke(lam, probe, {})[1]["client_custom"] is None


def test_python_unhandled_error(lam, probe):
    resp, payload = invoke(lam, probe, {"raise": "it broke"}, LogType="Tail")
    function_error(resp, payload, "ValueError")
    assert "[ERROR] ValueError: it broke" in log_tail(resp)
    assert payload["errorMessage"] == "it broke"
    assert payload["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert isinstance(payload["stackTrace"], list)
    assert any("app.py" in frame and "handler" in frame for frame in payload["stackTrace"])
    # An error the handler raises leaves its environment serving.
    assert invoke(lam, probe, {})[0]["StatusCode"] == 200


def test_python_import_error(lam):
    name = unique()
    create_function(lam, name, {"app.py": "import nope_not_a_module\n\ndef handler(e, c):\n"
                                          "    return 1\n"})
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Runtime.ImportModuleError")
    assert payload["errorMessage"].startswith("Unable to import module 'app':")
    assert "nope_not_a_module" in payload["errorMessage"]


def test_python_handler_not_found(lam):
    name = unique()
    create_function(lam, name, {"app.py": "def handler(e, c):\n    return 1\n"},
                    handler="app.nothere")
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Runtime.HandlerNotFound")
    assert payload["errorMessage"] == "Handler 'nothere' missing on module 'app'"


def test_python_init_failures(lam):
    cases = [
        ({"app.py": "def handler(e, c)\n    return 1\n"}, "app.handler",
         "Runtime.UserCodeSyntaxError", "Syntax error in module 'app'"),
        ({"app.py": "def handler(e, c):\n    return 1\n"}, "app",
         "Runtime.MalformedHandlerName", "Bad handler 'app'"),
    ]
    for files, handler, error_type, message in cases:
        name = unique()
        create_function(lam, name, files, handler=handler)
        resp, payload = invoke(lam, name, {})
        function_error(resp, payload, error_type)
        assert payload["errorMessage"].startswith(message), payload


def test_python_init_exception(lam):
    name = unique()
    create_function(lam, name, {"app.py": "raise RuntimeError('bad init')\n"
                                          "def handler(e, c):\n    return 1\n"})
    for _ in range(2):  # every invocation retries the init in a new environment
        resp, payload = invoke(lam, name, {})
        function_error(resp, payload, "RuntimeError")
        assert payload["errorMessage"] == "bad init"


def test_python_unserializable_result(lam):
    name = unique()
    create_function(lam, name, {"app.py": "def handler(e, c):\n    return {1, 2}\n"})
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Runtime.MarshalError")
    assert payload["errorMessage"] == ("Unable to marshal response: Object of type set "
                                       "is not JSON serializable")


def test_python_handler_in_a_subdirectory(lam):
    name = unique()
    create_function(lam, name, {"src/pkg/__init__.py": "",
                                "src/pkg/mod.py": "def handler(e, c):\n    return 'nested'\n"},
                    handler="src/pkg/mod.handler")
    assert invoke(lam, name, {})[1] == "nested"


EDGES_PY = r'''
import logging
import os
import sys
import time

if os.environ.get("SLOW_INIT"):
    time.sleep(float(os.environ["SLOW_INIT"]))


def handler(event, context):
    what = event.get("what") if isinstance(event, dict) else None
    if what == "none":
        return None
    if what == "exit":
        sys.stdout.flush()
        os._exit(3)
    if what == "hog":
        hog = b"x" * (400 * 1024 * 1024)
        time.sleep(3)
        return len(hog)
    if what == "big-response":
        return "y" * (7 * 1024 * 1024)
    if what == "chatty":
        for i in range(400):
            print(f"chatty line {i:04d} " + "z" * 40)
        return "done"
    if what == "logging":
        logging.getLogger().warning("a warning from logging")
        logging.getLogger().info("an info line the default level hides")
        return "logged"
    return {"event": event}
'''


def test_non_object_payloads_and_none(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY})
    for event in ([1, 2, 3], "a string", 42, None):
        payload = json.dumps(event).encode()
        resp = lam.invoke(FunctionName=name, Payload=payload)
        assert json.loads(resp["Payload"].read()) == {"event": event}
    # No payload at all: the function gets an empty object.
    assert json.loads(lam.invoke(FunctionName=name)["Payload"].read()) == {"event": {}}
    # A handler returning None answers JSON null.
    resp = lam.invoke(FunctionName=name, Payload=b'{"what": "none"}')
    assert resp["Payload"].read() == b"null"


def test_process_exit_is_runtime_exit_error(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY})
    resp, payload = invoke(lam, name, {"what": "exit"})
    function_error(resp, payload, "Runtime.ExitError")
    assert "Runtime exited with error: exit status 3" in payload["errorMessage"]
    assert payload["errorMessage"].startswith(f"RequestId: {resp['ResponseMetadata']['RequestId']}")
    assert invoke(lam, name, {"x": 1})[1] == {"event": {"x": 1}}


def test_out_of_memory(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY}, MemorySize=128)
    resp, payload = invoke(lam, name, {"what": "hog"})
    function_error(resp, payload, "Runtime.OutOfMemory")
    assert invoke(lam, name, {"x": 1})[1] == {"event": {"x": 1}}


def test_response_over_6mb(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY}, MemorySize=512)
    resp, payload = invoke(lam, name, {"what": "big-response"})
    function_error(resp, payload, "Function.ResponseSizeTooLarge")
    # AWS names both sizes; its limit for a response is 6 MB and 100 bytes.
    size = len(json.dumps("y" * (7 * 1024 * 1024)))
    assert payload["errorMessage"] == (f"Response payload size ({size} bytes) exceeded maximum "
                                       f"allowed payload size (6291556 bytes).")


def test_response_just_under_the_limit(lam):
    name = unique()
    create_function(lam, name, {"app.py": "def handler(e, c):\n    return 'w' * e['n']\n"},
                    MemorySize=512)
    n = 6291556 - 2 - 20  # the JSON string's quotes, and some room
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"n": n}).encode())
    assert "FunctionError" not in resp, resp["Payload"].read()[:300]
    assert len(resp["Payload"].read()) == n + 2


def test_tail_is_the_last_4kb(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY})
    resp, out = invoke(lam, name, {"what": "chatty"}, LogType="Tail")
    assert out == "done"
    raw = base64.b64decode(resp["LogResult"])
    assert len(raw) <= 4096
    text = raw.decode(errors="replace")
    assert "chatty line 0399" in text
    assert "chatty line 0000" not in text
    assert f"REPORT RequestId: {resp['ResponseMetadata']['RequestId']}" in text


def test_python_logging_format(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY})
    resp, out = invoke(lam, name, {"what": "logging"}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    lines = log_tail(resp).splitlines()
    [warning] = [line for line in lines if "a warning from logging" in line]
    level, stamp, request_id, message = warning.split("\t")
    assert (level, request_id, message) == ("[WARNING]", rid, "a warning from logging")
    assert stamp.endswith("Z") and "T" in stamp
    # The root logger's level is WARNING unless the function lowers it.
    assert not any("default level hides" in line for line in lines)


def test_slow_init_is_not_charged_to_the_timeout(lam):
    name = unique()
    create_function(lam, name, {"app.py": EDGES_PY}, Timeout=1,
                    Environment={"Variables": {"SLOW_INIT": "1.5"}})
    resp, out = invoke(lam, name, {"x": 1}, LogType="Tail")
    assert "FunctionError" not in resp, out
    assert out == {"event": {"x": 1}}
    assert "Init Duration:" in log_tail(resp)


# --- invoking node -----------------------------------------------------------------------


@needs_node
def test_node_commonjs(lam):
    name = unique("node")
    create_function(lam, name, {"index.js": NODE_CJS}, runtime="nodejs20.x",
                    handler="index.handler")
    cc = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    resp, out = invoke(lam, name, {"a": [1, 2]}, LogType="Tail", ClientContext=cc,
                       Qualifier="$LATEST")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert out["event"] == {"a": [1, 2]}
    assert out["kind"] == "cjs"
    assert out["functionName"] == name
    assert str(out["memoryLimitInMB"]) == "128"
    assert out["awsRequestId"] == resp["ResponseMetadata"]["RequestId"]
    assert out["invokedFunctionArn"] == ARN_PREFIX + name + ":$LATEST"
    assert out["remaining"] > 0
    assert out["region"] == REGION
    assert out["handlerEnv"] == "index.handler"
    assert out["custom"] == {"k": "v"}
    # console.log lines are "timestamp<TAB>request id<TAB>level<TAB>message", as on AWS.
    [line] = [x for x in log_tail(resp).splitlines() if "node says" in x]
    stamp, request_id, level, message = line.split("\t")
    assert (request_id, level, message) == (out["awsRequestId"], "INFO", 'node says {"a":[1,2]}')
    assert stamp.endswith("Z") and "T" in stamp


@needs_node
def test_node_es_module(lam):
    name = unique("node")
    create_function(lam, name, {"index.mjs": NODE_ESM}, runtime="nodejs20.x",
                    handler="index.handler")
    resp, out = invoke(lam, name, {"esm": True})
    assert out == {"event": {"esm": True}, "kind": "esm", "functionName": name,
                   "awsRequestId": resp["ResponseMetadata"]["RequestId"]}


@needs_node
def test_node_package_type_module(lam):
    name = unique("node")
    create_function(lam, name, {"package.json": '{"type": "module"}', "index.js": NODE_ESM},
                    runtime="nodejs20.x", handler="index.handler")
    resp, out = invoke(lam, name, {"pkg": "module"})
    assert out["kind"] == "esm" and out["event"] == {"pkg": "module"}


@needs_node
def test_node_callback_handler(lam):
    name = unique("node")
    create_function(lam, name, {"index.js": NODE_CALLBACK}, runtime="nodejs20.x",
                    handler="index.handler")
    resp, out = invoke(lam, name, {"n": 21})
    assert out == {"doubled": 42, "awsRequestId": resp["ResponseMetadata"]["RequestId"]}
    resp, payload = invoke(lam, name, {"fail": True})
    function_error(resp, payload, "Error")
    assert payload["errorMessage"] == "callback failure"


@needs_node
def test_node_unhandled_error(lam):
    name = unique("node")
    create_function(lam, name, {"index.js": NODE_CJS}, runtime="nodejs20.x",
                    handler="index.handler")
    resp, payload = invoke(lam, name, {"raise": "node broke"})
    function_error(resp, payload, "Error")
    assert payload["errorMessage"] == "node broke"
    assert isinstance(payload["trace"], list)
    assert payload["trace"][0] == "Error: node broke"
    assert any("index.js" in line for line in payload["trace"])


@needs_node
def test_node_import_error_and_missing_handler(lam):
    broken = unique("node")
    create_function(lam, broken, {"index.js": "require('no-such-package-here');\n"
                                              "exports.handler = async () => 1;\n"},
                    runtime="nodejs20.x", handler="index.handler")
    resp, payload = invoke(lam, broken, {})
    function_error(resp, payload, "Runtime.ImportModuleError")
    assert "no-such-package-here" in payload["errorMessage"]

    missing = unique("node")
    create_function(lam, missing, {"index.js": NODE_CJS}, runtime="nodejs20.x",
                    handler="index.nothere")
    resp, payload = invoke(lam, missing, {})
    function_error(resp, payload, "Runtime.HandlerNotFound")
    assert payload["errorMessage"] == "index.nothere is undefined or not exported"


NODE_FAILURES = r"""
exports.throwsString = async () => { throw "plain string"; };
exports.rejects = async () => {
  Promise.reject(new Error("nobody waited for me"));
  await new Promise((r) => setTimeout(r, 200));
  return "unreachable";
};
exports.notAFunction = 42;
exports.ok = async () => process.pid;
"""


@needs_node
def test_node_error_shapes(lam):
    def fn(handler):
        name = unique("node")
        create_function(lam, name, {"index.js": NODE_FAILURES}, runtime="nodejs20.x",
                        handler=f"index.{handler}")
        return name

    resp, payload = invoke(lam, fn("throwsString"), {})
    function_error(resp, payload, "string")
    assert payload["errorMessage"] == "plain string"

    rejects = fn("rejects")
    resp, payload = invoke(lam, rejects, {})
    function_error(resp, payload, "Runtime.UnhandledPromiseRejection")
    assert payload["errorMessage"] == "Error: nobody waited for me"

    resp, payload = invoke(lam, fn("notAFunction"), {})
    function_error(resp, payload, "Runtime.HandlerNotFound")
    assert payload["errorMessage"] == "index.notAFunction is not a function"


# Node.js's event-loop contract, as AWS's runtime (aws-lambda-nodejs-runtime-interface-client)
# keeps it: a non-async handler's result is what it passes to the callback, sent once the event
# loop is empty (unless context.callbackWaitsForEmptyEventLoop is false); an async handler whose
# promise is still pending when the loop runs dry fails with Runtime.NodeJsExit.
NODE_LOOP = r"""
exports.pending = async (event) => {
  if (event.ok) return process.pid;
  await new Promise(() => {});
};
exports.syncReturn = (event) => ({ returned: true });
exports.noCallback = (event, context, callback) => { setTimeout(() => {}, 50); };
exports.waits = (event, context, callback) => {
  setTimeout(() => console.log("late timer fired"), 800);
  callback(null, { answered: true });
};
exports.noWait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 800);
  callback(null, { answered: true });
};
"""


@pytest.fixture(scope="module")
def node_loop(lam):
    made = {}

    def make(handler):
        if handler not in made:
            name = unique("loop")
            create_function(lam, name, {"index.js": NODE_LOOP}, runtime="nodejs20.x",
                            handler=f"index.{handler}", Timeout=5)
            made[handler] = name
        return made[handler]

    return make


@needs_node
def test_node_pending_promise_is_nodejs_exit(lam, node_loop):
    name = node_loop("pending")
    pid = invoke(lam, name, {"ok": True})[1]
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Runtime.NodeJsExit")
    # The runtime reports it and goes on serving in the same process.
    assert invoke(lam, name, {"ok": True})[1] == pid


@needs_node
def test_node_sync_handler_answers_null(lam, node_loop):
    resp = lam.invoke(FunctionName=node_loop("syncReturn"), Payload=b"{}")
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"null"
    resp = lam.invoke(FunctionName=node_loop("noCallback"), Payload=b"{}")
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"null"


@needs_node
def test_node_callback_waits_for_empty_event_loop(lam, node_loop):
    started = time.monotonic()
    resp, out = invoke(lam, node_loop("waits"), {}, LogType="Tail")
    assert out == {"answered": True}
    assert time.monotonic() - started >= 0.75
    lines = log_tail(resp).splitlines()
    fired = [i for i, line in enumerate(lines) if "late timer fired" in line]
    end = [i for i, line in enumerate(lines) if line.startswith("END RequestId")]
    assert fired and end and fired[0] < end[0]

    invoke(lam, node_loop("noWait"), {})  # warm
    started = time.monotonic()
    resp, out = invoke(lam, node_loop("noWait"), {})
    assert out == {"answered": True}
    assert time.monotonic() - started < 0.6


# --- custom runtimes ---------------------------------------------------------------------


SHELL_BOOTSTRAP = r'''#!/bin/sh
# A custom runtime in POSIX shell: the Runtime API loop with curl.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS="$(mktemp)"
echo "shell runtime starting for ${_HANDLER}"
while true; do
  EVENT="$(curl -sS -D "$HEADERS" "$API/invocation/next")"
  REQUEST_ID="$(grep -i '^Lambda-Runtime-Aws-Request-Id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  ARN="$(grep -i '^Lambda-Runtime-Invoked-Function-Arn:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)"
  echo "shell handling $REQUEST_ID"
  case "$EVENT" in
    *raw*)
      curl -sS -X POST "$API/invocation/$REQUEST_ID/response" -d 'plain text, not JSON' >/dev/null
      ;;
    *fail*)
      curl -sS -X POST -H "Lambda-Runtime-Function-Error-Type: Shell.Failure" \
        "$API/invocation/$REQUEST_ID/error" \
        -d '{"errorMessage": "the shell failed", "errorType": "Shell.Failure"}' >/dev/null
      ;;
    *)
      curl -sS -X POST "$API/invocation/$REQUEST_ID/response" \
        -d "{\"echo\": $EVENT, \"requestId\": \"$REQUEST_ID\", \"arn\": \"$ARN\", \"handler\": \"${_HANDLER}\"}" >/dev/null
      ;;
  esac
done
'''


@pytest.mark.skipif(shutil.which("curl") is None, reason="the shell bootstrap needs curl")
def test_provided_shell_bootstrap(lam):
    name = unique("shell")
    create_function(lam, name, {"bootstrap": (SHELL_BOOTSTRAP, 0o755)},
                    runtime="provided.al2023", handler="function.handler")
    resp, out = invoke(lam, name, {"k": "v"}, LogType="Tail")
    rid = resp["ResponseMetadata"]["RequestId"]
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert out == {"echo": {"k": "v"}, "requestId": rid, "arn": ARN_PREFIX + name,
                   "handler": "function.handler"}
    assert f"shell handling {rid}" in log_tail(resp)

    resp, payload = invoke(lam, name, {"fail": 1})
    function_error(resp, payload, "Shell.Failure")
    assert payload["errorMessage"] == "the shell failed"
    # The same process goes on serving.
    assert invoke(lam, name, {"again": 1})[1]["echo"] == {"again": 1}
    # A response is passed on byte for byte, JSON or not.
    resp = lam.invoke(FunctionName=name, Payload=b'{"raw": 1}')
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"plain text, not JSON"


def test_provided_without_bootstrap(lam):
    name = unique("noboot")
    create_function(lam, name, {"readme.txt": "no bootstrap here"}, runtime="provided.al2023",
                    handler="x")
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Runtime.InvalidEntrypoint")


@pytest.fixture(scope="session")
def awslambdaric_dir(tmp_path_factory):
    """awslambdaric installed with pip into a directory, once per session (cached there)."""
    base = tmp_path_factory.mktemp("awslambdaric")
    target = base / "pkg"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--cache-dir", str(base / "pip-cache"), "--target", str(target), "awslambdaric"],
        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        pytest.skip(f"pip could not install awslambdaric: {proc.stderr.strip()[-500:]}")
    return target


RIC_HANDLER = r'''
import os


def fn(event, context):
    if event.get("fail"):
        raise RuntimeError("ric failure")
    return {"echo": event, "requestId": context.aws_request_id,
            "arn": context.invoked_function_arn, "name": context.function_name,
            "pid": os.getpid()}
'''


def test_awslambdaric_in_a_provided_runtime(lam, awslambdaric_dir):
    # The function's PATH is minimal: name the interpreter by its absolute path.
    bootstrap = (f"#!/bin/sh\nexport PYTHONPATH=\"$LAMBDA_TASK_ROOT\"\n"
                 f"exec {sys.executable} -m awslambdaric \"$_HANDLER\"\n")
    package = zip_dir(awslambdaric_dir, {"handler.py": RIC_HANDLER,
                                         "bootstrap": (bootstrap, 0o755)})
    name = unique("ric")
    create_function(lam, name, package, runtime="provided.al2023", handler="handler.fn")

    resp, out = invoke(lam, name, {"via": "awslambdaric"})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, out
    assert out["echo"] == {"via": "awslambdaric"}
    assert out["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert out["arn"] == ARN_PREFIX + name
    assert out["name"] == name

    resp, payload = invoke(lam, name, {"fail": True})
    function_error(resp, payload, "RuntimeError")
    assert payload["errorMessage"] == "ric failure"
    assert payload["requestId"] == resp["ResponseMetadata"]["RequestId"]
    assert any("handler.py" in frame for frame in payload["stackTrace"])

    # awslambdaric keeps serving in the same process after an error.
    _, again = invoke(lam, name, {"n": 2})
    assert again["pid"] == out["pid"]

    # A handler that cannot be imported is reported through /runtime/init/error.
    broken = unique("ric")
    create_function(lam, broken, package, runtime="provided.al2023", handler="nomodule.fn")
    resp, payload = invoke(lam, broken, {})
    function_error(resp, payload, "Runtime.ImportModuleError")
    assert "nomodule" in payload["errorMessage"]


# --- environments: reuse, scale-out, throttling ------------------------------------------


def test_warm_reuse(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY})
    outs = [invoke(lam, name, {})[1] for _ in range(3)]
    assert [o["count"] for o in outs] == [1, 2, 3]
    assert len({o["pid"] for o in outs}) == 1


def test_scale_out_runs_concurrent_invokes_in_separate_environments(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY})
    n = 4
    with ThreadPoolExecutor(n) as pool:
        outs = list(pool.map(lambda _: invoke(lam, name, {"sleep": 1.0})[1], range(n)))
    assert len({o["pid"] for o in outs}) == n
    assert all(o["count"] == 1 for o in outs)


def test_reserved_concurrency_throttles(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY})
    assert lam.put_function_concurrency(
        FunctionName=name, ReservedConcurrentExecutions=1)["ReservedConcurrentExecutions"] == 1
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 1
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 1}
    invoke(lam, name, {})  # warm, so the slow call below is running when the second arrives

    results = {}

    def slow():
        results["slow"] = invoke(lam, name, {"sleep": 2.5})

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.8)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b"{}")
    t.join()
    code, status, resp = error_of(e)
    assert (code, status) == ("TooManyRequestsException", 429)
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert results["slow"][0]["StatusCode"] == 200
    # Once the first finishes there is room again.
    assert invoke(lam, name, {})[0]["StatusCode"] == 200


def test_reserved_zero_throttles_everything(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b"{}")
    code, status, resp = error_of(e)
    assert (code, status) == ("TooManyRequestsException", 429)
    assert resp["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert invoke(lam, name, {})[0]["StatusCode"] == 200


def test_concurrency_counts_every_version(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, Publish=True)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    invoke(lam, name, {}, Qualifier="1")
    t = threading.Thread(target=lambda: invoke(lam, name, {"sleep": 2.5}, Qualifier="1"))
    t.start()
    time.sleep(0.8)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Payload=b"{}")  # $LATEST shares the function's limit
    t.join()
    assert error_of(e)[:2] == ("TooManyRequestsException", 429)


def test_account_settings_and_reservation_floor(lam_server):
    lam = account_client(lam_server, "100000000002")
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] == 0

    a, b = unique(), unique()
    create_function(lam, a, {"app.py": PROBE_PY}, wait=False)
    create_function(lam, b, {"app.py": PROBE_PY}, wait=False)
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=300)
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["ConcurrentExecutions"] == 1000
    assert limit["UnreservedConcurrentExecutions"] == 700
    assert lam.get_account_settings()["AccountUsage"]["FunctionCount"] == 2

    # Reservations must leave at least 100 unreserved.
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=601)
    code, status, resp = error_of(e)
    assert (code, status) == ("InvalidParameterValueException", 400)
    assert "100" in resp["Error"]["Message"]
    lam.put_function_concurrency(FunctionName=b, ReservedConcurrentExecutions=600)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    # Changing a function's own reservation counts what it already holds.
    lam.put_function_concurrency(FunctionName=a, ReservedConcurrentExecutions=300)

    lam.delete_function_concurrency(FunctionName=b)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 700
    lam.delete_function(FunctionName=a)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000


ENV_AND_TMP_PY = r"""
import os
import tempfile
import time


def handler(event, context):
    path = os.path.join(tempfile.gettempdir(), "marker")
    seen = os.path.exists(path)
    with open(path, "a") as f:
        f.write("x")
    time.sleep(event.get("sleep", 0))
    return {"seen": seen, "pid": os.getpid(), "tmp": tempfile.gettempdir(),
            "env": sorted(os.environ)}
"""


def test_environment_isolation(lam):
    """Each environment has its own /tmp, kept while it is warm; a function sees Lambda's
    variables and its own, none of the server's."""
    name = unique()
    create_function(lam, name, {"app.py": ENV_AND_TMP_PY},
                    Environment={"Variables": {"OWN_VAR": "1"}})
    first = invoke(lam, name, {})[1]
    assert first["seen"] is False
    again = invoke(lam, name, {})[1]
    assert (again["pid"], again["seen"]) == (first["pid"], True)

    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda _: invoke(lam, name, {"sleep": 1.0})[1], range(2)))
    fresh = [o for o in outs if o["pid"] != first["pid"]]
    assert fresh and all(o["seen"] is False for o in fresh)
    assert len({o["tmp"] for o in outs}) == 2

    env = set(first["env"])
    assert {"OWN_VAR", "AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT", "PATH"} <= env
    leaked = env & (set(os.environ) - {"PATH", "LANG", "HOME", "TZ", "TMPDIR", "PYTHONPATH",
                                       "PYTHONUNBUFFERED", "LD_LIBRARY_PATH", "NODE_PATH",
                                       "LC_CTYPE"})
    leaked = {k for k in leaked if not k.startswith(("AWS_", "_"))}
    assert not leaked, f"the server's environment reached the function: {sorted(leaked)}"
    assert "NO_COLOR" not in env  # set for the server process by conftest


CONFINEMENT_PY = r'''
import ctypes, os, resource


def handler(event, context):
    # PR_GET_PDEATHSIG = 2: the signal this process gets when the server dies.
    sig = ctypes.c_int(0)
    ctypes.CDLL(None, use_errno=True).prctl(2, ctypes.byref(sig), 0, 0, 0)
    status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines()
                  if ":\t" in line)
    import logging  # imported late on purpose: AWS's log format must apply all the same
    logging.getLogger().warning("late logging")
    return {
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "fsize": list(resource.getrlimit(resource.RLIMIT_FSIZE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
        "own_group": os.getpgid(0) == os.getpid(),
        "pdeathsig": sig.value,
        "blocked": int(status["SigBlk"].strip(), 16),
        "stdin": os.readlink("/proc/self/fd/0"),
        "cwd": os.getcwd(),
        "task_root": os.environ["LAMBDA_TASK_ROOT"],
        "ppid": os.getppid(),
    }
'''


def test_environment_process_is_confined(lam_server, lam):
    """The process AWS's limits apply to: 1,024 open files, no file larger than the ephemeral
    storage, no core dumps; its own process group (a timeout kills all it started); killed
    when the server dies; a clean signal state, /dev/null for stdin, the code as cwd; and the
    logging format applies even when `logging` is first imported inside the handler."""
    name = unique()
    create_function(lam, name, {"app.py": CONFINEMENT_PY}, EphemeralStorage={"Size": 1024})
    resp, out = invoke(lam, name, {}, LogType="Tail")
    assert out["nofile"] == [1024, 1024]
    assert out["fsize"] == [1024 * 1024 * 1024] * 2
    assert out["core"] == [0, 0]
    assert out["own_group"] is True
    assert out["pdeathsig"] == int(signal.SIGKILL)
    assert out["blocked"] == 0
    assert out["stdin"] == "/dev/null"
    assert out["cwd"] == out["task_root"]
    assert out["ppid"] == lam_server.proc.pid
    assert any(line.startswith("[WARNING]\t") and line.endswith("\tlate logging")
               for line in log_tail(resp).splitlines())


# --- timeouts ----------------------------------------------------------------------------


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_timeout_kills_the_environment(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, Timeout=1)
    first = invoke(lam, name, {})[1]

    started = time.monotonic()
    resp, payload = invoke(lam, name, {"sleep": 5}, LogType="Tail")
    elapsed = time.monotonic() - started
    function_error(resp, payload, "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    assert 0.9 <= elapsed < 4
    assert "Task timed out after 1.00 seconds" in log_tail(resp)

    # The next invocation runs in a fresh environment; the timed-out one is gone.
    resp, out = invoke(lam, name, {})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    assert out["pid"] != first["pid"]
    assert out["count"] == 1
    deadline = time.monotonic() + 3
    while pid_alive(first["pid"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(first["pid"])


@needs_node
def test_node_timeout(lam):
    name = unique("node")
    create_function(lam, name, {"index.js": "exports.handler = async () => {\n"
                                            "  await new Promise((r) => setTimeout(r, 5000));\n"
                                            "};\n"},
                    runtime="nodejs20.x", handler="index.handler", Timeout=1)
    resp, payload = invoke(lam, name, {})
    function_error(resp, payload, "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]


BLOCK_FOREVER = '''
import threading


def handler(event, context):
    if event.get("block"):
        threading.Event().wait()
    return {"ok": True}
'''


def test_timeout_follows_the_manual_clock(clock_server):
    lam = clock_server.client("lambda")
    name = unique("clock")
    create_function(lam, name, {"app.py": BLOCK_FOREVER}, Timeout=600)
    assert invoke(lam, name, {})[1] == {"ok": True}

    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", invoke(lam, name, {"block": 1})))
    t.start()
    t.join(2.0)
    assert t.is_alive(), "the function timed out before the clock reached its timeout"
    # The manual clock also runs at wall-clock pace: about 3 s pass besides the jumps.
    clock_server.advance(590)
    t.join(1.0)
    assert t.is_alive(), "the function timed out before the clock reached its timeout"
    clock_server.advance(10)
    t.join(10)
    assert not t.is_alive()
    resp, payload = result["r"]
    function_error(resp, payload, "Sandbox.Timedout")
    assert "Task timed out after 600.00 seconds" in payload["errorMessage"]
    assert invoke(lam, name, {})[1] == {"ok": True}


def test_remaining_time_on_the_manual_clock(clock_server):
    """The deadline a runtime gets is on its own (wall) clock: however far the server's manual
    clock has been moved, a function has at most its timeout left."""
    lam = clock_server.client("lambda")
    name = unique("clock")
    create_function(lam, name, {"app.py": PROBE_PY}, Timeout=30)
    clock_server.advance(3600)
    _, out = invoke(lam, name, {})
    assert 25_000 < out["remaining_ms"] <= 30_000


# --- versions and aliases ----------------------------------------------------------------


def versioned_code(tag):
    return {"app.py": f"import os\ndef handler(e, c):\n"
                      f"    return {{'code': {tag!r},\n"
                      f"            'version': os.environ['AWS_LAMBDA_FUNCTION_VERSION'],\n"
                      f"            'arn': c.invoked_function_arn}}\n"}


@pytest.fixture(scope="module")
def versioned(lam):
    """A function with version 1 (code "v1") and version 2 and $LATEST (code "v2")."""
    name = unique("ver")
    create_function(lam, name, versioned_code("v1"))
    v1 = lam.publish_version(FunctionName=name, Description="first")
    lam.update_function_code(FunctionName=name, ZipFile=make_zip(versioned_code("v2")))
    wait_updated(lam, name)
    v2 = lam.publish_version(FunctionName=name)
    return name, v1, v2


def test_publish_and_list_versions(lam, versioned):
    name, v1, v2 = versioned
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert (v1["Version"], v2["Version"]) == ("1", "2")
    assert v1["FunctionArn"] == ARN_PREFIX + name + ":1"
    assert v1["Description"] == "first"
    assert v1["CodeSha256"] == code_sha256(make_zip(versioned_code("v1")))
    assert v2["CodeSha256"] == code_sha256(make_zip(versioned_code("v2")))
    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]["Version"] == "1"
    # Publishing again without a change gives back the latest version.
    assert lam.publish_version(FunctionName=name)["Version"] == "2"


def test_invoke_versions(lam, versioned):
    name = versioned[0]
    resp, out = invoke(lam, name, {}, Qualifier="1")
    assert out == {"code": "v1", "version": "1", "arn": ARN_PREFIX + name + ":1"}
    assert resp["ExecutedVersion"] == "1"
    resp, out = invoke(lam, name, {})
    assert out["code"] == "v2" and out["version"] == "$LATEST"
    assert resp["ExecutedVersion"] == "$LATEST"
    resp, out = invoke(lam, f"{name}:2", {})
    assert out["code"] == "v2" and resp["ExecutedVersion"] == "2"
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Qualifier="9")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def test_publish_on_create_and_update(lam):
    name = unique()
    out = create_function(lam, name, versioned_code("p1"), Publish=True)
    assert out["Version"] == "1"
    assert out["FunctionArn"] == ARN_PREFIX + name + ":1"
    out = lam.update_function_code(FunctionName=name, ZipFile=make_zip(versioned_code("p2")),
                                   Publish=True)
    assert out["Version"] == "2"
    wait_updated(lam, name)
    assert invoke(lam, name, {}, Qualifier="1")[1]["code"] == "p1"
    assert invoke(lam, name, {}, Qualifier="2")[1]["code"] == "p2"
    # A published version can be deleted; $LATEST only with the function.
    lam.delete_function(FunctionName=name, Qualifier="1")
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName=name, Qualifier="1")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] \
        == ["$LATEST", "2"]


def test_list_versions_pages(lam):
    name = unique()
    create_function(lam, name, versioned_code("a"))
    for tag in ("b", "c"):
        lam.publish_version(FunctionName=name)
        lam.update_function_code(FunctionName=name, ZipFile=make_zip(versioned_code(tag)))
        wait_updated(lam, name)
    lam.publish_version(FunctionName=name)
    seen, marker = [], None
    while True:
        kwargs = {"FunctionName": name, "MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_versions_by_function(**kwargs)
        assert len(page["Versions"]) <= 2
        seen += [v["Version"] for v in page["Versions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == ["$LATEST", "1", "2", "3"]


def test_aliases(lam, versioned):
    name = versioned[0]
    alias = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1",
                             Description="production")
    assert alias["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert alias["AliasArn"] == ARN_PREFIX + name + ":live"
    assert (alias["Name"], alias["FunctionVersion"]) == ("live", "1")
    got = lam.get_alias(FunctionName=name, Name="live")
    assert (got["AliasArn"], got["Description"], got["RevisionId"]) == (
        alias["AliasArn"], "production", alias["RevisionId"])
    with pytest.raises(ClientError) as e:
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert error_of(e)[:2] == ("ResourceConflictException", 409)

    resp, out = invoke(lam, name, {}, Qualifier="live")
    assert out["code"] == "v1"
    assert out["arn"] == ARN_PREFIX + name + ":live"
    assert resp["ExecutedVersion"] == "1"
    resp, out = invoke(lam, alias["AliasArn"], {})
    assert out["code"] == "v1" and resp["ExecutedVersion"] == "1"

    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert updated["FunctionVersion"] == "2"
    assert updated["RevisionId"] != alias["RevisionId"]
    with pytest.raises(ClientError) as e:
        lam.update_alias(FunctionName=name, Name="live", FunctionVersion="1",
                         RevisionId=alias["RevisionId"])
    assert error_of(e)[:2] == ("PreconditionFailedException", 412)
    resp, out = invoke(lam, name, {}, Qualifier="live")
    assert out["code"] == "v2" and resp["ExecutedVersion"] == "2"

    lam.create_alias(FunctionName=name, Name="old", FunctionVersion="1")
    listed = lam.list_aliases(FunctionName=name)["Aliases"]
    assert sorted(a["Name"] for a in listed) == ["live", "old"]
    of_one = lam.list_aliases(FunctionName=name, FunctionVersion="1")["Aliases"]
    assert [a["Name"] for a in of_one] == ["old"]

    lam.delete_alias(FunctionName=name, Name="old")
    with pytest.raises(ClientError) as e:
        lam.get_alias(FunctionName=name, Name="old")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName=name, Qualifier="old")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def test_alias_routing_weights(lam, versioned):
    name = versioned[0]
    alias = lam.create_alias(FunctionName=name, Name="canary", FunctionVersion="1",
                             RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.5}}
    executed = [invoke(lam, name, {}, Qualifier="canary") for _ in range(40)]
    versions = {r["ExecutedVersion"] for r, _ in executed}
    assert versions == {"1", "2"}
    # The code that ran is the executed version's.
    for r, out in executed:
        assert out["code"] == ("v1" if r["ExecutedVersion"] == "1" else "v2")
        assert out["arn"] == ARN_PREFIX + name + ":canary"
    # Removing the routing sends everything to the alias's version.
    lam.update_alias(FunctionName=name, Name="canary", RoutingConfig={})
    assert {invoke(lam, name, {}, Qualifier="canary")[0]["ExecutedVersion"]
            for _ in range(5)} == {"1"}


def test_weighted_alias_needs_published_versions(lam, versioned):
    """Traffic can be split only between published versions: not with $LATEST."""
    name = versioned[0]
    with pytest.raises(ClientError) as e:
        lam.create_alias(FunctionName=name, Name="to-latest", FunctionVersion="$LATEST",
                         RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    assert error_of(e)[:2] == ("InvalidParameterValueException", 400)
    # A plain alias may point at $LATEST; adding weights to it later is refused too.
    lam.create_alias(FunctionName=name, Name="plain-latest", FunctionVersion="$LATEST")
    with pytest.raises(ClientError) as e:
        lam.update_alias(FunctionName=name, Name="plain-latest",
                         RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    assert error_of(e)[:2] == ("InvalidParameterValueException", 400)
    assert "RoutingConfig" not in lam.get_alias(FunctionName=name, Name="plain-latest")


# --- layers ------------------------------------------------------------------------------


def test_layers(lam):
    layer_name = unique("layer")
    layer_zip = make_zip({"python/greeting.py": "def greet(who):\n    return f'hi {who}'\n"})
    lv = lam.publish_layer_version(LayerName=layer_name, Description="greetings",
                                   Content={"ZipFile": layer_zip},
                                   CompatibleRuntimes=["python3.12"])
    assert lv["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert lv["Version"] == 1
    assert lv["LayerArn"] == f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{layer_name}"
    assert lv["LayerVersionArn"] == lv["LayerArn"] + ":1"
    assert lv["Content"]["CodeSha256"] == code_sha256(layer_zip)
    assert lv["Content"]["CodeSize"] == len(layer_zip)

    got = lam.get_layer_version(LayerName=layer_name, VersionNumber=1)
    assert got["LayerVersionArn"] == lv["LayerVersionArn"]
    assert got["Description"] == "greetings"
    assert got["CompatibleRuntimes"] == ["python3.12"]
    assert lam.get_layer_version_by_arn(Arn=lv["LayerVersionArn"])["Version"] == 1

    lv2 = lam.publish_layer_version(LayerName=layer_name, Content={"ZipFile": layer_zip},
                                    CompatibleRuntimes=["python3.12"])
    assert lv2["Version"] == 2
    versions = lam.list_layer_versions(LayerName=layer_name)["LayerVersions"]
    assert [v["Version"] for v in versions] == [2, 1]
    layers = [entry for entry in lam.list_layers()["Layers"] if entry["LayerName"] == layer_name]
    assert len(layers) == 1
    assert layers[0]["LatestMatchingVersion"]["Version"] == 2

    name = unique()
    code = {"app.py": "import greeting\ndef handler(e, c):\n    return greeting.greet(e['who'])\n"}
    conf = create_function(lam, name, code, Layers=[lv["LayerVersionArn"]])
    assert conf["Layers"] == [{"Arn": lv["LayerVersionArn"], "CodeSize": len(layer_zip)}]
    assert invoke(lam, name, {"who": "layer"})[1] == "hi layer"

    with pytest.raises(ClientError) as e:
        lam.get_layer_version(LayerName=layer_name, VersionNumber=9)
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def publish_layer(lam, files, **kwargs):
    return lam.publish_layer_version(LayerName=unique("layer"),
                                     Content={"ZipFile": make_zip(files)},
                                     **kwargs)["LayerVersionArn"]


def test_layer_paths_python(lam):
    """AWS puts a layer's python/ and python/lib/python3.x/site-packages on the path, after the
    function's own code (/var/task comes first), and a later layer's files win over an earlier
    one's (they are extracted into /opt in order)."""
    first = publish_layer(lam, {"python/shared.py": "WHO = 'first layer'\n",
                                "python/shadowed.py": "WHO = 'layer'\n"})
    second = publish_layer(lam, {
        "python/shared.py": "WHO = 'second layer'\n",
        "python/lib/python3.12/site-packages/sitemod.py": "WHO = 'site-packages'\n",
    })
    name = unique()
    code = {"shadowed.py": "WHO = 'function'\n",
            "app.py": "import shared, shadowed, sitemod\n"
                      "def handler(e, c):\n"
                      "    return [shared.WHO, shadowed.WHO, sitemod.WHO]\n"}
    create_function(lam, name, code, Layers=[first, second])
    assert invoke(lam, name, {})[1] == ["second layer", "function", "site-packages"]


@needs_node
def test_layer_paths_node(lam):
    layer = publish_layer(lam, {
        "nodejs/node20/node_modules/versioned/index.js": "module.exports = 'node20 dir';\n",
        "nodejs/node_modules/plain/index.js": "module.exports = 'plain dir';\n",
    })
    name = unique("node")
    create_function(lam, name, {"index.js": "exports.handler = async () => "
                                            "[require('versioned'), require('plain')];\n"},
                    runtime="nodejs20.x", handler="index.handler", Layers=[layer])
    assert invoke(lam, name, {})[1] == ["node20 dir", "plain dir"]


@needs_node
def test_node_layer_module(lam):
    layer_zip = make_zip({"nodejs/node_modules/shout/index.js":
                          "module.exports = (s) => s.toUpperCase() + '!';\n"})
    lv = lam.publish_layer_version(LayerName=unique("nodelayer"), Content={"ZipFile": layer_zip},
                                   CompatibleRuntimes=["nodejs20.x"])
    name = unique("node")
    create_function(lam, name, {"index.js": "const shout = require('shout');\n"
                                            "exports.handler = async (e) => shout(e.s);\n"},
                    runtime="nodejs20.x", handler="index.handler",
                    Layers=[lv["LayerVersionArn"]])
    assert invoke(lam, name, {"s": "hey"})[1] == "HEY!"


def test_layer_bin_on_path(lam):
    layer = publish_layer(lam, {"bin/layer-tool": ("#!/bin/sh\necho tool says $1\n", 0o755)})
    name = unique()
    code = {"app.py": "import subprocess\n"
                      "def handler(e, c):\n"
                      "    return subprocess.run(['layer-tool', 'hi'], capture_output=True,\n"
                      "                          text=True).stdout.strip()\n"}
    create_function(lam, name, code, Layers=[layer])
    assert invoke(lam, name, {})[1] == "tool says hi"


def test_bootstrap_from_a_layer(lam):
    """A provided function without a bootstrap runs the one its layer has (/opt/bootstrap)."""
    lv = lam.publish_layer_version(LayerName=unique("runtime"),
                                   Content={"ZipFile": make_zip(
                                       {"bootstrap": (SHELL_BOOTSTRAP, 0o755)})})
    name = unique("shell")
    create_function(lam, name, {"function.sh": "# the function's own files\n"},
                    runtime="provided.al2023", handler="function.handler",
                    Layers=[lv["LayerVersionArn"]])
    assert invoke(lam, name, {"from": "layer"})[1]["echo"] == {"from": "layer"}


# --- tags and policies -------------------------------------------------------------------


def test_tags(lam):
    name = unique()
    arn = create_function(lam, name, {"app.py": PROBE_PY}, wait=False,
                          Tags={"a": "1"})["FunctionArn"]
    lam.tag_resource(Resource=arn, Tags={"b": "2", "c": "3"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2", "c": "3"}
    lam.untag_resource(Resource=arn, TagKeys=["a", "c"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        lam.list_tags(Resource=ARN_PREFIX + unique("missing"))
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def test_permissions(lam):
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, wait=False)
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName=name)
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)

    source = f"arn:aws:s3:::bucket-{name}"
    out = lam.add_permission(FunctionName=name, StatementId="s3-invoke",
                             Action="lambda:InvokeFunction", Principal="s3.amazonaws.com",
                             SourceArn=source, SourceAccount=ACCOUNT)
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = json.loads(out["Statement"])
    assert statement["Sid"] == "s3-invoke"
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "lambda:InvokeFunction"
    assert statement["Resource"] == ARN_PREFIX + name
    assert statement["Condition"]["ArnLike"]["AWS:SourceArn"] == source
    assert statement["Condition"]["StringEquals"]["AWS:SourceAccount"] == ACCOUNT

    with pytest.raises(ClientError) as e:
        lam.add_permission(FunctionName=name, StatementId="s3-invoke",
                           Action="lambda:InvokeFunction", Principal="s3.amazonaws.com")
    assert error_of(e)[:2] == ("ResourceConflictException", 409)
    lam.add_permission(FunctionName=name, StatementId="other-account",
                       Action="lambda:InvokeFunction", Principal="210987654321")

    policy_out = lam.get_policy(FunctionName=name)
    policy = json.loads(policy_out["Policy"])
    assert policy["Version"] == "2012-10-17"
    assert [s["Sid"] for s in policy["Statement"]] == ["s3-invoke", "other-account"]
    assert policy["Statement"][1]["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    assert policy_out["RevisionId"]

    lam.remove_permission(FunctionName=name, StatementId="s3-invoke")
    policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["other-account"]
    with pytest.raises(ClientError) as e:
        lam.remove_permission(FunctionName=name, StatementId="s3-invoke")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)


def test_permissions_are_per_qualifier(lam):
    """A version or alias has a resource policy of its own (AddPermission/GetPolicy/
    RemovePermission with Qualifier)."""
    name = unique()
    create_function(lam, name, {"app.py": PROBE_PY}, Publish=True)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    out = lam.add_permission(FunctionName=name, Qualifier="live", StatementId="on-alias",
                             Action="lambda:InvokeFunction", Principal="sns.amazonaws.com")
    assert json.loads(out["Statement"])["Resource"] == ARN_PREFIX + name + ":live"
    policy = json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])
    assert [st["Sid"] for st in policy["Statement"]] == ["on-alias"]
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName=name)
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)

    # The same statement id may be used again on the function itself.
    lam.add_permission(FunctionName=name, StatementId="on-alias",
                       Action="lambda:InvokeFunction", Principal="sns.amazonaws.com")
    policy = json.loads(lam.get_policy(FunctionName=name)["Policy"])
    assert [st["Resource"] for st in policy["Statement"]] == [ARN_PREFIX + name]
    lam.remove_permission(FunctionName=name, Qualifier="live", StatementId="on-alias")
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName=name, Qualifier="live")
    assert error_of(e)[:2] == ("ResourceNotFoundException", 404)
    assert json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"]


# --- functions calling tsumiki -----------------------------------------------------------


SQS_SENDER = '''
import boto3


def handler(event, context):
    sqs = boto3.client("sqs")  # no endpoint: AWS_ENDPOINT_URL says where
    out = sqs.send_message(QueueUrl=event["queue"], MessageBody=event["body"])
    return {"MessageId": out["MessageId"]}
'''


def receive_all(sqs, url, want, timeout=10):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got += out.get("Messages", [])
    return got


def test_function_uses_boto3_without_endpoint(lam_server, lam):
    sqs = lam_server.client("sqs")
    url = sqs.create_queue(QueueName=unique("from-lambda"))["QueueUrl"]
    name = unique("sender")
    create_function(lam, name, {"app.py": SQS_SENDER})
    resp, out = invoke(lam, name, {"queue": url, "body": "sent by a function"})
    assert "FunctionError" not in resp, out
    [msg] = receive_all(sqs, url, 1)
    assert msg["Body"] == "sent by a function"
    assert msg["MessageId"] == out["MessageId"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=msg["ReceiptHandle"])

    # An Event invocation is accepted at once and runs in the background.
    resp = lam.invoke(FunctionName=name, InvocationType="Event",
                      Payload=json.dumps({"queue": url, "body": "async"}).encode())
    assert resp["StatusCode"] == 202
    [msg] = receive_all(sqs, url, 1)
    assert msg["Body"] == "async"


# --- logs --------------------------------------------------------------------------------


def logs_client_or_skip(server):
    logs = server.client("logs")
    try:
        logs.describe_log_groups(limit=1)
    except ClientError as e:
        if e.response["Error"]["Code"] in ("NotImplemented", "UnknownOperationException"):
            pytest.skip(f"CloudWatch Logs is not served yet ({e.response['Error']['Code']}): "
                        "DescribeLogGroups/GetLogEvents/FilterLogEvents are missing")
        raise
    return logs


def poll(fn, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_logs_reach_cloudwatch_logs(lam_server, lam):
    logs = logs_client_or_skip(lam_server)
    name = unique("logged")
    create_function(lam, name, {"app.py": PROBE_PY})
    group = f"/aws/lambda/{name}"
    rids = []
    stream = None
    for i in range(2):
        resp, out = invoke(lam, name, {"print": f"log line {i} of {name}"})
        rids.append(resp["ResponseMetadata"]["RequestId"])
        stream = out["log_stream_name"]

    def events():
        try:
            got = logs.get_log_events(logGroupName=group, logStreamName=stream,
                                      startFromHead=True)["events"]
        except ClientError:
            return None
        messages = [e["message"] for e in got]
        return messages if any(m.startswith(f"REPORT RequestId: {rids[1]}") for m in messages) \
            else None

    messages = poll(events)
    assert messages, "the invocations' lines never reached the log stream"
    for i, rid in enumerate(rids):
        assert f"START RequestId: {rid} Version: $LATEST" in messages
        assert f"log line {i} of {name}" in messages
        assert f"END RequestId: {rid}" in messages
    assert messages.index(f"START RequestId: {rids[0]} Version: $LATEST") \
        < messages.index(f"log line 0 of {name}") < messages.index(f"END RequestId: {rids[0]}")

    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert stream in [s["logStreamName"] for s in streams]

    found = logs.filter_log_events(logGroupName=group, filterPattern='"log line 1"')["events"]
    assert [e["message"] for e in found] == [f"log line 1 of {name}"]
    assert found[0]["logStreamName"] == stream
