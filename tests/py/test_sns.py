"""SNS through boto3: topics and subscriptions, Publish/PublishBatch validation, deliveries to
SQS (enveloped and raw), Lambda, a local HTTP endpoint through the confirmation handshake,
filter policies on attributes and body, FIFO ordering, dead-letter queues, and durability of
accepted messages across kill -9."""

import http.server
import json
import re
import subprocess
import threading
import time
import urllib.request
import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, tsumiki_bin
from lambda_util import create_function, unique


def code_of(excinfo):
    return excinfo.value.response["Error"]["Code"]


def message_of(excinfo):
    return excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def sns(server):
    return server.client("sns")


@pytest.fixture(scope="module")
def lam(server):
    return server.client("lambda")


@pytest.fixture(scope="module")
def logs(server):
    return server.client("logs")


def new_queue(sqs, fifo=False, **attrs):
    name = f"q-{uuid.uuid4().hex[:10]}" + (".fifo" if fifo else "")
    if fifo:
        attrs["FifoQueue"] = "true"
    url = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def receive_all(sqs, url, want, timeout=10, **kw):
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kw)
        for m in out.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


def test_topic_lifecycle_attributes_tags_and_paging(sns):
    name = f"t-{uuid.uuid4().hex[:10]}"
    arn = sns.create_topic(Name=name, Attributes={"DisplayName": "shown"},
                           Tags=[{"Key": "team", "Value": "a"}])["TopicArn"]
    assert arn == f"arn:aws:sns:{REGION}:{ACCOUNT}:{name}"
    # Idempotent with the same attributes, refused with different ones.
    assert sns.create_topic(Name=name, Attributes={"DisplayName": "shown"})["TopicArn"] == arn
    with pytest.raises(ClientError) as e:
        sns.create_topic(Name=name, Attributes={"DisplayName": "other"})
    assert code_of(e) == "InvalidParameter"
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["DisplayName"] == "shown"
    assert attrs["Owner"] == ACCOUNT
    assert attrs["SubscriptionsConfirmed"] == "0"
    assert json.loads(attrs["EffectiveDeliveryPolicy"])["http"]["defaultHealthyRetryPolicy"]["numRetries"] == 3
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="new")
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["DisplayName"] == "new"
    with pytest.raises(ClientError) as e:
        sns.set_topic_attributes(TopicArn=arn, AttributeName="Bogus", AttributeValue="x")
    assert code_of(e) == "InvalidParameter"
    sns.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}])
    sns.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert sns.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    with pytest.raises(ClientError) as e:
        sns.create_topic(Name="bad name!")
    assert code_of(e) == "InvalidParameter"
    assert message_of(e) == "Invalid parameter: Topic Name"

    # Paging: 100 a page.
    created = [sns.create_topic(Name=f"page-{uuid.uuid4().hex[:8]}-{i}")["TopicArn"] for i in range(105)]
    seen, token = [], None
    pages = 0
    while True:
        out = sns.list_topics(**({"NextToken": token} if token else {}))
        pages += 1
        seen += [t["TopicArn"] for t in out["Topics"]]
        token = out.get("NextToken")
        if not token:
            break
    assert pages >= 2
    assert set(created) <= set(seen)
    assert len(seen) == len(set(seen))
    for t in created:
        sns.delete_topic(TopicArn=t)

    sns.delete_topic(TopicArn=arn)
    sns.delete_topic(TopicArn=arn)  # deleting twice is fine
    with pytest.raises(ClientError) as e:
        sns.get_topic_attributes(TopicArn=arn)
    assert code_of(e) == "NotFound"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_fifo_topic_rules(sns, sqs):
    with pytest.raises(ClientError) as e:
        sns.create_topic(Name=f"f-{uuid.uuid4().hex[:8]}", Attributes={"FifoTopic": "true"})
    assert code_of(e) == "InvalidParameter"
    arn = sns.create_topic(Name=f"f-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    assert attrs["FifoTopic"] == "true" and attrs["ContentBasedDeduplication"] == "false"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="m")
    assert message_of(e) == "Invalid parameter: The MessageGroupId parameter is required for FIFO topics"
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn, Message="m", MessageGroupId="g")
    assert "ContentBasedDeduplication" in message_of(e)
    _, qarn = new_queue(sqs)
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=arn, Protocol="lambda",
                      Endpoint=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f")
    assert code_of(e) == "InvalidParameter"


