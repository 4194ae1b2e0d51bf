"""SNS to an HTTPS endpoint: the confirmation handshake and a notification over TLS, with the
server's certificate checked against the roots tsumiki trusts (here a test CA named by
``SSL_CERT_FILE``), and no delivery at all to an endpoint whose certificate is not trusted."""

import datetime
import http.server
import ipaddress
import json
import ssl
import threading
import time
import urllib.request
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, and a certificate for localhost/127.0.0.1 it signed, as PEM files."""
    d = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("tsumiki test CA")).issuer_name(_name("tsumiki test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return d


class Recorder(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.posts.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def https_endpoint(pki):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki / "cert.pem", pki / "key.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.posts = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


@pytest.fixture
def trusting_server(pki, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    s = Server.start(tmp_path)
    yield s
    s.stop()


def wait_posts(httpd, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(httpd.posts) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return httpd.posts


def test_https_confirmation_and_notification(trusting_server, https_endpoint):
    sns = trusting_server.client("sns")
    arn = sns.create_topic(Name=f"tls-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = f"https://localhost:{https_endpoint.server_port}/hook"
    assert sns.subscribe(TopicArn=arn, Protocol="https", Endpoint=url)["SubscriptionArn"] == \
        "pending confirmation"
    [(headers, body)] = wait_posts(https_endpoint, 1)
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    doc = json.loads(body)
    with urllib.request.urlopen(doc["SubscribeURL"], timeout=10) as resp:
        assert b"<SubscriptionArn>" in resp.read()
    sent = sns.publish(TopicArn=arn, Message="over TLS")
    posts = wait_posts(https_endpoint, 2)
    assert len(posts) == 2, posts
    headers, body = posts[1]
    assert headers["x-amz-sns-message-id"] == sent["MessageId"]
    assert json.loads(body)["Message"] == "over TLS"


def test_untrusted_certificate_gets_nothing(server, https_endpoint):
    # The session's server trusts only the machine's roots, which never signed the test CA.
    sns = server.client("sns")
    arn = sns.create_topic(Name=f"untrusted-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = f"https://127.0.0.1:{https_endpoint.server_port}/hook"
    sns.subscribe(TopicArn=arn, Protocol="https", Endpoint=url)
    time.sleep(2)
    assert https_endpoint.posts == []
    [sub] = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert sub["SubscriptionArn"] == "PendingConfirmation"
