"""DynamoDB's legacy (pre-expression) parameters through boto3's low-level client: Expected
(both forms, with ConditionalOperator), KeyConditions, QueryFilter, ScanFilter,
AttributeUpdates and AttributesToGet, and AWS's validation when they are misused or mixed
with expression parameters.

Expected messages are AWS's (the DynamoDB API reference and observed responses).
"""

import uuid

import pytest
from botocore.exceptions import ClientError


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


def err(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


@pytest.fixture
def table(ddb):
    name = f"legacy-{uuid.uuid4().hex[:10]}"
    ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST")
    return name


def key(pk="a", sk=1):
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}}


def test_put_with_expected_exists_false_then_value(ddb, table):
    item = {**key(), "v": {"S": "one"}}
    ddb.put_item(TableName=table, Item=item, Expected={"pk": {"Exists": False}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table, Item=item, Expected={"pk": {"Exists": False}})
    assert err(e)[0] == "ConditionalCheckFailedException"
    # The old Value form, Exists defaulting to true.
    ddb.put_item(TableName=table, Item={**key(), "v": {"S": "two"}},
                 Expected={"v": {"Value": {"S": "one"}}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table, Item=item,
                     Expected={"v": {"Exists": True, "Value": {"S": "one"}}})
    assert err(e) == ("ConditionalCheckFailedException", "The conditional request failed")
    got = ddb.get_item(TableName=table, Key=key())["Item"]
    assert got["v"] == {"S": "two"}


def test_expected_comparison_operators_and_conditional_operator(ddb, table):
    ddb.put_item(TableName=table, Item={**key(), "n": {"N": "5"}, "s": {"S": "hello"}})
    ok = {
        "n": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}, {"N": "9"}]},
        "s": {"ComparisonOperator": "BEGINS_WITH", "AttributeValueList": [{"S": "he"}]},
        "missing": {"ComparisonOperator": "NULL"},
    }
    ddb.update_item(TableName=table, Key=key(), Expected=ok,
                    AttributeUpdates={"x": {"Value": {"S": "1"}}})
    bad = {
        "n": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "5"}]},
        "s": {"ComparisonOperator": "IN", "AttributeValueList": [{"S": "a"}, {"S": "b"}]},
    }
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(), Expected=bad,
                        AttributeUpdates={"x": {"Value": {"S": "2"}}})
    assert err(e)[0] == "ConditionalCheckFailedException"
    bad["s"]["AttributeValueList"].append({"S": "hello"})
    # One of the two holds now: enough under OR, not under AND.
    bad["n"]["ComparisonOperator"] = "NE"
    bad["n"]["AttributeValueList"] = [{"N": "5"}]
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(), Expected=bad, ConditionalOperator="AND",
                        AttributeUpdates={"x": {"Value": {"S": "3"}}})
    assert err(e)[0] == "ConditionalCheckFailedException"
    ddb.update_item(TableName=table, Key=key(), Expected=bad, ConditionalOperator="OR",
                    AttributeUpdates={"x": {"Value": {"S": "4"}}})
    assert ddb.get_item(TableName=table, Key=key())["Item"]["x"] == {"S": "4"}


def test_delete_with_expected(ddb, table):
    ddb.put_item(TableName=table, Item={**key(), "tags": {"SS": ["a", "b"]}})
    with pytest.raises(ClientError) as e:
        ddb.delete_item(TableName=table, Key=key(), Expected={
            "tags": {"ComparisonOperator": "CONTAINS", "AttributeValueList": [{"S": "z"}]}})
    assert err(e)[0] == "ConditionalCheckFailedException"
    ddb.delete_item(TableName=table, Key=key(), Expected={
        "tags": {"ComparisonOperator": "NOT_CONTAINS", "AttributeValueList": [{"S": "z"}]}})
    assert "Item" not in ddb.get_item(TableName=table, Key=key())


