"""Lambda's package locations through boto3 and urllib: GetFunction's ``Code.Location`` and the
layer calls' ``Content.Location`` are presigned URLs that download the stored zip for 10
minutes (the server's clock), byte for byte, per version; an altered or expired URL is refused
with S3's 403 XML errors; a URL survives a ``kill -9`` of the server.
"""

import base64
import hashlib
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request

import boto3
import pytest
from botocore.config import Config

from conftest import ACCOUNT, LISTENING, REGION, tsumiki_bin
from lambda_util import code_sha256, create_function, make_zip, unique, wait_updated

HANDLER = "def handler(event, context):\n    return {'v': %d}\n"


def lambda_client(endpoint):
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}, read_timeout=60))


def download(url):
    """(status, body, headers) of a plain GET, errors included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def sha_b64(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def error_code(body):
    m = re.search(rb"<Code>([^<]*)</Code>", body)
    return m.group(1).decode() if m else None


def with_query(url, **changes):
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    for k, v in changes.items():
        if v is None:
            query.pop(k, None)
        else:
            query[k] = v
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


@pytest.fixture(scope="module")
def lam(server):
    return lambda_client(server.endpoint)


@pytest.fixture(scope="module")
def clam(clock_server):
    return lambda_client(clock_server.endpoint)


def test_latest_and_published_versions_download_their_own_code(lam, server):
    name = unique()
    first = make_zip({"app.py": HANDLER % 1})
    second = make_zip({"app.py": HANDLER % 2, "extra.txt": "more"})
    create_function(lam, name, first, Publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=second)
    wait_updated(lam, name)
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    latest = lam.get_function(FunctionName=name)
    assert latest["Code"]["RepositoryType"] == "S3"
    location = latest["Code"]["Location"]
    # On the endpoint the client called, GETtable as it is.
    assert location.startswith(server.endpoint + "/")
    status, body, headers = download(location)
    assert status == 200
    assert body == second
    assert sha_b64(body) == latest["Configuration"]["CodeSha256"] == code_sha256(second)
    assert headers["Content-Type"] == "application/zip"
    assert int(headers["Content-Length"]) == len(second)

    for qualifier in ("1", "live"):
        v1 = lam.get_function(FunctionName=name, Qualifier=qualifier)
        assert v1["Configuration"]["Version"] == "1"
        status, body, _ = download(v1["Code"]["Location"])
        assert status == 200
        assert sha_b64(body) == v1["Configuration"]["CodeSha256"] == code_sha256(first)

    # HEAD answers the size without the body.
    req = urllib.request.Request(location, method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert int(resp.headers["Content-Length"]) == len(second)
        assert resp.read() == b""


def test_altered_or_guessed_locations_are_refused(lam):
    name, other = unique(), unique()
    create_function(lam, name, {"app.py": HANDLER % 3})
    create_function(lam, other, {"app.py": HANDLER % 4})
    location = lam.get_function(FunctionName=name)["Code"]["Location"]
    other_location = lam.get_function(FunctionName=other)["Code"]["Location"]
    assert download(location)[0] == 200

    signature = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["Signature"]
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    expires = int(dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["Expires"])
    # The other function's path under this URL's signature: a guessed package.
    guessed = urllib.parse.urlsplit(other_location)._replace(
        query=urllib.parse.urlsplit(location).query).geturl()
    cases = {
        "altered signature": with_query(location, Signature=flipped),
        "extended expiry": with_query(location, Expires=str(expires + 3600)),
        "other package": guessed,
    }
    for what, url in cases.items():
        status, body, headers = download(url)
        assert status == 403, what
        assert error_code(body) == "SignatureDoesNotMatch", (what, body)
        assert headers["Content-Type"] == "application/xml"
    for what, url in {"no signature": with_query(location, Signature=None),
                      "no query": location.split("?")[0]}.items():
        status, body, _ = download(url)
        assert status == 403, what
        assert error_code(body) == "AccessDenied", (what, body)
    # Refusals change nothing: the real URLs still work.
    assert download(location)[0] == 200
    assert download(other_location)[0] == 200


def test_location_expires_after_ten_minutes_on_the_server_clock(clam, clock_server):
    name = unique()
    zip_bytes = make_zip({"app.py": HANDLER % 5})
    create_function(clam, name, zip_bytes)
    location = clam.get_function(FunctionName=name)["Code"]["Location"]
    clock_server.advance(540)
    status, body, _ = download(location)
    assert status == 200 and body == zip_bytes
    clock_server.advance(61)
    status, body, _ = download(location)
    assert status == 403
    assert error_code(body) == "AccessDenied"
    assert b"<Message>Request has expired</Message>" in body
    assert b"<Expires>" in body and b"<ServerTime>" in body
    # A new GetFunction hands out a new 10 minutes.
    fresh = clam.get_function(FunctionName=name)["Code"]["Location"]
    status, body, _ = download(fresh)
    assert status == 200 and body == zip_bytes


def test_layer_content_location_downloads_the_layer_zip(lam):
    layer = unique("layer")
    first = make_zip({"python/lib_a.py": "A = 1\n"})
    second = make_zip({"python/lib_b.py": "B = 2\n"})
    lv1 = lam.publish_layer_version(LayerName=layer, Content={"ZipFile": first})
    lv2 = lam.publish_layer_version(LayerName=layer, Content={"ZipFile": second})
    for published, zip_bytes in ((lv1, first), (lv2, second)):
        status, body, _ = download(published["Content"]["Location"])
        assert status == 200 and body == zip_bytes
        assert sha_b64(body) == published["Content"]["CodeSha256"]
    got = lam.get_layer_version(LayerName=layer, VersionNumber=1)
    status, body, _ = download(got["Content"]["Location"])
    assert status == 200 and sha_b64(body) == got["Content"]["CodeSha256"] == code_sha256(first)
    by_arn = lam.get_layer_version_by_arn(Arn=lv2["LayerVersionArn"])
    status, body, _ = download(by_arn["Content"]["Location"])
    assert status == 200 and body == second
    # Listings carry no Content, as on AWS.
    assert all("Content" not in v
               for v in lam.list_layer_versions(LayerName=layer)["LayerVersions"])


def start(data_dir, log, listen="127.0.0.1:0"):
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", listen,
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=log,
                            env=dict(os.environ, NO_COLOR="1"))
    m = LISTENING.search(proc.stdout.readline().decode())
    assert m, "tsumiki did not start"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, m.group(1)


def test_location_survives_kill_9(tmp_path):
    """The signing key is durable: a URL handed out before a crash downloads after it."""
    log = open(tmp_path / "server.log", "wb")
    data = tmp_path / "data"
    proc, endpoint = start(data, log)
    try:
        lam = lambda_client(endpoint)
        name = unique()
        zip_bytes = make_zip({"app.py": HANDLER % 6})
        create_function(lam, name, zip_bytes)
        location = lam.get_function(FunctionName=name)["Code"]["Location"]
        assert download(location)[1] == zip_bytes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc, endpoint = start(data, log, listen=urllib.parse.urlsplit(endpoint).netloc)
    try:
        status, body, _ = download(location)
        assert status == 200 and body == zip_bytes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
