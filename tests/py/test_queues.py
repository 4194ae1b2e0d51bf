"""Queue lifecycle, attributes, listing, tags and permissions, through boto3."""

import json

import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION
from sqs_util import arn_of, attributes_of, error_code


def test_create_get_url_and_delete(sqs, name):
    n = name()
    url = sqs.create_queue(QueueName=n)["QueueUrl"]
    assert url.endswith(f"/{ACCOUNT}/{n}")
    assert sqs.get_queue_url(QueueName=n)["QueueUrl"] == url
    assert sqs.get_queue_url(QueueName=n, QueueOwnerAWSAccountId=ACCOUNT)["QueueUrl"] == url
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(ClientError) as e:
        sqs.get_queue_url(QueueName=n)
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(ClientError) as e:
        sqs.delete_queue(QueueUrl=url)
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


def test_default_attributes(sqs, queue):
    a = attributes_of(sqs, queue)
    assert a["VisibilityTimeout"] == "30"
    assert a["MaximumMessageSize"] == "1048576"
    assert a["MessageRetentionPeriod"] == "345600"
    assert a["DelaySeconds"] == "0"
    assert a["ReceiveMessageWaitTimeSeconds"] == "0"
    assert a["ApproximateNumberOfMessages"] == "0"
    assert a["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert a["ApproximateNumberOfMessagesDelayed"] == "0"
    assert a["SqsManagedSseEnabled"] == "true"
    assert a["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue.rsplit('/', 1)[1]}"
    assert int(a["CreatedTimestamp"]) > 1_600_000_000
    assert int(a["LastModifiedTimestamp"]) >= int(a["CreatedTimestamp"])
    # Standard queues report no FIFO attributes and nothing that was never set. AWS reports no
    # KmsDataKeyReusePeriodSeconds for a queue without SSE-KMS (LocalStack's AWS-validated
    # snapshot test_create_and_update_queue_attributes lists the 12 attributes of such a queue).
    for absent in ("FifoQueue", "ContentBasedDeduplication", "RedrivePolicy", "Policy", "KmsMasterKeyId",
                   "KmsDataKeyReusePeriodSeconds"):
        assert absent not in a, absent


def test_fifo_default_attributes(sqs, fifo_queue):
    a = attributes_of(sqs, fifo_queue)
    assert a["FifoQueue"] == "true"
    assert a["ContentBasedDeduplication"] == "false"
    assert a["DeduplicationScope"] == "queue"
    assert a["FifoThroughputLimit"] == "perQueue"


def test_create_with_attributes_and_select_some(sqs, name):
    url = sqs.create_queue(QueueName=name(), Attributes={
        "VisibilityTimeout": "45", "DelaySeconds": "5", "MaximumMessageSize": "2048",
        "MessageRetentionPeriod": "600", "ReceiveMessageWaitTimeSeconds": "3",
    })["QueueUrl"]
    got = attributes_of(sqs, url, "VisibilityTimeout", "DelaySeconds", "MaximumMessageSize")
    assert got == {"VisibilityTimeout": "45", "DelaySeconds": "5", "MaximumMessageSize": "2048"}
    assert attributes_of(sqs, url, "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds") == {
        "MessageRetentionPeriod": "600", "ReceiveMessageWaitTimeSeconds": "3"}


def test_get_attributes_without_names_returns_none(sqs, queue):
    assert "Attributes" not in sqs.get_queue_attributes(QueueUrl=queue)


def test_set_queue_attributes(sqs, queue):
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "120", "DelaySeconds": "10"})
    assert attributes_of(sqs, queue, "VisibilityTimeout", "DelaySeconds") == {
        "VisibilityTimeout": "120", "DelaySeconds": "10"}


def test_create_is_idempotent_with_same_attributes(sqs, name):
    n = name()
    first = sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "10"})["QueueUrl"]
    again = sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "10"})["QueueUrl"]
    assert first == again


def test_create_with_different_attributes_fails(sqs, name):
    n = name()
    sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "10"})
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=n, Attributes={"VisibilityTimeout": "60"})
    assert error_code(e) == "QueueAlreadyExists"


@pytest.mark.parametrize("bad", ["has space", "dot.ted", "x" * 81, "slash/ed", "ünïcode"])
def test_invalid_queue_names(sqs, bad):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=bad)
    assert error_code(e) == "InvalidParameterValue"


def test_fifo_queue_name_must_end_in_fifo(sqs, name):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"FifoQueue": "true"})
    assert error_code(e) == "InvalidParameterValue"