def test_publish_validation(sns):
    arn = sns.create_topic(Name=f"v-{uuid.uuid4().hex[:8]}")["TopicArn"]
    cases = [
        (dict(Message=""), "Invalid parameter: Empty message"),
        (dict(Message="x" * (256 * 1024 + 1)), "Invalid parameter: Message too long"),
        (dict(Message='{"sqs": "x"}', MessageStructure="json"),
         "Invalid parameter: Message Structure - No default entry in JSON message body"),
        (dict(Message="not json", MessageStructure="json"),
         "Invalid parameter: Message Structure - JSON message body failed to parse"),
        (dict(Message="m", MessageDeduplicationId="d"),
         "Invalid parameter: MessageDeduplicationId Reason: The request includes MessageDeduplicationId parameter that is not valid for this topic type"),
        (dict(Message="m", MessageAttributes={"n": {"DataType": "Number", "StringValue": "abc"}}),
         "Invalid parameter: MessageAttributes Reason: Could not cast message attribute 'n' value to number."),
    ]
    for kwargs, message in cases:
        with pytest.raises(ClientError) as e:
            sns.publish(TopicArn=arn, **kwargs)
        assert code_of(e) == "InvalidParameter", kwargs
        assert message_of(e) == message
    # Exactly 256 KiB is allowed.
    assert sns.publish(TopicArn=arn, Message="x" * (256 * 1024))["MessageId"]
    with pytest.raises(ClientError) as e:
        sns.publish(TopicArn=arn + "-missing", Message="m")
    assert code_of(e) == "NotFound"
    with pytest.raises(ClientError) as e:
        sns.publish(PhoneNumber="+15555550100", Message="m")
    assert code_of(e) == "NotImplemented"

    with pytest.raises(ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[])
    assert code_of(e) == "EmptyBatchRequest"
    with pytest.raises(ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
            {"Id": str(i), "Message": "m"} for i in range(11)])
    assert code_of(e) == "TooManyEntriesInBatchRequest"
    with pytest.raises(ClientError) as e:
        sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
            {"Id": "a", "Message": "m"}, {"Id": "a", "Message": "n"}])
    assert code_of(e) == "BatchEntryIdsNotDistinct"
    out = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
        {"Id": "ok", "Message": "m"}, {"Id": "bad", "Message": ""}])
    assert [s["Id"] for s in out["Successful"]] == ["ok"]
    assert out["Failed"] == [{"Id": "bad", "Code": "InvalidParameter",
                              "Message": "Invalid parameter: Empty message", "SenderFault": True}]


