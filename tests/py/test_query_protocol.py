"""The awsQuery protocol (form-encoded requests, XML answers), as raw HTTP clients and older
SDKs speak it. See "Making query API requests using AWS query protocol" in the SQS guide."""

import uuid
from urllib.parse import urlsplit

import pytest
import requests

from sqs_util import md5_hex, md5_of_attributes, query


@pytest.fixture
def q(server):
    def call(action, params=None, **kw):
        return query(server.endpoint, action, params, **kw)
    return call


@pytest.fixture
def qurl(q):
    r = q("CreateQueue", {"QueueName": f"query-{uuid.uuid4().hex[:10]}"})
    assert r.status == 200, r.text
    return r.find("CreateQueueResult/QueueUrl")


def attrs_of(resp, path):
    return {a.find("{*}Name").text: a.find("{*}Value").text for a in resp.findall(path)}


def test_create_queue_with_attributes_and_tags(q):
    n = f"query-{uuid.uuid4().hex[:10]}"
    r = q("CreateQueue", {"QueueName": n,
                          "Attribute.1.Name": "VisibilityTimeout", "Attribute.1.Value": "45",
                          "Attribute.2.Name": "DelaySeconds", "Attribute.2.Value": "3",
                          "Tag.1.Key": "team", "Tag.1.Value": "core"})
    assert r.status == 200, r.text
    assert r.root.tag.endswith("CreateQueueResponse")
    url = r.find("CreateQueueResult/QueueUrl")
    assert url.endswith("/" + n)
    assert r.find("ResponseMetadata/RequestId")
    r = q("GetQueueAttributes", {"QueueUrl": url, "AttributeName.1": "All"})
    a = attrs_of(r, "GetQueueAttributesResult/Attribute")
    assert a["VisibilityTimeout"] == "45" and a["DelaySeconds"] == "3"
    assert a["MessageRetentionPeriod"] == "345600"
    r = q("ListQueueTags", {"QueueUrl": url})
    tags = {t.find("{*}Key").text: t.find("{*}Value").text for t in r.findall("ListQueueTagsResult/Tag")}
    assert tags == {"team": "core"}


def test_send_receive_delete_with_attributes(q, qurl):
    attrs = {"colour": {"DataType": "String", "StringValue": "blue"},
             "n": {"DataType": "Number", "StringValue": "7"}}
    body = "héllo & <xml> \"quotes\""
    r = q("SendMessage", {"QueueUrl": qurl, "MessageBody": body,
                          "MessageAttribute.1.Name": "colour",
                          "MessageAttribute.1.Value.DataType": "String",
                          "MessageAttribute.1.Value.StringValue": "blue",
                          "MessageAttribute.2.Name": "n",
                          "MessageAttribute.2.Value.DataType": "Number",
                          "MessageAttribute.2.Value.StringValue": "7"})
    assert r.status == 200, r.text
    assert r.find("SendMessageResult/MD5OfMessageBody") == md5_hex(body)
    assert r.find("SendMessageResult/MD5OfMessageAttributes") == md5_of_attributes(attrs)
    message_id = r.find("SendMessageResult/MessageId")

    r = q("ReceiveMessage", {"QueueUrl": qurl, "AttributeName.1": "All", "MessageAttributeName.1": "All",
                             "MaxNumberOfMessages": "5"})
    assert r.status == 200, r.text
    [msg] = r.findall("ReceiveMessageResult/Message")
    assert msg.find("{*}MessageId").text == message_id
    assert msg.find("{*}Body").text == body
    assert msg.find("{*}MD5OfBody").text == md5_hex(body)
    assert msg.find("{*}MD5OfMessageAttributes").text == md5_of_attributes(attrs)
    system = {a.find("{*}Name").text: a.find("{*}Value").text for a in msg.findall("{*}Attribute")}
    assert system["ApproximateReceiveCount"] == "1"
    user = {a.find("{*}Name").text: (a.find("{*}Value/{*}DataType").text, a.find("{*}Value/{*}StringValue").text)
            for a in msg.findall("{*}MessageAttribute")}
    assert user == {"colour": ("String", "blue"), "n": ("Number", "7")}

    r = q("DeleteMessage", {"QueueUrl": qurl, "ReceiptHandle": msg.find("{*}ReceiptHandle").text})
    assert r.status == 200, r.text
    r = q("ReceiveMessage", {"QueueUrl": qurl})
    assert r.findall("ReceiveMessageResult/Message") == []


def test_binary_message_attribute(q, qurl):
    import base64
    raw = b"\x00\x01binary\xff"
    r = q("SendMessage", {"QueueUrl": qurl, "MessageBody": "b",
                          "MessageAttribute.1.Name": "bin",
                          "MessageAttribute.1.Value.DataType": "Binary",
                          "MessageAttribute.1.Value.BinaryValue": base64.b64encode(raw).decode()})
    assert r.status == 200, r.text
    assert r.find("SendMessageResult/MD5OfMessageAttributes") == md5_of_attributes(
        {"bin": {"DataType": "Binary", "BinaryValue": raw}})
    r = q("ReceiveMessage", {"QueueUrl": qurl, "MessageAttributeName.1": "bin"})
    [attr] = r.findall("ReceiveMessageResult/Message/MessageAttribute")
    assert base64.b64decode(attr.find("{*}Value/{*}BinaryValue").text) == raw