def test_max_length_queue_name(sqs):
    import uuid
    n = (uuid.uuid4().hex * 3)[:80]
    url = sqs.create_queue(QueueName=n)["QueueUrl"]
    assert url.endswith("/" + n)


@pytest.mark.parametrize("attrs", [
    {"VisibilityTimeout": "43201"},
    {"VisibilityTimeout": "-1"},
    {"DelaySeconds": "901"},
    {"MaximumMessageSize": "1023"},
    {"MaximumMessageSize": "1048577"},
    {"MessageRetentionPeriod": "59"},
    {"MessageRetentionPeriod": "1209601"},
    {"ReceiveMessageWaitTimeSeconds": "21"},
    {"VisibilityTimeout": "soon"},
])
def test_out_of_range_attribute_values(sqs, name, attrs):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes=attrs)
    assert error_code(e) == "InvalidAttributeValue"


def test_unknown_attribute_name_on_create_and_set(sqs, name, queue):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"Colour": "blue"})
    assert error_code(e) == "InvalidAttributeName"
    with pytest.raises(ClientError) as e:
        sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Colour": "blue"})
    assert error_code(e) == "InvalidAttributeName"


def test_unknown_attribute_name_on_get(sqs, queue):
    with pytest.raises(ClientError) as e:
        sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["NotAnAttribute"])
    assert error_code(e) == "InvalidAttributeName"


def test_fifo_only_attribute_on_standard_queue(sqs, name):
    with pytest.raises(ClientError) as e:
        sqs.create_queue(QueueName=name(), Attributes={"ContentBasedDeduplication": "true"})
    assert error_code(e) == "InvalidAttributeName"


def test_operations_on_missing_queue(sqs, name):
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    for call in (
        lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]),
        lambda: sqs.set_queue_attributes(QueueUrl=url, Attributes={"DelaySeconds": "1"}),
        lambda: sqs.send_message(QueueUrl=url, MessageBody="x"),
        lambda: sqs.receive_message(QueueUrl=url),
        lambda: sqs.purge_queue(QueueUrl=url),
        lambda: sqs.list_queue_tags(QueueUrl=url),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


# ---------------------------------------------------------------- listing

def test_list_queues_with_prefix(sqs, name):
    prefix = name("lst")
    urls = sorted(sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(3))
    other = sqs.create_queue(QueueName=name("other"))["QueueUrl"]
    listed = sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"]
    assert sorted(listed) == urls
    assert other not in listed
    assert other in sqs.list_queues()["QueueUrls"]


def test_list_queues_no_match_has_no_urls(sqs, name):
    resp = sqs.list_queues(QueueNamePrefix=name("nothing-here"))
    assert resp.get("QueueUrls", []) == []
    assert "NextToken" not in resp


def test_list_queues_pagination(sqs, name):
    prefix = name("page")
    created = sorted(sqs.create_queue(QueueName=f"{prefix}-{i:02d}")["QueueUrl"] for i in range(7))
    seen, token, pages = [], None, 0
    while True:
        kwargs = {"QueueNamePrefix": prefix, "MaxResults": 3}
        if token:
            kwargs["NextToken"] = token
        resp = sqs.list_queues(**kwargs)
        pages += 1
        assert len(resp.get("QueueUrls", [])) <= 3
        seen += resp.get("QueueUrls", [])
        token = resp.get("NextToken")
        if not token:
            break
        assert pages < 10
    assert sorted(seen) == created
    assert len(seen) == len(set(seen))
    assert pages == 3
    # The paginator speaks the same protocol.
    paged = [u for page in sqs.get_paginator("list_queues").paginate(
        QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}) for u in page.get("QueueUrls", [])]
    assert sorted(paged) == created


def test_list_queues_without_max_results_has_no_token(sqs, name):
    prefix = name("notoken")
    for i in range(3):
        sqs.create_queue(QueueName=f"{prefix}-{i}")
    resp = sqs.list_queues(QueueNamePrefix=prefix)
    assert len(resp["QueueUrls"]) == 3 and "NextToken" not in resp


def test_list_queues_invalid_max_results(sqs):
    with pytest.raises(ClientError) as e:
        sqs.list_queues(MaxResults=1001)
    assert error_code(e) == "InvalidParameterValue"


def test_accounts_are_isolated(server, name):
    """A 12-digit access key id selects the account, as tsumiki's DESIGN says."""
    a = server.client(access_key="111111111111")
    b = server.client(access_key="222222222222")
    n = name("iso")
    url_a = a.create_queue(QueueName=n)["QueueUrl"]
    assert "/111111111111/" in url_a
    with pytest.raises(ClientError) as e:
        b.get_queue_url(QueueName=n)
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"
    assert url_a not in b.list_queues().get("QueueUrls", [])
    assert arn_of(a, url_a) == f"arn:aws:sqs:{REGION}:111111111111:{n}"