def test_sqs_enveloped_and_raw_with_attributes(server, sns, sqs):
    arn = sns.create_topic(Name=f"s-{uuid.uuid4().hex[:8]}")["TopicArn"]
    env_url, env_arn = new_queue(sqs)
    raw_url, raw_arn = new_queue(sqs)
    sub_env = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=env_arn)["SubscriptionArn"]
    sub_raw = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=raw_arn,
                            Attributes={"RawMessageDelivery": "true"})["SubscriptionArn"]
    assert sub_env.startswith(arn + ":")
    # Subscribing again answers the same subscription.
    assert sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=env_arn)["SubscriptionArn"] == sub_env
    listed = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert {s["SubscriptionArn"] for s in listed} == {sub_env, sub_raw}
    assert sub_env in {s["SubscriptionArn"] for s in sns.list_subscriptions()["Subscriptions"]}
    sattrs = sns.get_subscription_attributes(SubscriptionArn=sub_raw)["Attributes"]
    assert sattrs["RawMessageDelivery"] == "true" and sattrs["PendingConfirmation"] == "false"
    assert sns.get_topic_attributes(TopicArn=arn)["Attributes"]["SubscriptionsConfirmed"] == "2"

    out = sns.publish(TopicArn=arn, Message="hello", Subject="greeting",
                      MessageAttributes={"color": {"DataType": "String", "StringValue": "red"},
                                         "n": {"DataType": "Number", "StringValue": "7"},
                                         "b": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}})
    [env] = receive_all(sqs, env_url, 1)
    body = json.loads(env["Body"])
    assert body["Type"] == "Notification"
    assert body["MessageId"] == out["MessageId"]
    assert body["TopicArn"] == arn
    assert body["Subject"] == "greeting"
    assert body["Message"] == "hello"
    assert body["SignatureVersion"] == "1"
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", body["Timestamp"])
    assert body["MessageAttributes"]["color"] == {"Type": "String", "Value": "red"}
    assert body["MessageAttributes"]["n"] == {"Type": "Number", "Value": "7"}
    assert body["MessageAttributes"]["b"] == {"Type": "Binary", "Value": "AP8="}
    assert "Action=Unsubscribe" in body["UnsubscribeURL"]
    [raw] = receive_all(sqs, raw_url, 1, MessageAttributeNames=["All"])
    assert raw["Body"] == "hello"
    assert raw["MessageAttributes"]["color"] == {"StringValue": "red", "DataType": "String"}
    assert raw["MessageAttributes"]["b"]["BinaryValue"] == b"\x00\xff"

    # MessageStructure json: each protocol gets its own text.
    sns.publish(TopicArn=arn, MessageStructure="json",
                Message=json.dumps({"default": "d", "sqs": "for sqs"}))
    [m] = receive_all(sqs, raw_url, 1)
    assert m["Body"] == "for sqs"
    receive_all(sqs, env_url, 1)

    # The UnsubscribeURL works unsigned, as AWS's does.
    with urllib.request.urlopen(body["UnsubscribeURL"], timeout=10) as resp:
        assert resp.status == 200
    assert sub_env not in {s["SubscriptionArn"] for s in
                           sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]}
    with pytest.raises(ClientError) as e:
        sns.get_subscription_attributes(SubscriptionArn=sub_env)
    assert code_of(e) == "NotFound"
    sns.unsubscribe(SubscriptionArn=sub_raw)


def test_filter_policies_on_attributes_and_body(sns, sqs):
    arn = sns.create_topic(Name=f"fp-{uuid.uuid4().hex[:8]}")["TopicArn"]
    attr_url, attr_arn = new_queue(sqs)
    body_url, body_arn = new_queue(sqs)
    attr_sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=attr_arn, Attributes={
        "RawMessageDelivery": "true",
        "FilterPolicy": json.dumps({"color": ["red", {"prefix": "gre"}],
                                    "price": [{"numeric": [">", 100]}]})})["SubscriptionArn"]
    body_sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=body_arn, Attributes={
        "RawMessageDelivery": "true", "FilterPolicyScope": "MessageBody",
        "FilterPolicy": json.dumps({"order": {"kind": ["book"]}})})["SubscriptionArn"]
    a = sns.get_subscription_attributes(SubscriptionArn=body_sub)["Attributes"]
    assert a["FilterPolicyScope"] == "MessageBody"

    def attrs(color, price):
        return {"color": {"DataType": "String", "StringValue": color},
                "price": {"DataType": "Number", "StringValue": str(price)}}

    sns.publish(TopicArn=arn, Message="red-cheap", MessageAttributes=attrs("red", 5))
    sns.publish(TopicArn=arn, Message="green-dear", MessageAttributes=attrs("green", 500))
    sns.publish(TopicArn=arn, Message="blue-dear", MessageAttributes=attrs("blue", 500))
    sns.publish(TopicArn=arn, Message=json.dumps({"order": {"kind": "book", "n": 1}}))
    sns.publish(TopicArn=arn, Message=json.dumps({"order": {"kind": "pen"}}))
    sns.publish(TopicArn=arn, Message="not json at all")
    got = receive_all(sqs, attr_url, 1, timeout=4)
    assert [m["Body"] for m in got] == ["green-dear"]
    got = receive_all(sqs, body_url, 1, timeout=4)
    assert [json.loads(m["Body"])["order"]["kind"] for m in got] == ["book"]

    # AWS's validation messages.
    too_many = {k: ["x"] for k in "abcdef"}
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(SubscriptionArn=body_sub, AttributeName="FilterPolicy",
                                        AttributeValue=json.dumps(too_many))
    assert code_of(e) == "InvalidParameter"
    assert message_of(e) == "Invalid parameter: FilterPolicy: Filter policy can not have more than 5 keys"
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(
            SubscriptionArn=body_sub, AttributeName="FilterPolicy",
            AttributeValue=json.dumps({"a": list(range(6)), "b": list(range(5)), "c": list(range(6))}))
    assert message_of(e) == "Invalid parameter: FilterPolicy: Filter policy is too complex"
    # A nested policy needs the MessageBody scope, also when the scope changes under it.
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(SubscriptionArn=body_sub, AttributeName="FilterPolicyScope",
                                        AttributeValue="MessageAttributes")
    assert code_of(e) == "InvalidParameter"
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(SubscriptionArn=attr_sub, AttributeName="FilterPolicy",
                                        AttributeValue=json.dumps({"a": {"b": ["c"]}}))
    assert message_of(e) == ("Invalid parameter: FilterPolicy: Filter policy scope MessageAttributes"
                             " does not support nested filter policy")


