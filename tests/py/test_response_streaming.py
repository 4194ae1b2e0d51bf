"""Lambda response streaming through boto3 and a raw HTTP client: InvokeWithResponseStream's
event stream (PayloadChunk events, then InvokeComplete) for streaming and buffered functions,
mid-stream errors carried in the Runtime API's trailers, and RESPONSE_STREAM function URLs whose
chunks reach the client while the function is still running."""

import http.client
import json
import os
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

from lambda_util import create_function, unique

# A streaming Node handler as AWS documents it: awslambda.streamifyResponse, an HTTP prelude
# through HttpResponseStream.from, writes spread over time. With a `signal` path in the event,
# it holds the second write until that file exists: the test creates it only once it has read
# the first chunk, so the second chunk's text proves the first arrived while the function ran.
STREAMER = r"""
const fs = require("fs");
const wait = (ms) => new Promise((r) => setTimeout(r, ms));
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const body = event.body ? JSON.parse(event.body) : event;
  if (body.http) {
    responseStream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201,
      headers: { "content-type": "text/plain", "x-streamed": "yes" },
      cookies: ["a=1", "b=2"],
    });
  } else {
    responseStream.setContentType("text/plain");
  }
  responseStream.write("first;");
  if (body.signal) {
    let seen = false;
    for (let i = 0; i < 100 && !seen; i++) {
      seen = fs.existsSync(body.signal);
      if (!seen) await wait(50);
    }
    responseStream.write(seen ? "second-after-client-read;" : "second-without-client-read;");
  } else {
    await wait(body.pause || 0);
    responseStream.write("second;");
  }
  if (body.fail) throw new Error("broke midway");
  if (body.hang) await wait(600000);
  responseStream.write("third");
  responseStream.end();
});
"""

BUFFERED = """
def handler(event, context):
    if event.get("fail"):
        raise ValueError("nope")
    return {"buffered": True, "event": event}
"""


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def streamer(lam):
    name = unique("stream")
    create_function(lam, name, {"index.js": STREAMER}, runtime="nodejs20.x",
                    handler="index.handler", Timeout=10)
    return name


@pytest.fixture(scope="module")
def buffered(lam):
    name = unique("buffered")
    create_function(lam, name, {"app.py": BUFFERED})
    return name