def test_batch_with_a_failing_entry(q, qurl):
    r = q("SendMessageBatch", {"QueueUrl": qurl,
                               "SendMessageBatchRequestEntry.1.Id": "good",
                               "SendMessageBatchRequestEntry.1.MessageBody": "fine",
                               "SendMessageBatchRequestEntry.2.Id": "bad",
                               "SendMessageBatchRequestEntry.2.MessageBody": "bell \x07"})
    assert r.status == 200, r.text
    [ok] = r.findall("SendMessageBatchResult/SendMessageBatchResultEntry")
    assert ok.find("{*}Id").text == "good"
    assert ok.find("{*}MD5OfMessageBody").text == md5_hex("fine")
    [failed] = r.findall("SendMessageBatchResult/BatchResultErrorEntry")
    assert failed.find("{*}Id").text == "bad"
    assert failed.find("{*}Code").text == "InvalidMessageContents"
    assert failed.find("{*}SenderFault").text == "true"


def test_list_queues(q, qurl):
    name = qurl.rsplit("/", 1)[1]
    r = q("ListQueues", {"QueueNamePrefix": name})
    assert [u.text for u in r.findall("ListQueuesResult/QueueUrl")] == [qurl]


@pytest.mark.parametrize("action,params,code,status", [
    ("GetQueueUrl", {"QueueName": "no-such-queue-anywhere"}, "AWS.SimpleQueueService.NonExistentQueue", 400),
    ("CreateQueue", {}, "MissingParameter", 400),
    ("CreateQueue", {"QueueName": "bad name!"}, "InvalidParameterValue", 400),
    ("ReceiveMessage", {"QueueUrl": "http://localhost/123456789012/no-such-queue-anywhere"},
     "AWS.SimpleQueueService.NonExistentQueue", 400),
    ("Frobnicate", {}, "InvalidAction", 400),
])
def test_error_responses(q, action, params, code, status):
    r = q(action, params)
    assert r.status == status, r.text
    assert r.root is not None and r.root.tag.endswith("ErrorResponse"), r.text
    assert r.error_code == code
    assert r.find("Error/Type") == "Sender"
    assert r.find("Error/Message")
    assert r.find("RequestId")


def test_attribute_errors(q, qurl):
    r = q("GetQueueAttributes", {"QueueUrl": qurl, "AttributeName.1": "Nope"})
    assert (r.status, r.error_code) == (400, "InvalidAttributeName")
    r = q("SetQueueAttributes", {"QueueUrl": qurl, "Attribute.1.Name": "VisibilityTimeout",
                                 "Attribute.1.Value": "99999"})
    assert (r.status, r.error_code) == (400, "InvalidAttributeValue")
    r = q("DeleteMessage", {"QueueUrl": qurl, "ReceiptHandle": "garbage"})
    assert (r.status, r.error_code) == (404, "ReceiptHandleIsInvalid")


def test_batch_shape_errors(q, qurl):
    params = {"QueueUrl": qurl}
    for i in range(1, 12):
        params[f"SendMessageBatchRequestEntry.{i}.Id"] = f"e{i}"
        params[f"SendMessageBatchRequestEntry.{i}.MessageBody"] = "x"
    r = q("SendMessageBatch", params)
    assert (r.status, r.error_code) == (400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest")
    r = q("DeleteMessageBatch", {"QueueUrl": qurl,
                                 "DeleteMessageBatchRequestEntry.1.Id": "x",
                                 "DeleteMessageBatchRequestEntry.1.ReceiptHandle": "h",
                                 "DeleteMessageBatchRequestEntry.2.Id": "x",
                                 "DeleteMessageBatchRequestEntry.2.ReceiptHandle": "h"})
    assert (r.status, r.error_code) == (400, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct")


def test_queue_url_as_the_endpoint(q, qurl):
    """AWS documents the queue URL as the request endpoint:
    POST /123456789012/MyQueue with Action=SendMessage and no QueueUrl parameter."""
    path = urlsplit(qurl).path
    r = q("SendMessage", {"MessageBody": "sent to the queue's own URL"}, path=path)
    assert r.status == 200, r.text
    r = q("ReceiveMessage", {"QueueUrl": qurl})
    assert [m.find("{*}Body").text for m in r.findall("ReceiveMessageResult/Message")] == [
        "sent to the queue's own URL"]


def test_get_request(server, qurl):
    """AWS documents GET requests with the parameters in the query string."""
    name = qurl.rsplit("/", 1)[1]
    resp = requests.get(server.endpoint + "/", params={
        "Action": "ListQueues", "Version": "2012-11-05", "QueueNamePrefix": name}, timeout=10)
    assert resp.status_code == 200, resp.text
    assert qurl in resp.text
