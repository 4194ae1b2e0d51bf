"""DynamoDB and DynamoDB Streams through boto3: tables, every expression kind with AWS's
error wording, Query/Scan paging and indexes, batches, transactions, boto3's Table resource
with its Key/Attr condition builders, TTL on the manual clock, stream records, the
x-amz-crc32 header, and durability across kill -9.

Expected messages are AWS's (DynamoDB developer guide and observed responses).
"""

import json
import re
import subprocess
import threading
import time
import urllib.request
import uuid
import zlib
from decimal import Decimal

import boto3
import pytest
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from conftest import ACCOUNT, REGION, tsumiki_bin


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


@pytest.fixture(scope="module")
def streams(server):
    return server.client("dynamodbstreams")


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def err(e):
    return e.value.response["Error"]["Code"], e.value.response["Error"]["Message"]


def make_table(ddb, name=None, range_key=True, stream=None, **kw):
    name = name or unique()
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    if range_key:
        attrs.append({"AttributeName": "sk", "AttributeType": "N"})
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
    attrs += kw.pop("extra_attrs", [])
    args = dict(TableName=name, AttributeDefinitions=attrs, KeySchema=schema,
                BillingMode="PAY_PER_REQUEST", **kw)
    if stream:
        args["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    ddb.create_table(**args)
    return name


def test_crc32_header_matches_body(server):
    req = urllib.request.Request(server.endpoint + "/", data=b"{}", method="POST", headers={
        "X-Amz-Target": "DynamoDB_20120810.ListTables",
        "Content-Type": "application/x-amz-json-1.0"})
    with urllib.request.urlopen(req) as resp:
        body = resp.read()
        assert resp.headers["x-amz-crc32"] == str(zlib.crc32(body))
    req = urllib.request.Request(server.endpoint + "/", data=b'{"TableName": "nope"}', method="POST",
                                 headers={"X-Amz-Target": "DynamoDB_20120810.DescribeTable",
                                          "Content-Type": "application/x-amz-json-1.0"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    body = e.value.read()
    assert e.value.headers["x-amz-crc32"] == str(zlib.crc32(body))
    assert b"ResourceNotFoundException" in body


def test_table_lifecycle(ddb):
    name = unique()
    gsi = {"IndexName": "byColor", "KeySchema": [{"AttributeName": "color", "KeyType": "HASH"}],
           "Projection": {"ProjectionType": "ALL"}}
    out = ddb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "color", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        ProvisionedThroughput={"ReadCapacityUnits": 5, "WriteCapacityUnits": 5},
        GlobalSecondaryIndexes=[dict(gsi, ProvisionedThroughput={"ReadCapacityUnits": 1, "WriteCapacityUnits": 1})],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        Tags=[{"Key": "team", "Value": "core"}])["TableDescription"]
    assert out["TableStatus"] == "ACTIVE"
    assert out["TableArn"] == f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    assert out["LatestStreamArn"].startswith(out["TableArn"] + "/stream/")
    assert out["GlobalSecondaryIndexes"][0]["IndexStatus"] == "ACTIVE"
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    desc = ddb.describe_table(TableName=name)["Table"]
    assert desc["ProvisionedThroughput"]["ReadCapacityUnits"] == 5
    assert desc["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert ddb.list_tags_of_resource(ResourceArn=desc["TableArn"])["Tags"] == [{"Key": "team", "Value": "core"}]
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=name, AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    assert err(e) == ("ResourceInUseException", f"Table already exists: {name}")
    up = ddb.update_table(TableName=name, BillingMode="PAY_PER_REQUEST")["TableDescription"]
    assert up["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ddb.delete_table(TableName=name)
    with pytest.raises(ClientError) as e:
        ddb.describe_table(TableName=name)
    assert err(e) == ("ResourceNotFoundException", f"Requested resource not found: Table: {name} not found")


def test_create_table_validation(ddb):
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=unique(), AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    assert err(e) == ("ValidationException", "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [id], AttributeDefinitions: [pk]")
    with pytest.raises(ClientError) as e:
        ddb.create_table(TableName=unique(), AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    assert err(e)[1] == "One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED"


def test_list_tables_pages(ddb):
    names = sorted(make_table(ddb, unique("list")) for _ in range(3))
    seen, start = [], None
    while True:
        kw = {"Limit": 2}
        if start:
            kw["ExclusiveStartTableName"] = start
        out = ddb.list_tables(**kw)
        seen += out["TableNames"]
        start = out.get("LastEvaluatedTableName")
        if not start:
            break
    assert [n for n in seen if n in names] == names


def test_items_conditions_and_return_values(ddb):
    t = make_table(ddb)
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1.50"},
                                   "tags": {"SS": ["x", "y"]}})
    got = ddb.get_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}})["Item"]
    assert got["n"] == {"N": "1.5"}
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "sk": {"N": "1"}},
                     ConditionExpression="attribute_not_exists(pk)",
                     ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert err(e) == ("ConditionalCheckFailedException", "The conditional request failed")
    assert e.value.response["Item"]["n"] == {"N": "1.5"}
    old = ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "2"}},
                       ConditionExpression="n = :v", ExpressionAttributeValues={":v": {"N": "1.5"}},
                       ReturnValues="ALL_OLD")["Attributes"]
    assert old["tags"] == {"SS": ["x", "y"]}
    out = ddb.update_item(
        TableName=t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}},
        UpdateExpression="SET n = n + :one, #l = list_append(if_not_exists(#l, :empty), :l), m = :m "
                         "ADD c :one, s :s REMOVE gone",
        ExpressionAttributeNames={"#l": "list"},
        ExpressionAttributeValues={":one": {"N": "1"}, ":empty": {"L": []}, ":l": {"L": [{"S": "z"}]},
                                   ":m": {"M": {"k": {"S": "v"}}}, ":s": {"SS": ["q"]}},
        ReturnValues="UPDATED_NEW")["Attributes"]
    assert out == {"n": {"N": "3"}, "list": {"L": [{"S": "z"}]}, "m": {"M": {"k": {"S": "v"}}},
                   "c": {"N": "1"}, "s": {"SS": ["q"]}}
    out = ddb.update_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}},
                          UpdateExpression="SET m.k = :v DELETE s :s",
                          ExpressionAttributeValues={":v": {"S": "w"}, ":s": {"SS": ["q"]}},
                          ReturnValues="UPDATED_OLD")["Attributes"]
    assert out == {"m": {"M": {"k": {"S": "v"}}}, "s": {"SS": ["q"]}}
    got = ddb.get_item(TableName=t, Key={"pk": {"S": "a"}, "sk": {"N": "1"}}, ConsistentRead=True,
                       ProjectionExpression="m.k, #l[0], n", ExpressionAttributeNames={"#l": "list"})["Item"]
    assert got == {"m": {"M": {"k": {"S": "w"}}}, "list": {"L": [{"S": "z"}]}, "n": {"N": "3"}}
    # An update of a missing item creates it from the key.
    new = ddb.update_item(TableName=t, Key={"pk": {"S": "b"}, "sk": {"N": "2"}},
                          UpdateExpression="SET v = :v", ExpressionAttributeValues={":v": {"BOOL": True}},
                          ReturnValues="ALL_NEW")["Attributes"]
    assert new == {"pk": {"S": "b"}, "sk": {"N": "2"}, "v": {"BOOL": True}}
    old = ddb.delete_item(TableName=t, Key={"pk": {"S": "b"}, "sk": {"N": "2"}}, ReturnValues="ALL_OLD",
                          ConditionExpression="v = :t", ExpressionAttributeValues={":t": {"BOOL": True}})
    assert old["Attributes"]["v"] == {"BOOL": True}
    assert "Item" not in ddb.get_item(TableName=t, Key={"pk": {"S": "b"}, "sk": {"N": "2"}})