def events_of(response):
    """(payload chunks, InvokeComplete) of an InvokeWithResponseStream answer."""
    chunks, complete = [], None
    for event in response["EventStream"]:
        if "PayloadChunk" in event:
            chunks.append(event["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in event:
            assert complete is None, "one InvokeComplete"
            complete = event["InvokeComplete"]
    return chunks, complete


def test_streaming_function_sends_each_write_as_a_payload_chunk(lam, streamer):
    out = lam.invoke_with_response_stream(FunctionName=streamer,
                                          Payload=json.dumps({"pause": 100}))
    assert out["StatusCode"] == 200
    assert out["ExecutedVersion"] == "$LATEST"
    chunks, complete = events_of(out)
    assert chunks == [b"first;", b"second;", b"third"]
    assert complete is not None and "ErrorCode" not in complete


def test_http_prelude_travels_in_the_payload(lam, streamer):
    out = lam.invoke_with_response_stream(FunctionName=streamer,
                                          Payload=json.dumps({"http": True}))
    chunks, complete = events_of(out)
    raw = b"".join(chunks)
    prelude, _, body = raw.partition(b"\0" * 8)
    assert json.loads(prelude)["statusCode"] == 201
    assert body == b"first;second;third"
    assert "ErrorCode" not in complete


def test_error_midway_reaches_invoke_complete(lam, streamer):
    out = lam.invoke_with_response_stream(FunctionName=streamer, LogType="Tail",
                                          Payload=json.dumps({"fail": True}))
    chunks, complete = events_of(out)
    assert chunks == [b"first;", b"second;"]
    assert complete["ErrorCode"] == "Error"
    assert complete["ErrorDetails"] == "broke midway"
    assert complete["LogResult"]


def test_plain_invoke_gathers_a_stream_whole(lam, streamer):
    out = lam.invoke(FunctionName=streamer, Payload=json.dumps({}))
    assert "FunctionError" not in out
    assert out["Payload"].read() == b"first;second;third"


def test_a_stream_past_its_timeout_ends_with_the_timeout_error(clock_server):
    lam = clock_server.client("lambda")
    name = unique("hang")
    create_function(lam, name, {"index.js": STREAMER}, runtime="nodejs20.x",
                    handler="index.handler", Timeout=3)
    out = lam.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"hang": True}))
    events = iter(out["EventStream"])
    first = next(events)
    assert first["PayloadChunk"]["Payload"] == b"first;"
    # The function now waits ten minutes; moving the clock past its 3 s ends it.
    assert next(events)["PayloadChunk"]["Payload"] == b"second;"
    clock_server.advance(4)
    rest = list(events)
    complete = rest[-1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in complete["ErrorDetails"]


def test_buffered_function_answers_one_chunk(lam, buffered):
    out = lam.invoke_with_response_stream(FunctionName=buffered, Payload=b'{"k": 1}')
    chunks, complete = events_of(out)
    assert len(chunks) == 1
    assert json.loads(chunks[0]) == {"buffered": True, "event": {"k": 1}}
    assert "ErrorCode" not in complete

    out = lam.invoke_with_response_stream(FunctionName=buffered, Payload=b'{"fail": true}')
    chunks, complete = events_of(out)
    assert chunks == []
    assert complete["ErrorCode"] == "ValueError"
    assert complete["ErrorDetails"] == "nope"


def test_errors_before_the_stream_are_aws_errors(lam, buffered):
    with pytest.raises(ClientError) as e:
        lam.invoke_with_response_stream(FunctionName=unique("missing"))
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as e:
        lam.invoke_with_response_stream(FunctionName=buffered, Payload=b"not json")
    assert e.value.response["Error"]["Code"] == "InvalidRequestContentException"
    dry = lam.invoke_with_response_stream(FunctionName=buffered, InvocationType="DryRun")
    assert dry["StatusCode"] == 204


def stream_url(lam, name):
    """The function's RESPONSE_STREAM URL, created on first use."""
    try:
        return lam.get_function_url_config(FunctionName=name)["FunctionUrl"]
    except ClientError:
        return lam.create_function_url_config(FunctionName=name, AuthType="NONE",
                                              InvokeMode="RESPONSE_STREAM")["FunctionUrl"]


def url_connection(server, function_url, path):
    parsed = urllib.parse.urlparse(server.endpoint)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    host = urllib.parse.urlparse(function_url).hostname
    return conn, host


def test_function_url_streams_chunks_while_the_function_runs(server, lam, streamer, tmp_path):
    url = stream_url(lam, streamer)
    assert lam.get_function_url_config(FunctionName=streamer)["InvokeMode"] == "RESPONSE_STREAM"
    signal = tmp_path / f"signal-{uuid.uuid4().hex}"
    conn, host = url_connection(server, url, "/")
    conn.request("POST", "/", body=json.dumps({"http": True, "signal": str(signal)}),
                 headers={"Host": host, "Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 201
    assert resp.getheader("x-streamed") == "yes"
    assert resp.getheader("content-type") == "text/plain"
    assert sorted(resp.headers.get_all("set-cookie")) == ["a=1", "b=2"]
    assert resp.getheader("transfer-encoding") == "chunked"
    # read1 returns what has arrived, without waiting for the rest of the body.
    first = resp.read1(64)
    assert first == b"first;"
    signal.write_text("read")
    rest = resp.read()
    assert rest == b"second-after-client-read;third"
    conn.close()
    os.remove(signal)


def test_function_url_stream_without_prelude_and_buffered_functions(server, lam, streamer,
                                                                    buffered):
    url = stream_url(lam, streamer)
    conn, host = url_connection(server, url, "/")
    conn.request("POST", "/", body=json.dumps({}), headers={"Host": host})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("content-type") == "text/plain"
    assert resp.read() == b"first;second;third"
    conn.close()

    # A buffered function behind a RESPONSE_STREAM URL answers as a BUFFERED URL does.
    url = stream_url(lam, buffered)
    conn, host = url_connection(server, url, "/")
    conn.request("GET", "/x", headers={"Host": host})
    resp = conn.getresponse()
    assert resp.status == 200
    assert json.loads(resp.read())["buffered"] is True
    conn.close()