def test_regions_are_isolated(server, name):
    import boto3
    from botocore.config import Config
    west = boto3.client("sqs", endpoint_url=server.endpoint, region_name="eu-west-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"max_attempts": 1}))
    east = server.client()
    n = name("region")
    url = west.create_queue(QueueName=n)["QueueUrl"]
    assert arn_of(west, url) == f"arn:aws:sqs:eu-west-1:{ACCOUNT}:{n}"
    with pytest.raises(ClientError) as e:
        east.get_queue_url(QueueName=n)
    assert error_code(e) == "AWS.SimpleQueueService.NonExistentQueue"


# ---------------------------------------------------------------- tags

def test_empty_tag_value(sqs, queue):
    """Recorded against AWS (LocalStack's validated snapshot test_tag_untag_queue): "" is a value."""
    sqs.tag_queue(QueueUrl=queue, Tags={"flag": ""})
    assert sqs.list_queue_tags(QueueUrl=queue)["Tags"] == {"flag": ""}


def test_tags_lifecycle(sqs, name):
    url = sqs.create_queue(QueueName=name(), tags={"team": "core", "env": "test"})["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core", "env": "test"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "42"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core", "env": "prod", "cost": "42"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team", "not-there"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "prod", "cost": "42"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["env", "cost"])
    assert sqs.list_queue_tags(QueueUrl=url).get("Tags", {}) == {}


def test_too_many_tags(sqs, queue):
    sqs.tag_queue(QueueUrl=queue, Tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(ClientError) as e:
        sqs.tag_queue(QueueUrl=queue, Tags={"one-more": "v"})
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # A failed request changes nothing.
    assert len(sqs.list_queue_tags(QueueUrl=queue)["Tags"]) == 50


# ---------------------------------------------------------------- permissions

def test_add_and_remove_permission(sqs, queue):
    sqs.add_permission(QueueUrl=queue, Label="ReadOnly", AWSAccountIds=["111111111111", "222222222222"],
                       Actions=["ReceiveMessage", "GetQueueAttributes"])
    policy = json.loads(attributes_of(sqs, queue, "Policy")["Policy"])
    [stmt] = [s for s in policy["Statement"] if s["Sid"] == "ReadOnly"]
    assert stmt["Effect"] == "Allow"
    assert stmt["Resource"] == arn_of(sqs, queue)
    principals = stmt["Principal"]["AWS"]
    principals = [principals] if isinstance(principals, str) else principals
    assert sorted(principals) == ["arn:aws:iam::111111111111:root", "arn:aws:iam::222222222222:root"]
    actions = stmt["Action"]
    actions = [actions] if isinstance(actions, str) else actions
    assert sorted(actions) == ["SQS:GetQueueAttributes", "SQS:ReceiveMessage"]

    sqs.add_permission(QueueUrl=queue, Label="Send", AWSAccountIds=["111111111111"], Actions=["SendMessage"])
    policy = json.loads(attributes_of(sqs, queue, "Policy")["Policy"])
    assert sorted(s["Sid"] for s in policy["Statement"]) == ["ReadOnly", "Send"]

    sqs.remove_permission(QueueUrl=queue, Label="ReadOnly")
    policy = json.loads(attributes_of(sqs, queue, "Policy")["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["Send"]


def test_permission_errors(sqs, queue):
    sqs.add_permission(QueueUrl=queue, Label="dup", AWSAccountIds=["111111111111"], Actions=["SendMessage"])
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="dup", AWSAccountIds=["111111111111"], Actions=["SendMessage"])
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.remove_permission(QueueUrl=queue, Label="never-added")
    assert error_code(e) == "InvalidParameterValue"
    with pytest.raises(ClientError) as e:
        sqs.add_permission(QueueUrl=queue, Label="many", AWSAccountIds=["111111111111"],
                           Actions=["SendMessage", "ReceiveMessage", "DeleteMessage", "ChangeMessageVisibility",
                                    "GetQueueAttributes", "GetQueueUrl", "PurgeQueue", "ListQueueTags"])
    assert error_code(e) == "OverLimit"


def test_set_policy_and_clear_it(sqs, queue):
    policy = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": "*", "Action": "sqs:SendMessage", "Resource": arn_of(sqs, queue)}]}
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": json.dumps(policy)})
    assert json.loads(attributes_of(sqs, queue, "Policy")["Policy"]) == policy
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"Policy": ""})
    assert "Policy" not in attributes_of(sqs, queue)
