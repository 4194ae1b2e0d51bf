"""SNS message signatures on HTTP deliveries, verified the way subscribers verify them: fetch
the certificate at ``SigningCertURL``, rebuild AWS's string to sign, check the RSA signature
with SHA1 (``SignatureVersion`` 1) or SHA256 (2) using the ``cryptography`` package."""

import base64
import http.server
import json
import threading
import time
import urllib.request
import uuid

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

NOTIFICATION_KEYS = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
CONFIRMATION_KEYS = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]


class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.posts.append(body)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.posts = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


def wait_posts(httpd, n, timeout=15):
    deadline = time.monotonic() + timeout
    while len(httpd.posts) < n:
        assert time.monotonic() < deadline, httpd.posts
        time.sleep(0.05)
    return [json.loads(p) for p in httpd.posts]


def verify(doc):
    """Raises InvalidSignature unless ``doc`` carries a valid SNS signature."""
    keys = NOTIFICATION_KEYS if doc["Type"] == "Notification" else CONFIRMATION_KEYS
    text = "".join(f"{k}\n{doc[k]}\n" for k in keys if k in doc)
    with urllib.request.urlopen(doc["SigningCertURL"], timeout=10) as resp:
        cert = x509.load_pem_x509_certificate(resp.read())
    digest = hashes.SHA256() if doc["SignatureVersion"] == "2" else hashes.SHA1()
    cert.public_key().verify(base64.b64decode(doc["Signature"]), text.encode(), padding.PKCS1v15(), digest)


@pytest.mark.parametrize("version", ["1", "2"])
def test_confirmation_and_notifications_are_signed(server, endpoint, version):
    sns = server.client("sns")
    attributes = {"SignatureVersion": version} if version == "2" else {}
    arn = sns.create_topic(Name=f"sig-{uuid.uuid4().hex[:8]}", Attributes=attributes)["TopicArn"]
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=f"http://127.0.0.1:{endpoint.server_port}/")
    [confirmation] = wait_posts(endpoint, 1)
    assert confirmation["SignatureVersion"] == version
    verify(confirmation)
    sns.confirm_subscription(TopicArn=arn, Token=confirmation["Token"])
    sns.publish(TopicArn=arn, Message="with subject ünïcode\nand a newline", Subject="hello")
    sns.publish(TopicArn=arn, Message="no subject",
                MessageAttributes={"a": {"DataType": "String", "StringValue": "b"}})
    docs = wait_posts(endpoint, 3)[1:]
    for doc in docs:
        assert doc["SignatureVersion"] == version
        verify(doc)
    tampered = dict(docs[0], Message="something else")
    with pytest.raises(InvalidSignature):
        verify(tampered)


def test_certificate_is_served(server):
    sns = server.client("sns")
    arn = sns.create_topic(Name=f"sig-{uuid.uuid4().hex[:8]}")["TopicArn"]
    assert arn
    url = server.endpoint + "/_aws/sns/SimpleNotificationService-tsumiki.pem"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        cert = x509.load_pem_x509_certificate(resp.read())
    assert cert.public_key().key_size == 2048