def test_fifo_topic_to_fifo_queue_in_order_with_dedup(sns, sqs):
    arn = sns.create_topic(Name=f"ord-{uuid.uuid4().hex[:8]}.fifo",
                           Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"})["TopicArn"]
    url, qarn = new_queue(sqs, fifo=True)
    std_url, std_arn = new_queue(sqs, fifo=True)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn,
                  Attributes={"RawMessageDelivery": "true"})
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=std_arn)
    seqs = []
    for i in range(20):
        out = sns.publish(TopicArn=arn, Message=f"m{i}", MessageGroupId="g1")
        seqs.append(int(out["SequenceNumber"]))
    assert seqs == sorted(seqs)
    # Same content within 5 minutes: deduplicated, same answer.
    again = sns.publish(TopicArn=arn, Message="m0", MessageGroupId="g1")
    batch = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
        {"Id": f"e{i}", "Message": f"b{i}", "MessageGroupId": "g1"} for i in range(5)])
    assert len(batch["Successful"]) == 5
    got = receive_all(sqs, url, 25, timeout=15, AttributeNames=["All"])
    assert [m["Body"] for m in got] == [f"m{i}" for i in range(20)] + [f"b{i}" for i in range(5)]
    assert {m["Attributes"]["MessageGroupId"] for m in got} == {"g1"}
    enveloped = receive_all(sqs, std_url, 25, timeout=15)
    bodies = [json.loads(m["Body"]) for m in enveloped]
    assert [b["Message"] for b in bodies][:20] == [f"m{i}" for i in range(20)]
    assert int(bodies[0]["SequenceNumber"]) == seqs[0]
    assert again["MessageId"] == bodies[0]["MessageId"]
    # A standard topic cannot feed a FIFO queue.
    std_topic = sns.create_topic(Name=f"std-{uuid.uuid4().hex[:8]}")["TopicArn"]
    with pytest.raises(ClientError) as e:
        sns.subscribe(TopicArn=std_topic, Protocol="sqs", Endpoint=qarn)
    assert code_of(e) == "InvalidParameter"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Records every POST; answers the status the server's ``status`` list says next."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.server.posts.append((dict(self.headers), body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    httpd.posts = []
    httpd.statuses = []
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()


def wait_posts(httpd, n, timeout=10):
    deadline = time.monotonic() + timeout
    while len(httpd.posts) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return httpd.posts


def test_http_endpoint_confirmation_handshake_and_notification(sns, endpoint):
    arn = sns.create_topic(Name=f"h-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = f"http://127.0.0.1:{endpoint.server_port}/hook"
    out = sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=url)
    assert out["SubscriptionArn"] == "pending confirmation"
    [(headers, body)] = wait_posts(endpoint, 1)
    assert headers["x-amz-sns-message-type"] == "SubscriptionConfirmation"
    assert headers["x-amz-sns-topic-arn"] == arn
    doc = json.loads(body)
    assert doc["Type"] == "SubscriptionConfirmation" and doc["TopicArn"] == arn
    [pending] = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    assert pending["SubscriptionArn"] == "PendingConfirmation"
    # Nothing is delivered before confirmation.
    sns.publish(TopicArn=arn, Message="too early")
    # The SubscribeURL, fetched unsigned as an endpoint would, confirms.
    with urllib.request.urlopen(doc["SubscribeURL"], timeout=10) as resp:
        xml = resp.read().decode()
    sub_arn = re.search(r"<SubscriptionArn>(.*?)</SubscriptionArn>", xml).group(1)
    assert sub_arn.startswith(arn + ":")
    attrs = sns.get_subscription_attributes(SubscriptionArn=sub_arn)["Attributes"]
    assert attrs["PendingConfirmation"] == "false"
    assert json.loads(attrs["EffectiveDeliveryPolicy"])["healthyRetryPolicy"]["numRetries"] == 3
    # ConfirmSubscription with a wrong token is refused.
    with pytest.raises(ClientError) as e:
        sns.confirm_subscription(TopicArn=arn, Token="nope")
    assert code_of(e) == "InvalidParameter"

    sent = sns.publish(TopicArn=arn, Message="hi there", Subject="s")
    posts = wait_posts(endpoint, 2)
    headers, body = posts[1]
    assert headers["x-amz-sns-message-type"] == "Notification"
    assert headers["x-amz-sns-message-id"] == sent["MessageId"]
    assert headers["x-amz-sns-topic-arn"] == arn
    assert headers["x-amz-sns-subscription-arn"] == sub_arn
    note = json.loads(body)
    assert note["Message"] == "hi there" and note["Subject"] == "s"
    assert len(endpoint.posts) == 2  # "too early" was never delivered


