"""STS: who am I, and credentials that select another account (tsumiki's 12-digit rule)."""
import pytest
from botocore.exceptions import ClientError


def test_caller_identity_names_the_account(server):
    sts = server.client("sts", access_key="AKIAIOSFODNN7EXAMPLE")
    me = sts.get_caller_identity()
    assert me["Account"] == "123456789012"  # the suite's --default-account
    assert me["Arn"] == "arn:aws:iam::123456789012:root"
    other = server.client("sts", access_key="210987654321").get_caller_identity()
    assert other["Account"] == "210987654321"


def test_assumed_role_credentials_act_in_the_role_account(server, name):
    sts = server.client("sts")
    out = sts.assume_role(RoleArn="arn:aws:iam::111122223333:role/deployer", RoleSessionName="ci")
    creds = out["Credentials"]
    assert out["AssumedRoleUser"]["Arn"] == "arn:aws:sts::111122223333:assumed-role/deployer/ci"
    assert creds["SecretAccessKey"] and creds["SessionToken"]
    sqs = server.client("sqs", access_key=creds["AccessKeyId"])
    url = sqs.create_queue(QueueName=name())["QueueUrl"]
    assert "/111122223333/" in url
    assert url not in server.client("sqs").list_queues().get("QueueUrls", [])


def test_unsupported_operations_say_so(server):
    sts = server.client("sts")
    with pytest.raises(ClientError) as e:
        sts.get_federation_token(Name="someone")
    assert e.value.response["Error"]["Code"] == "NotImplemented"
    assert "GetFederationToken" in e.value.response["Error"]["Message"]