@pytest.mark.parametrize("call,message", [
    (dict(op="update_item", UpdateExpression="SET a = :v SET b = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     'Invalid UpdateExpression: The "SET" section can only be used once in an update expression;'),
    (dict(op="update_item", UpdateExpression="SET a = = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     'Invalid UpdateExpression: Syntax error; token: "=", near: "= = :v"'),
    (dict(op="update_item", UpdateExpression="SET a = :v, a.b = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     "Invalid UpdateExpression: Two document paths overlap with each other; must remove or rewrite one of these paths; path one: [a], path two: [a, b]"),
    (dict(op="update_item", UpdateExpression="SET sk = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     "One or more parameter values were invalid: Cannot update attribute sk. This attribute is part of the key"),
    (dict(op="update_item", UpdateExpression="SET a = :v", ExpressionAttributeValues={":v": {"N": "1"}, ":w": {"N": "2"}}),
     "Value provided in ExpressionAttributeValues unused in expressions: keys: {:w}"),
    (dict(op="update_item", UpdateExpression="SET #a = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     "Invalid UpdateExpression: An expression attribute name used in the document path is not defined; attribute name: #a"),
    (dict(op="update_item", UpdateExpression="SET a = :v", ExpressionAttributeNames={"#x": "x"},
          ExpressionAttributeValues={":v": {"N": "1"}}),
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#x}"),
    # Names are checked before values (AWS).
    (dict(op="update_item", UpdateExpression="SET a = :v", ExpressionAttributeNames={"#x": "x"},
          ExpressionAttributeValues={":v": {"N": "1"}, ":w": {"N": "1"}}),
     "Value provided in ExpressionAttributeNames unused in expressions: keys: {#x}"),
    (dict(op="query", KeyConditionExpression="pk = :p AND wrong = :s",
          ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"N": "1"}}),
     "Query condition missed key schema element: sk"),
    (dict(op="query", KeyConditionExpression="wrong = :p AND sk = :s",
          ExpressionAttributeValues={":p": {"S": "a"}, ":s": {"N": "1"}}),
     "Query condition missed key schema element: pk"),
    (dict(op="update_item", UpdateExpression="SET a = absent + :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     "The provided expression refers to an attribute that does not exist in the item"),
    (dict(op="update_item", UpdateExpression="SET #s = :v", ExpressionAttributeNames={"#s": "status"},
          ConditionExpression="status = :v", ExpressionAttributeValues={":v": {"N": "1"}}),
     "Invalid ConditionExpression: Attribute name is a reserved keyword; reserved keyword: status"),
    (dict(op="delete_item", ConditionExpression="size(a)"),
     "Invalid ConditionExpression: The function is not allowed to be used this way in an expression; function: size"),
    (dict(op="put_item", Item={"pk": {"S": "a"}}), "One or more parameter values were invalid: Missing the key sk in the item"),
    (dict(op="put_item", Item={"pk": {"S": "a"}, "sk": {"S": "1"}}),
     "One or more parameter values were invalid: Type mismatch for key sk expected: N actual: S"),
    (dict(op="put_item", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "s": {"SS": []}}),
     "One or more parameter values were invalid: An string set  may not be empty"),
    (dict(op="put_item", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": "1e126"}}),
     "Number overflow. Attempting to store a number with magnitude larger than supported range"),
    (dict(op="put_item", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "big": {"S": "x" * 410000}}),
     "Item size has exceeded the maximum allowed size"),
    (dict(op="get_item", Key={"pk": {"S": "a"}}), "The provided key element does not match the schema"),
    (dict(op="put_item", Item={"pk": {"S": "a" * 2049}, "sk": {"N": "1"}}),
     "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"),
    (dict(op="get_item", Key={"pk": {"S": "a" * 2049}, "sk": {"N": "1"}}),
     "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of2048 bytes"),
    (dict(op="put_item", Item={"pk": {"S": "a"}, "sk": {"N": "1"}, "n": {"N": " 1.5"}}),
     "The parameter cannot be converted to a numeric value:  1.5"),
    (dict(op="transact_write_items", TransactItems=[{
        "Put": {"Item": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "TableName": "x"},
        "Delete": {"Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}, "TableName": "x"}}]),
     "TransactItems can only contain one of Check, Put, Update or Delete"),
])
def test_validation_messages(ddb, call, message):
    t = getattr(test_validation_messages, "table", None)
    if t is None:
        t = test_validation_messages.table = make_table(ddb)
    call = dict(call)
    op = call.pop("op")
    if op in ("update_item", "delete_item", "get_item") and "Key" not in call:
        call["Key"] = {"pk": {"S": "a"}, "sk": {"N": "1"}}
    if op != "transact_write_items":
        call["TableName"] = t
    with pytest.raises(ClientError) as e:
        getattr(ddb, op)(**call)
    assert err(e) == ("ValidationException", message)


def test_condition_failure_with_item_and_gsi_consistent_read(ddb):
    t = make_table(ddb, range_key=False, extra_attrs=[{"AttributeName": "g", "AttributeType": "S"}],
                   GlobalSecondaryIndexes=[{"IndexName": "byG", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                                            "Projection": {"ProjectionType": "ALL"}}])
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "g": {"S": "x"}})
    with pytest.raises(ClientError) as e:
        ddb.put_item(TableName=t, Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)",
                     ReturnValuesOnConditionCheckFailure="ALL_OLD")
    # AWS's body carries `Message` (capitalised) beside the Item, so boto3 lifts no `message`.
    assert e.value.response["Error"] == {"Message": "The conditional request failed",
                                         "Code": "ConditionalCheckFailedException"}
    assert "message" not in e.value.response
    assert e.value.response["Item"] == {"pk": {"S": "a"}, "g": {"S": "x"}}
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=t, IndexName="byG", KeyConditionExpression="g = :g",
                  ExpressionAttributeValues={":g": {"S": "x"}}, ConsistentRead=True)
    assert err(e) == ("ValidationException", "Consistent reads are not supported on global secondary indexes")


def fill(ddb, t, parts=("p1", "p2"), n=10):
    for p in parts:
        for i in range(n):
            ddb.put_item(TableName=t, Item={"pk": {"S": p}, "sk": {"N": str(i)}, "color": {"S": ["red", "blue"][i % 2]},
                                           "name": {"S": f"item-{i:02d}"}})


def test_query_key_conditions_filters_and_paging(ddb):
    t = make_table(ddb, LocalSecondaryIndexes=[{
        "IndexName": "byName", "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                                              {"AttributeName": "name", "KeyType": "RANGE"}],
        "Projection": {"ProjectionType": "KEYS_ONLY"}}],
        extra_attrs=[{"AttributeName": "name", "AttributeType": "S"}])
    fill(ddb, t)

    def q(expr, values, **kw):
        return ddb.query(TableName=t, KeyConditionExpression=expr, ExpressionAttributeValues=values, **kw)

    out = q("pk = :p", {":p": {"S": "p1"}})
    assert [i["sk"]["N"] for i in out["Items"]] == [str(i) for i in range(10)]
    out = q("pk = :p AND sk BETWEEN :a AND :b", {":p": {"S": "p1"}, ":a": {"N": "3"}, ":b": {"N": "5"}},
            ScanIndexForward=False)
    assert [i["sk"]["N"] for i in out["Items"]] == ["5", "4", "3"]
    out = q("pk = :p AND sk >= :a", {":p": {"S": "p1"}, ":a": {"N": "8"}})
    assert out["Count"] == 2
    out = q("pk = :p", {":p": {"S": "p1"}, ":c": {"S": "red"}}, FilterExpression="color = :c")
    assert (out["Count"], out["ScannedCount"]) == (5, 10)
    out = q("pk = :p", {":p": {"S": "p2"}}, Select="COUNT")
    assert out["Count"] == 10 and "Items" not in out
    # Paging with Limit and ExclusiveStartKey.
    got, start = [], None
    while True:
        kw = {"Limit": 3}
        if start:
            kw["ExclusiveStartKey"] = start
        out = q("pk = :p", {":p": {"S": "p2"}}, **kw)
        got += [i["sk"]["N"] for i in out["Items"]]
        start = out.get("LastEvaluatedKey")
        if not start:
            break
    assert got == [str(i) for i in range(10)]
    # The local index orders by name; KEYS_ONLY projects the keys only.
    out = ddb.query(TableName=t, IndexName="byName", KeyConditionExpression="pk = :p AND begins_with(#n, :x)",
                    ExpressionAttributeNames={"#n": "name"},
                    ExpressionAttributeValues={":p": {"S": "p1"}, ":x": {"S": "item-0"}})
    assert [i["name"]["S"] for i in out["Items"]] == [f"item-0{i}" for i in range(10)]
    assert set(out["Items"][0]) == {"pk", "sk", "name"}
    with pytest.raises(ClientError) as e:
        q("sk = :a", {":a": {"N": "1"}})
    assert err(e) == ("ValidationException", "Query condition missed key schema element: pk")
    with pytest.raises(ClientError) as e:
        q("pk = :p OR sk = :a", {":p": {"S": "p1"}, ":a": {"N": "1"}})
    assert err(e)[0] == "ValidationException"
    with pytest.raises(ClientError) as e:
        ddb.query(TableName=t, IndexName="nope", KeyConditionExpression="pk = :p",
                  ExpressionAttributeValues={":p": {"S": "p1"}})
    assert err(e) == ("ValidationException", "The table does not have the specified index: nope")


def test_gsi_query_and_scan_segments(ddb):
    t = make_table(ddb, extra_attrs=[{"AttributeName": "color", "AttributeType": "S"}],
                   GlobalSecondaryIndexes=[{"IndexName": "byColor",
                                            "KeySchema": [{"AttributeName": "color", "KeyType": "HASH"},
                                                          {"AttributeName": "sk", "KeyType": "RANGE"}],
                                            "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["name"]}}])
    fill(ddb, t, parts=[f"p{i}" for i in range(8)], n=4)
    ddb.put_item(TableName=t, Item={"pk": {"S": "nocolor"}, "sk": {"N": "0"}})
    out = ddb.query(TableName=t, IndexName="byColor", KeyConditionExpression="color = :c AND sk < :n",
                    ExpressionAttributeValues={":c": {"S": "red"}, ":n": {"N": "3"}})
    assert out["Count"] == 16
    assert [i["sk"]["N"] for i in out["Items"]] == ["0"] * 8 + ["2"] * 8
    assert set(out["Items"][0]) == {"pk", "sk", "color", "name"}
    # Every item exactly once across parallel segments, each paged.
    seen = []
    for seg in range(3):
        start = None
        while True:
            kw = {"Segment": seg, "TotalSegments": 3, "Limit": 5}
            if start:
                kw["ExclusiveStartKey"] = start
            out = ddb.scan(TableName=t, **kw)
            seen += [(i["pk"]["S"], i["sk"]["N"]) for i in out["Items"]]
            start = out.get("LastEvaluatedKey")
            if not start:
                break
    assert len(seen) == len(set(seen)) == 33
    out = ddb.scan(TableName=t, IndexName="byColor")
    assert out["Count"] == 32
    with pytest.raises(ClientError) as e:
        ddb.scan(TableName=t, Segment=3, TotalSegments=3)
    assert err(e)[1] == "The Segment parameter is zero-based and must be less than parameter TotalSegments: Segment: 3 is not less than TotalSegments: 3"


def test_batches(ddb):
    t = make_table(ddb, range_key=False)
    out = ddb.batch_write_item(RequestItems={t: [{"PutRequest": {"Item": {"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}}}
                                                 for i in range(25)]})
    assert out["UnprocessedItems"] == {}
    out = ddb.batch_write_item(RequestItems={t: [{"DeleteRequest": {"Key": {"pk": {"S": "k0"}}}}]})
    assert out["UnprocessedItems"] == {}
    out = ddb.batch_get_item(RequestItems={t: {"Keys": [{"pk": {"S": f"k{i}"}} for i in range(3)],
                                               "ProjectionExpression": "v"}})
    assert sorted(i["v"]["N"] for i in out["Responses"][t]) == ["1", "2"]
    assert out["UnprocessedKeys"] == {}
    with pytest.raises(ClientError) as e:
        ddb.batch_get_item(RequestItems={t: {"Keys": [{"pk": {"S": "k1"}}, {"pk": {"S": "k1"}}]}})
    assert err(e) == ("ValidationException", "Provided list of item keys contains duplicates")


def test_transactions(ddb):
    t = make_table(ddb, range_key=False)
    ddb.put_item(TableName=t, Item={"pk": {"S": "acct1"}, "bal": {"N": "100"}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "acct2"}, "bal": {"N": "0"}})

    def transfer(amount, token=None):
        kw = {"ClientRequestToken": token} if token else {}
        return ddb.transact_write_items(TransactItems=[
            {"Update": {"TableName": t, "Key": {"pk": {"S": "acct1"}}, "UpdateExpression": "SET bal = bal - :a",
                        "ConditionExpression": "bal >= :a", "ExpressionAttributeValues": {":a": {"N": str(amount)}},
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
            {"Update": {"TableName": t, "Key": {"pk": {"S": "acct2"}}, "UpdateExpression": "SET bal = bal + :a",
                        "ExpressionAttributeValues": {":a": {"N": str(amount)}}}},
            {"Put": {"TableName": t, "Item": {"pk": {"S": f"log-{amount}"}}}},
        ], **kw)

    transfer(60, token="tok-1")
    transfer(60, token="tok-1")  # idempotent: applied once
    with pytest.raises(ClientError) as e:
        transfer(60)
    code, message = err(e)
    assert code == "TransactionCanceledException"
    assert message == "Transaction cancelled, please refer cancellation reasons for specific reasons [ConditionalCheckFailed, None, None]"
    reasons = e.value.response["CancellationReasons"]
    assert reasons[0]["Code"] == "ConditionalCheckFailed" and reasons[0]["Item"]["bal"] == {"N": "40"}
    assert reasons[1] == {"Code": "None"}
    got = ddb.transact_get_items(TransactItems=[{"Get": {"TableName": t, "Key": {"pk": {"S": k}}}}
                                                for k in ("acct1", "acct2", "log-60", "missing")])["Responses"]
    assert [r.get("Item", {}).get("bal") for r in got] == [{"N": "40"}, {"N": "60"}, None, None]
    assert "Item" in got[2] and got[3] == {}
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(TransactItems=[
            {"ConditionCheck": {"TableName": t, "Key": {"pk": {"S": "acct1"}}, "ConditionExpression": "attribute_exists(pk)"}},
            {"Delete": {"TableName": t, "Key": {"pk": {"S": "acct1"}}}}])
    assert err(e) == ("ValidationException", "Transaction request cannot include multiple operations on one item")


def test_table_resource_with_key_and_attr(server):
    res = boto3.resource("dynamodb", endpoint_url=server.endpoint, region_name=REGION,
                         aws_access_key_id="testing", aws_secret_access_key="testing")
    name = unique("res")
    table = res.create_table(TableName=name, KeySchema=[{"AttributeName": "user", "KeyType": "HASH"},
                                                        {"AttributeName": "ts", "KeyType": "RANGE"}],
                             AttributeDefinitions=[{"AttributeName": "user", "AttributeType": "S"},
                                                   {"AttributeName": "ts", "AttributeType": "N"}],
                             BillingMode="PAY_PER_REQUEST")
    table.wait_until_exists()
    with table.batch_writer() as bw:
        for i in range(30):
            bw.put_item(Item={"user": "u1", "ts": i, "kind": "click" if i % 3 else "view",
                              "price": Decimal("0.10") * i, "tags": {"a", "b"} if i % 2 else {"c"}})
    out = table.query(KeyConditionExpression=Key("user").eq("u1") & Key("ts").between(5, 9))
    assert [int(i["ts"]) for i in out["Items"]] == [5, 6, 7, 8, 9]
    out = table.query(KeyConditionExpression=Key("user").eq("u1") & Key("ts").gt(20),
                      FilterExpression=Attr("kind").eq("view") & Attr("price").gte(Decimal("2.1")))
    assert [int(i["ts"]) for i in out["Items"]] == [21, 24, 27]
    out = table.scan(FilterExpression=Attr("tags").contains("c") & Attr("kind").is_in(["view"]) &
                     Attr("nope").not_exists() & Attr("price").attribute_type("N") & Attr("kind").begins_with("vi"))
    assert sorted(int(i["ts"]) for i in out["Items"]) == [0, 6, 12, 18, 24]
    out = table.scan(FilterExpression=Attr("kind").size().eq(5) | Attr("ts").lt(1))
    assert out["Count"] == 21  # 20 clicks and the view at ts 0
    out = table.update_item(Key={"user": "u1", "ts": 1}, UpdateExpression="SET price = price + :x ADD hits :one",
                            ExpressionAttributeValues={":x": Decimal("0.05"), ":one": 1}, ReturnValues="ALL_NEW")
    assert out["Attributes"]["price"] == Decimal("0.15") and out["Attributes"]["hits"] == 1
    with pytest.raises(ClientError) as e:
        table.put_item(Item={"user": "u1", "ts": 1}, ConditionExpression=Attr("user").not_exists())
    assert e.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    item = table.get_item(Key={"user": "u1", "ts": 3})["Item"]
    assert item["price"] == Decimal("0.3") and item["tags"] == {"a", "b"}
    table.delete()


def read_stream(streams, arn):
    records = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = streams.get_records(ShardIterator=it)
            records += out["Records"]
            if not out["Records"]:
                break
            it = out.get("NextShardIterator")
    return records


def test_stream_records(ddb, streams):
    t = make_table(ddb, range_key=False, stream="NEW_AND_OLD_IMAGES")
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "v": {"N": "1"}})  # changes nothing: no record
    ddb.update_item(TableName=t, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "2"}})
    ddb.delete_item(TableName=t, Key={"pk": {"S": "a"}})
    ddb.delete_item(TableName=t, Key={"pk": {"S": "a"}})  # nothing to delete: no record
    recs = read_stream(streams, arn)
    assert [r["eventName"] for r in recs] == ["INSERT", "MODIFY", "REMOVE"]
    first = recs[0]
    assert first["eventVersion"] == "1.1" and first["eventSource"] == "aws:dynamodb"
    assert first["awsRegion"] == REGION
    d = first["dynamodb"]
    assert d["Keys"] == {"pk": {"S": "a"}} and d["NewImage"] == {"pk": {"S": "a"}, "v": {"N": "1"}}
    assert "OldImage" not in d and d["StreamViewType"] == "NEW_AND_OLD_IMAGES" and d["SizeBytes"] > 0
    assert len(d["SequenceNumber"]) >= 21
    assert recs[1]["dynamodb"]["OldImage"]["v"] == {"N": "1"} and recs[1]["dynamodb"]["NewImage"]["v"] == {"N": "2"}
    assert "NewImage" not in recs[2]["dynamodb"] and recs[2]["dynamodb"]["OldImage"]["v"] == {"N": "2"}
    seqs = [int(r["dynamodb"]["SequenceNumber"]) for r in recs]
    assert seqs == sorted(seqs)
    listed = streams.list_streams(TableName=t)["Streams"]
    assert listed == [{"StreamArn": arn, "TableName": t, "StreamLabel": arn.split("/stream/")[1]}]
    desc = streams.describe_stream(StreamArn=arn)["StreamDescription"]
    assert desc["StreamStatus"] == "ENABLED" and desc["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    shard = desc["Shards"][0]["ShardId"]
    # AFTER_SEQUENCE_NUMBER of the first record starts at the second; LATEST sees only new ones.
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                                    SequenceNumber=recs[0]["dynamodb"]["SequenceNumber"])["ShardIterator"]
    assert [r["eventName"] for r in streams.get_records(ShardIterator=it)["Records"]] == ["MODIFY", "REMOVE"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                    SequenceNumber=recs[1]["dynamodb"]["SequenceNumber"])["ShardIterator"]
    assert len(streams.get_records(ShardIterator=it)["Records"]) == 2
    latest = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    assert streams.get_records(ShardIterator=latest)["Records"] == []
    ddb.put_item(TableName=t, Item={"pk": {"S": "b"}})
    assert [r["eventName"] for r in streams.get_records(ShardIterator=latest)["Records"]] == ["INSERT"]


@pytest.mark.parametrize("view,keys", [("KEYS_ONLY", {"Keys"}), ("NEW_IMAGE", {"Keys", "NewImage"}),
                                       ("OLD_IMAGE", {"Keys", "OldImage"})])
def test_stream_view_types(ddb, streams, view, keys):
    t = make_table(ddb, range_key=False, stream=view)
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "v": {"N": "2"}})
    modify = read_stream(streams, arn)[1]["dynamodb"]
    assert keys <= set(modify) and not ({"Keys", "NewImage", "OldImage"} - keys) & set(modify)


def test_stream_disable_and_reenable(ddb, streams):
    t = make_table(ddb, range_key=False, stream="KEYS_ONLY")
    first = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}})
    ddb.update_table(TableName=t, StreamSpecification={"StreamEnabled": False})
    ddb.put_item(TableName=t, Item={"pk": {"S": "b"}})
    assert streams.describe_stream(StreamArn=first)["StreamDescription"]["StreamStatus"] == "DISABLED"
    assert len(read_stream(streams, first)) == 1
    with pytest.raises(ClientError) as e:
        ddb.update_table(TableName=t, StreamSpecification={"StreamEnabled": False})
    assert err(e)[0] == "ValidationException"


def test_ttl_expiry_on_manual_clock(clock_server):
    ddb = clock_server.client("dynamodb")
    streams = clock_server.client("dynamodbstreams")
    t = make_table(ddb, range_key=False, stream="NEW_AND_OLD_IMAGES")
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    assert ddb.describe_time_to_live(TableName=t)["TimeToLiveDescription"]["TimeToLiveStatus"] == "DISABLED"
    ddb.update_time_to_live(TableName=t, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert ddb.describe_time_to_live(TableName=t)["TimeToLiveDescription"] == {
        "TimeToLiveStatus": "ENABLED", "AttributeName": "exp"}
    with pytest.raises(ClientError) as e:
        ddb.update_time_to_live(TableName=t, TimeToLiveSpecification={"Enabled": True, "AttributeName": "exp"})
    assert err(e) == ("ValidationException", "TimeToLive is already enabled")
    now = clock_server.admin("GET", "/_tsumiki/clock")["now_ms"] // 1000  # the server's (manual) time
    ddb.put_item(TableName=t, Item={"pk": {"S": "soon"}, "exp": {"N": str(now + 3600)}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "later"}, "exp": {"N": str(now + 10 * 86400)}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "never"}, "exp": {"S": "not a number"}})
    clock_server.advance(2 * 3600)
    deadline = time.monotonic() + 10
    while "Item" in ddb.get_item(TableName=t, Key={"pk": {"S": "soon"}}) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Item" not in ddb.get_item(TableName=t, Key={"pk": {"S": "soon"}})
    assert "Item" in ddb.get_item(TableName=t, Key={"pk": {"S": "later"}})
    assert "Item" in ddb.get_item(TableName=t, Key={"pk": {"S": "never"}})
    removes = [r for r in read_stream(streams, arn) if r["eventName"] == "REMOVE"]
    assert len(removes) == 1
    assert removes[0]["userIdentity"] == {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
    assert removes[0]["dynamodb"]["OldImage"]["pk"] == {"S": "soon"}


def test_stream_records_expire_after_24_hours(clock_server):
    ddb = clock_server.client("dynamodb")
    streams = clock_server.client("dynamodbstreams")
    t = make_table(ddb, range_key=False, stream="KEYS_ONLY")
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "old"}})
    clock_server.advance(5 * 3600)
    ddb.put_item(TableName=t, Item={"pk": {"S": "newer"}})
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    # The shard rolled after 4 hours; the new one names the old as its parent.
    assert len(shards) == 2 and shards[1]["ParentShardId"] == shards[0]["ShardId"]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in read_stream(streams, arn)] == ["old", "newer"]
    clock_server.advance(20 * 3600)
    deadline = time.monotonic() + 10
    while len(read_stream(streams, arn)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in read_stream(streams, arn)] == ["newer"]


def start_durable(data_dir):
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    endpoint = re.search(r"(http://\S+)", proc.stdout.readline().decode()).group(1)

    def client(service):
        return boto3.client(service, endpoint_url=endpoint, region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")
    return proc, client


def test_put_items_survive_kill_9_with_one_stream_record_each(tmp_path):
    proc, client = start_durable(tmp_path / "data")
    acked = []
    try:
        ddb = client("dynamodb")
        make_table(ddb, "crash", range_key=False, stream="NEW_IMAGE")
        stop = threading.Event()

        def writer(w):
            c = client("dynamodb")
            i = 0
            while not stop.is_set():
                key = f"w{w}-{i}"
                try:
                    c.put_item(TableName="crash", Item={"pk": {"S": key}, "n": {"N": str(i)}})
                except Exception:
                    return
                acked.append(key)
                i += 1

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for th in threads:
            th.start()
        deadline = time.monotonic() + 20
        while len(acked) < 200 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.kill()  # SIGKILL mid-load
        proc.wait()
        stop.set()
        for th in threads:
            th.join()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(acked) >= 50
    proc, client = start_durable(tmp_path / "data")
    try:
        ddb = client("dynamodb")
        present = set()
        start = None
        while True:
            kw = {"ExclusiveStartKey": start} if start else {}
            out = ddb.scan(TableName="crash", **kw)
            present |= {i["pk"]["S"] for i in out["Items"]}
            start = out.get("LastEvaluatedKey")
            if not start:
                break
        assert set(acked) <= present
        arn = ddb.describe_table(TableName="crash")["Table"]["LatestStreamArn"]
        recs = read_stream(client("dynamodbstreams"), arn)
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in recs]
        assert len(keys) == len(set(keys))  # exactly once
        assert set(keys) == present  # an item and its record commit together
        # Sequence numbers keep growing after the restart.
        ddb.put_item(TableName="crash", Item={"pk": {"S": "after"}})
        recs2 = read_stream(client("dynamodbstreams"), arn)
        assert int(recs2[-1]["dynamodb"]["SequenceNumber"]) > max(int(r["dynamodb"]["SequenceNumber"]) for r in recs)
    finally:
        proc.kill()
        proc.wait()


# A function that logs each batch (event name, keys, images) and fails on an item named poison.
STREAM_CONSUMER_PY = r'''
import json

def handler(event, context):
    recs = [{"name": r["eventName"], "pk": r["dynamodb"]["Keys"]["pk"]["S"],
             "new": r["dynamodb"].get("NewImage"), "old": r["dynamodb"].get("OldImage")}
            for r in event["Records"]]
    print("BATCH " + json.dumps({"recs": recs, "first": event["Records"][0]}))
    if any(r["pk"] == "poison" and r["name"] == "INSERT" for r in recs):
        raise ValueError("poison")
    return {}
'''


def logged_batches(logs, function, want, timeout=40):
    import json
    deadline = time.monotonic() + timeout
    found = []
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{function}",
                                            filterPattern='"BATCH"')["events"]
        except ClientError:
            events = []
        events.sort(key=lambda e: (e["timestamp"], e.get("eventId", "")))
        found = [json.loads(e["message"].split("BATCH ", 1)[1]) for e in events]
        if len(found) >= want:
            return found
        time.sleep(0.2)
    return found


def test_table_stream_function(server, ddb):
    """Inserts, updates and deletes reach the function in order per item with the right
    images; a failing record blocks its shard until its retries run out, then goes to the
    on-failure destination as AWS's DDBStreamBatchInfo."""
    import json
    from lambda_util import create_function, unique as fn_unique
    lam, logs, sqs = server.client("lambda"), server.client("logs"), server.client("sqs")
    t = make_table(ddb, range_key=False, stream="NEW_AND_OLD_IMAGES")
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    function = fn_unique("ddbconsumer")
    create_function(lam, function, {"app.py": STREAM_CONSUMER_PY})
    dlq = sqs.create_queue(QueueName=fn_unique("onfail"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    ddb.put_item(TableName=t, Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    ddb.update_item(TableName=t, Key={"pk": {"S": "a"}}, UpdateExpression="SET v = :v",
                    ExpressionAttributeValues={":v": {"N": "2"}})
    ddb.put_item(TableName=t, Item={"pk": {"S": "poison"}})
    ddb.delete_item(TableName=t, Key={"pk": {"S": "a"}})
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                        StartingPosition="TRIM_HORIZON", BatchSize=1,
                                        MaximumRetryAttempts=1,
                                        DestinationConfig={"OnFailure": {"Destination": dlq_arn}})
    got = logged_batches(logs, function, 5)
    seen = [(r["name"], r["pk"]) for b in got for r in b["recs"]]
    # The poison record runs twice (one retry) and nothing behind it runs meanwhile.
    assert seen[:5] == [("INSERT", "a"), ("MODIFY", "a"), ("INSERT", "poison"), ("INSERT", "poison"),
                        ("REMOVE", "a")]
    recs = [r for b in got for r in b["recs"]]
    assert recs[0]["new"] == {"pk": {"S": "a"}, "v": {"N": "1"}} and recs[0]["old"] is None
    assert recs[1]["old"]["v"] == {"N": "1"} and recs[1]["new"]["v"] == {"N": "2"}
    assert recs[4]["new"] is None and recs[4]["old"]["v"] == {"N": "2"}
    first = got[0]["first"]
    assert first["eventSource"] == "aws:dynamodb" and first["eventSourceARN"] == arn
    assert first["eventVersion"] == "1.1" and first["awsRegion"] == REGION
    msgs = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=10)["Messages"]
    info = json.loads(msgs[0]["Body"])["DDBStreamBatchInfo"]
    assert info["streamArn"] == arn and info["batchSize"] == 1
    lam.delete_event_source_mapping(UUID=m["UUID"])


def test_error_type_carries_awss_namespaces(server):
    """DynamoDB names `__type` with AWS's namespaces (strict clients compare the whole string);
    botocore reads the part after `#`, as the other tests show."""
    import urllib.error
    import urllib.request

    def raw(target, body):
        req = urllib.request.Request(server.endpoint + "/", data=json.dumps(body).encode(), headers={
            "X-Amz-Target": f"DynamoDB_20120810.{target}",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/dynamodb/aws4_request, "
                             "SignedHeaders=host, Signature=0"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    status, body = raw("DescribeTable", {"TableName": "no-such-table-here"})
    assert status == 400
    assert body["__type"] == "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"
    status, body = raw("GetItem", {"TableName": "no-such-table-here"})  # no Key
    assert status == 400 and body["__type"] == "com.amazon.coral.validate#ValidationException"