def test_http_retries_on_the_clock(clock_server, endpoint):
    """A 500 is retried after AWS's default 20 s (manual clock); a 404 is not retried."""
    sns = clock_server.client("sns")
    arn = sns.create_topic(Name=f"hr-{uuid.uuid4().hex[:8]}")["TopicArn"]
    url = f"http://127.0.0.1:{endpoint.server_port}/"
    sns.subscribe(TopicArn=arn, Protocol="http", Endpoint=url)
    [(_, body)] = wait_posts(endpoint, 1)
    sns.confirm_subscription(TopicArn=arn, Token=json.loads(body)["Token"])
    endpoint.statuses = [500]
    sns.publish(TopicArn=arn, Message="retry me")
    wait_posts(endpoint, 2)
    time.sleep(0.5)
    assert len(endpoint.posts) == 2  # no retry before the delay
    clock_server.advance(21)
    posts = wait_posts(endpoint, 3)
    assert len(posts) == 3
    assert json.loads(posts[2][1])["Message"] == "retry me"


def test_redrive_policy_dead_letter_queue(sns, sqs):
    arn = sns.create_topic(Name=f"dl-{uuid.uuid4().hex[:8]}")["TopicArn"]
    dlq_url, dlq_arn = new_queue(sqs)
    missing = f"arn:aws:sqs:{REGION}:{ACCOUNT}:does-not-exist-{uuid.uuid4().hex[:6]}"
    sub = sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=missing, Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn})})["SubscriptionArn"]
    assert json.loads(sns.get_subscription_attributes(SubscriptionArn=sub)["Attributes"]["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn}
    with pytest.raises(ClientError) as e:
        sns.set_subscription_attributes(SubscriptionArn=sub, AttributeName="RedrivePolicy",
                                        AttributeValue="{not json")
    assert code_of(e) == "InvalidParameter"
    out = sns.publish(TopicArn=arn, Message="lost")
    [m] = receive_all(sqs, dlq_url, 1)
    body = json.loads(m["Body"])
    assert body["Message"] == "lost" and body["MessageId"] == out["MessageId"]


HANDLER = r'''
import json

def handler(event, context):
    print("SNSEVENT " + json.dumps(event))
    return {}
'''


def test_lambda_subscription_gets_the_sns_event(sns, lam, logs):
    function = unique("snsfn")
    fn_arn = create_function(lam, function, {"app.py": HANDLER})["FunctionArn"]
    arn = sns.create_topic(Name=f"l-{uuid.uuid4().hex[:8]}")["TopicArn"]
    sub = sns.subscribe(TopicArn=arn, Protocol="lambda", Endpoint=fn_arn)["SubscriptionArn"]
    out = sns.publish(TopicArn=arn, Message="to lambda", Subject="subj",
                      MessageAttributes={"k": {"DataType": "String", "StringValue": "v"}})
    deadline = time.monotonic() + 30
    events = []
    while time.monotonic() < deadline and not events:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}",
                                            filterPattern='"SNSEVENT"')["events"]
        except ClientError:
            pass
        time.sleep(0.2)
    assert events, "the function never ran"
    event = json.loads(events[0]["message"].split("SNSEVENT ", 1)[1])
    [record] = event["Records"]
    assert record["EventSource"] == "aws:sns"
    assert record["EventVersion"] == "1.0"
    assert record["EventSubscriptionArn"] == sub
    assert record["Sns"]["MessageId"] == out["MessageId"]
    assert record["Sns"]["Message"] == "to lambda"
    assert record["Sns"]["Subject"] == "subj"
    assert record["Sns"]["TopicArn"] == arn
    assert record["Sns"]["MessageAttributes"] == {"k": {"Type": "String", "Value": "v"}}
    assert record["Sns"]["Type"] == "Notification"