def test_attribute_updates_put_add_delete(ddb, table):
    ddb.put_item(TableName=table, Item={**key(), "n": {"N": "1"}, "ss": {"SS": ["a", "b", "c"]},
                                        "l": {"L": [{"S": "x"}]}, "gone": {"S": "bye"}})
    out = ddb.update_item(TableName=table, Key=key(), ReturnValues="UPDATED_NEW",
                          AttributeUpdates={
                              "p": {"Value": {"S": "put"}},
                              "n": {"Action": "ADD", "Value": {"N": "2.5"}},
                              "fresh": {"Action": "ADD", "Value": {"N": "7"}},
                              "ns": {"Action": "ADD", "Value": {"NS": ["1", "2"]}},
                              "ss": {"Action": "DELETE", "Value": {"SS": ["a", "c"]}},
                              "l": {"Action": "ADD", "Value": {"L": [{"S": "y"}]}},
                              "gone": {"Action": "DELETE"},
                          })
    assert out["Attributes"]["n"] == {"N": "3.5"}
    item = ddb.get_item(TableName=table, Key=key())["Item"]
    assert item["p"] == {"S": "put"}
    assert item["n"] == {"N": "3.5"}
    assert item["fresh"] == {"N": "7"}
    assert sorted(item["ns"]["NS"]) == ["1", "2"]
    assert item["ss"] == {"SS": ["b"]}
    assert item["l"] == {"L": [{"S": "x"}, {"S": "y"}]}
    assert "gone" not in item
    # An update on a missing item creates it.
    ddb.update_item(TableName=table, Key=key("new"),
                    AttributeUpdates={"c": {"Action": "ADD", "Value": {"N": "1"}}})
    assert ddb.get_item(TableName=table, Key=key("new"))["Item"]["c"] == {"N": "1"}


def test_attribute_updates_validation(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(),
                        AttributeUpdates={"a": {"Action": "ADD", "Value": {"S": "x"}}})
    assert err(e) == ("ValidationException", "One or more parameter values were invalid: "
                      "ADD action is not supported for the type S")
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(), AttributeUpdates={"a": {"Action": "PUT"}})
    assert err(e) == ("ValidationException", "One or more parameter values were invalid: "
                      "Only DELETE action is allowed when no attribute value is specified")


def test_query_with_key_conditions_and_query_filter(ddb, table):
    for i in range(1, 7):
        ddb.put_item(TableName=table, Item={**key("q", i), "odd": {"BOOL": i % 2 == 1},
                                            "n": {"N": str(i * 10)}})
    ddb.put_item(TableName=table, Item={**key("other", 3)})
    out = ddb.query(TableName=table, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "q"}]},
        "sk": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "2"}, {"N": "5"}]},
    })
    assert [i["sk"]["N"] for i in out["Items"]] == ["2", "3", "4", "5"]
    out = ddb.query(TableName=table, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "q"}]},
        "sk": {"ComparisonOperator": "GE", "AttributeValueList": [{"N": "2"}]},
    }, QueryFilter={
        "odd": {"ComparisonOperator": "EQ", "AttributeValueList": [{"BOOL": True}]},
        "n": {"ComparisonOperator": "LT", "AttributeValueList": [{"N": "50"}]},
    }, ConditionalOperator="AND", AttributesToGet=["sk"])
    assert out["Items"] == [{"sk": {"N": "3"}}]
    assert out["ScannedCount"] == 5
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditions={
            "pk": {"ComparisonOperator": "NE", "AttributeValueList": [{"S": "q"}]}})
    assert err(e) == ("ValidationException",
                      "Attempted conditional constraint is not an indexable operation")


def test_scan_filter_or(ddb, table):
    for i in range(1, 5):
        ddb.put_item(TableName=table, Item={**key("s", i), "c": {"S": "red" if i == 1 else "blue"}})
    out = ddb.scan(TableName=table, ScanFilter={
        "c": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "red"}]},
        "sk": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "3"}]},
    }, ConditionalOperator="OR")
    assert sorted(int(i["sk"]["N"]) for i in out["Items"]) == [1, 4]
    out = ddb.scan(TableName=table, ScanFilter={
        "c": {"ComparisonOperator": "NOT_NULL"},
        "sk": {"ComparisonOperator": "IN", "AttributeValueList": [{"N": "2"}, {"N": "3"}]},
    })
    assert sorted(int(i["sk"]["N"]) for i in out["Items"]) == [2, 3]


def test_attributes_to_get(ddb, table):
    ddb.put_item(TableName=table, Item={**key(), "a": {"S": "1"}, "b": {"S": "2"}})
    got = ddb.get_item(TableName=table, Key=key(), AttributesToGet=["a"])["Item"]
    assert got == {"a": {"S": "1"}}
    out = ddb.batch_get_item(RequestItems={table: {"Keys": [key()], "AttributesToGet": ["b"]}})
    assert out["Responses"][table] == [{"b": {"S": "2"}}]


