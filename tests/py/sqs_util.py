"""Independent re-implementations of what SQS computes, and small helpers for tests.

The MD5 of message attributes follows AWS's documented algorithm ("Calculating the MD5
message digest for message attributes", Amazon SQS Developer Guide): attributes sorted by
name; for each one, the 4-byte big-endian length and UTF-8 bytes of the name, the same for
the data type, one transport byte (1 = String/Number, 2 = Binary) and the length-prefixed
value bytes; the MD5 of the whole.
"""

import base64
import hashlib
import struct
import xml.etree.ElementTree as ET

import requests
from botocore.exceptions import ClientError

SQS_NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def md5_hex(data) -> str:
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.md5(data).hexdigest()


def _len_prefixed(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b


def md5_of_attributes(attributes: dict) -> str:
    """MD5 of a MessageAttributes (or MessageSystemAttributes) map, as boto3 shapes it."""
    out = b""
    for name in sorted(attributes):
        attr = attributes[name]
        out += _len_prefixed(name.encode("utf-8"))
        out += _len_prefixed(attr["DataType"].encode("utf-8"))
        if "StringValue" in attr:
            out += b"\x01" + _len_prefixed(attr["StringValue"].encode("utf-8"))
        elif "BinaryValue" in attr:
            value = attr["BinaryValue"]
            if isinstance(value, str):
                value = base64.b64decode(value)
            out += b"\x02" + _len_prefixed(value)
        else:
            raise ValueError(f"attribute {name} has no value")
    return hashlib.md5(out).hexdigest()


def error_code(excinfo) -> str:
    """boto3's error code of a ``pytest.raises(ClientError)`` result."""
    err = excinfo.value if hasattr(excinfo, "value") else excinfo
    assert isinstance(err, ClientError), err
    return err.response["Error"]["Code"]


def status(excinfo) -> int:
    err = excinfo.value if hasattr(excinfo, "value") else excinfo
    return err.response["ResponseMetadata"]["HTTPStatusCode"]


def arn_of(sqs, url) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def attributes_of(sqs, url, *names) -> dict:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(names) or ["All"]).get("Attributes", {})


def receive(sqs, url, **kwargs) -> list:
    kwargs.setdefault("WaitTimeSeconds", 0)
    return sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])


def drain(sqs, url, expected, max_calls=20, **kwargs) -> list:
    """Receives until ``expected`` messages arrived (or ``max_calls`` receives returned)."""
    got = []
    for _ in range(max_calls):
        got += receive(sqs, url, MaxNumberOfMessages=10, **kwargs)
        if len(got) >= expected:
            break
    return got


# ---------------------------------------------------------------- awsQuery protocol

class QueryResponse:
    def __init__(self, resp: requests.Response):
        self.http = resp
        self.status = resp.status_code
        self.text = resp.text
        self.root = ET.fromstring(resp.content) if resp.content.strip().startswith(b"<") else None

    def find(self, path):
        """Text of the first element at ``path`` (tags without namespace, '/'-separated)."""
        node = self._node(path)
        return None if node is None else node.text

    def findall(self, path):
        parts = path.split("/")
        nodes = [self.root]
        for part in parts:
            nodes = [c for n in nodes for c in n if _local(c.tag) == part]
        return nodes

    def _node(self, path):
        nodes = self.findall(path)
        return nodes[0] if nodes else None

    @property
    def error_code(self):
        nodes = self.findall("Error/Code")
        return nodes[0].text if nodes else None


def _local(tag):
    return tag.split("}", 1)[-1]


def query(endpoint, action, params=None, path="/", auth=True, **kw) -> QueryResponse:
    """POSTs one awsQuery (form-encoded) request, as old SDKs and raw HTTP users do."""
    form = {"Action": action, "Version": "2012-11-05"}
    form.update(params or {})
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    if auth:
        # An unsigned but well-formed Authorization header names the service and region
        # through its credential scope, as a SigV4-signing client's would.
        headers["Authorization"] = (
            "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64
        )
        headers["X-Amz-Date"] = "20250101T000000Z"
    resp = requests.post(endpoint + path, data=form, headers=headers, timeout=30, **kw)
    return QueryResponse(resp)