def test_email_json_goes_to_the_mailbox(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
        sns = boto3.client("sns", endpoint_url=endpoint, region_name=REGION,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        arn = sns.create_topic(Name="mail")["TopicArn"]
        sns.subscribe(TopicArn=arn, Protocol="email-json", Endpoint="me@example.com")
        box = data / "sns" / "mailbox" / "me@example.com"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(box.glob("*.json")):
            time.sleep(0.05)
        [confirmation] = list(box.glob("*.json"))
        doc = json.loads(confirmation.read_text())
        sns.confirm_subscription(TopicArn=arn, Token=doc["Token"])
        sns.publish(TopicArn=arn, Message="mailed")
        while time.monotonic() < deadline and len(list(box.glob("*.json"))) < 2:
            time.sleep(0.05)
        notes = [json.loads(p.read_text()) for p in sorted(box.glob("*.json"))]
        assert [n["Type"] for n in notes] == ["SubscriptionConfirmation", "Notification"]
        assert notes[1]["Message"] == "mailed"
    finally:
        proc.kill()
        proc.wait()


def test_published_messages_survive_kill_9(tmp_path):
    """Every Publish that returned is delivered, even when the server is killed with SIGKILL
    right after: deliveries pending at the kill run after the restart (at least once)."""
    data = tmp_path / "data"

    def start():
        proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                                 "--data-dir", str(data), "--default-account", ACCOUNT],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)
        mk = lambda svc: boto3.client(svc, endpoint_url=endpoint, region_name=REGION,
                                      aws_access_key_id="testing", aws_secret_access_key="testing")
        return proc, mk("sns"), mk("sqs")

    proc, sns, sqs = start()
    try:
        arn = sns.create_topic(Name="durable")["TopicArn"]
        urls = []
        for i in range(3):
            url, qarn = new_queue(sqs)
            urls.append(url)
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn,
                          Attributes={"RawMessageDelivery": "true"})
        sent = set()
        for i in range(20):
            out = sns.publish_batch(TopicArn=arn, PublishBatchRequestEntries=[
                {"Id": f"e{j}", "Message": f"m{i}-{j}"} for j in range(10)])
            assert not out["Failed"]
            sent |= {f"m{i}-{j}" for j in range(10)}
    finally:
        proc.kill()  # SIGKILL, right after the last publish returned
        proc.wait()
    proc, sns, sqs = start()
    try:
        for url in urls:
            got = set()
            deadline = time.monotonic() + 30
            while got != sent and time.monotonic() < deadline:
                got |= {m["Body"] for m in receive_all(sqs, url, 10, timeout=2)}
            assert got == sent
    finally:
        proc.kill()
        proc.wait()


def test_fifo_deduplication_window_is_five_minutes_on_the_clock(clock_server):
    sns = clock_server.client("sns")
    sqs = clock_server.client("sqs")
    arn = sns.create_topic(Name=f"dd-{uuid.uuid4().hex[:8]}.fifo",
                           Attributes={"FifoTopic": "true"})["TopicArn"]
    url, qarn = new_queue(sqs, fifo=True)
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=qarn,
                  Attributes={"RawMessageDelivery": "true"})
    first = sns.publish(TopicArn=arn, Message="a", MessageGroupId="g", MessageDeduplicationId="d1")
    clock_server.advance(299)
    within = sns.publish(TopicArn=arn, Message="b", MessageGroupId="g", MessageDeduplicationId="d1")
    assert within["MessageId"] == first["MessageId"]
    assert within["SequenceNumber"] == first["SequenceNumber"]
    clock_server.advance(2)
    after = sns.publish(TopicArn=arn, Message="c", MessageGroupId="g", MessageDeduplicationId="d1")
    assert after["MessageId"] != first["MessageId"]
    got = receive_all(sqs, url, 2, timeout=5)
    assert [m["Body"] for m in got] == ["a", "c"]