def test_mixing_legacy_and_expressions(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table, Item=key(), Expected={"pk": {"Exists": False}},
                     ConditionExpression="attribute_not_exists(pk)")
    assert err(e) == ("ValidationException",
                      "Can not use both expression and non-expression parameters in the same "
                      "request: Non-expression parameters: {Expected} Expression parameters: "
                      "{ConditionExpression}")
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(), UpdateExpression="SET a = :a",
                        ExpressionAttributeValues={":a": {"S": "x"}},
                        AttributeUpdates={"b": {"Value": {"S": "y"}}})
    assert err(e) == ("ValidationException",
                      "Can not use both expression and non-expression parameters in the same "
                      "request: Non-expression parameters: {AttributeUpdates} Expression "
                      "parameters: {UpdateExpression}")
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName=table, FilterExpression="attribute_exists(a)",
                 ScanFilter={"a": {"ComparisonOperator": "NOT_NULL"}})
    assert err(e) == ("ValidationException",
                      "Can not use both expression and non-expression parameters in the same "
                      "request: Non-expression parameters: {ScanFilter} Expression parameters: "
                      "{FilterExpression}")


@pytest.mark.parametrize("expected,message", [
    ({"a": {"Exists": True}},
     "Value must be provided when Exists is true for Attribute: a"),
    ({"a": {"Exists": False, "Value": {"S": "x"}}},
     "Value cannot be used when Exists is false for Attribute: a"),
    ({"a": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "x"}, {"S": "y"}]}},
     "Invalid number of argument(s) for the EQ ComparisonOperator"),
    ({"a": {"ComparisonOperator": "BETWEEN", "AttributeValueList": [{"N": "1"}]}},
     "Invalid number of argument(s) for the BETWEEN ComparisonOperator"),
    ({"a": {"ComparisonOperator": "NULL", "AttributeValueList": [{"N": "1"}]}},
     "Invalid number of argument(s) for the NULL ComparisonOperator"),
    ({"a": {"ComparisonOperator": "EQ"}},
     "Value or AttributeValueList must be used with ComparisonOperator: EQ for Attribute: a"),
])
def test_expected_validation(ddb, table, expected, message):
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=table, Item=key(), Expected=expected)
    assert err(e) == ("ValidationException",
                      "One or more parameter values were invalid: " + message)


def test_key_conditions_must_name_one_or_two_keys(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditions={})
    assert err(e) == ("ValidationException", "Conditions can be of length 1 or 2 only")


def test_query_filter_may_not_name_a_key(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditions={
            "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "q"}]},
        }, QueryFilter={"sk": {"ComparisonOperator": "GT", "AttributeValueList": [{"N": "1"}]}})
    assert err(e) == ("ValidationException", "QueryFilter can only contain non-key attributes: "
                      "Primary key attribute: sk")


def test_update_with_attribute_updates_may_not_change_the_key(ddb, table):
    with pytest.raises(ClientError) as e:
        ddb.update_item(TableName=table, Key=key(),
                        AttributeUpdates={"sk": {"Value": {"N": "9"}}})
    assert err(e) == ("ValidationException", "One or more parameter values were invalid: "
                      "Cannot update attribute sk. This attribute is part of the key")


def test_legacy_update_streams_like_an_expression(server, ddb, table):
    """A legacy write is one more item change: its stream record has the new image."""
    ddb.update_table(TableName=table, StreamSpecification={
        "StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    ddb.put_item(TableName=table, Item={**key(), "n": {"N": "1"}},
                 Expected={"pk": {"Exists": False}})
    ddb.update_item(TableName=table, Key=key(),
                    AttributeUpdates={"n": {"Action": "ADD", "Value": {"N": "1"}}})
    arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    streams = server.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = streams.get_records(ShardIterator=it)["Records"]
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    assert records[1]["dynamodb"]["NewImage"]["n"] == {"N": "2"}
    assert records[1]["dynamodb"]["OldImage"]["n"] == {"N": "1"}



def test_key_conditions_with_a_filter_expression(ddb, table):
    # KeyConditions may go with FilterExpression while KeyConditionExpression is absent.
    for i in range(1, 4):
        ddb.put_item(TableName=table, Item={**key("k", i), "v": {"N": str(i)}})
    out = ddb.query(TableName=table, KeyConditions={
        "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]}},
        FilterExpression="v > :v", ExpressionAttributeValues={":v": {"N": "1"}})
    assert [i["sk"]["N"] for i in out["Items"]] == ["2", "3"]
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=table, KeyConditionExpression="pk = :p",
                  ExpressionAttributeValues={":p": {"S": "k"}}, KeyConditions={
                      "pk": {"ComparisonOperator": "EQ", "AttributeValueList": [{"S": "k"}]}})
    assert err(e) == ("ValidationException",
                      "Can not use both expression and non-expression parameters in the same "
                      "request: Non-expression parameters: {KeyConditions} Expression parameters: "
                      "{KeyConditionExpression}")
