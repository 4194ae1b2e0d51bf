"""PartiQL for DynamoDB through boto3: ExecuteStatement (SELECT as Query or Scan with paging,
INSERT, UPDATE, DELETE, RETURNING), BatchExecuteStatement, ExecuteTransaction with cancellation
reasons and idempotency tokens, stream records of PartiQL writes, AWS's validation messages,
and TransactWriteItems tokens that survive a restart.
"""

import uuid

import pytest
from botocore.exceptions import ClientError

from test_dynamodb import err, make_table, read_stream, start_durable


@pytest.fixture(scope="module")
def ddb(server):
    return server.client("dynamodb")


@pytest.fixture(scope="module")
def streams(server):
    return server.client("dynamodbstreams")


def S(v):
    return {"S": v}


def N(v):
    return {"N": str(v)}


def run(ddb, statement, *params, **kw):
    if params:
        kw["Parameters"] = list(params)
    return ddb.execute_statement(Statement=statement, **kw)


def test_insert_select_update_delete(ddb):
    t = make_table(ddb)
    run(ddb, f'INSERT INTO "{t}" VALUE {{\'pk\': ?, \'sk\': 1, \'name\': \'it\'\'s\', '
             "'tags': <<'a', 'b'>>, 'nums': <<1, 2>>, 'l': [1, 'x', TRUE, NULL], "
             "'m': {'k': {'deep': [10, 20]}}, 'n': 5}", S("p1"))
    got = ddb.get_item(TableName=t, Key={"pk": S("p1"), "sk": N(1)})["Item"]
    assert got["name"] == S("it's")
    assert sorted(got["tags"]["SS"]) == ["a", "b"] and sorted(got["nums"]["NS"]) == ["1", "2"]
    assert got["l"] == {"L": [N(1), S("x"), {"BOOL": True}, {"NULL": True}]}
    assert got["m"] == {"M": {"k": {"M": {"deep": {"L": [N(10), N(20)]}}}}}

    with pytest.raises(ClientError) as e:
        run(ddb, f"INSERT INTO \"{t}\" VALUE {{'pk': 'p1', 'sk': 1}}")
    assert err(e) == ("DuplicateItemException", "Duplicate primary key exists in table")

    items = run(ddb, f'SELECT name, m.k.deep[1], "tags" FROM "{t}" WHERE pk = ? AND sk = 1', S("p1"))["Items"]
    assert items == [{"name": S("it's"), "m": {"M": {"k": {"M": {"deep": {"L": [N(20)]}}}}},
                      "tags": got["tags"]}]

    out = run(ddb, f"UPDATE \"{t}\" SET n = n + 2 SET l = list_append(l, [?]) "
                   "SET tags = set_add(tags, <<'c'>>) SET nums = set_delete(nums, <<1>>) "
                   "REMOVE name WHERE pk = 'p1' AND sk = 1 RETURNING ALL NEW *", S("y"))
    new = out["Items"][0]
    assert new["n"] == N(7) and new["l"]["L"][-1] == S("y") and "name" not in new
    assert sorted(new["tags"]["SS"]) == ["a", "b", "c"] and new["nums"] == {"NS": ["2"]}
    out = run(ddb, f"UPDATE \"{t}\" SET n = n - 1 WHERE pk = 'p1' AND sk = 1 RETURNING MODIFIED OLD *")
    assert out["Items"] == [{"n": N(7)}]

    # UPDATE changes an existing item only; a WHERE that does not hold fails the same way.
    for stmt in (f"UPDATE \"{t}\" SET n = 1 WHERE pk = 'nope' AND sk = 1",
                 f"UPDATE \"{t}\" SET n = 1 WHERE pk = 'p1' AND sk = 1 AND n > 100"):
        with pytest.raises(ClientError) as e:
            run(ddb, stmt)
        assert err(e) == ("ConditionalCheckFailedException", "The conditional request failed")
    with pytest.raises(ClientError) as e:
        run(ddb, f"UPDATE \"{t}\" SET n = 1 WHERE pk = 'p1' AND sk = 1 AND n > 100",
            ReturnValuesOnConditionCheckFailure="ALL_OLD")
    assert e.value.response["Item"]["n"] == N(6)

    with pytest.raises(ClientError) as e:
        run(ddb, f"UPDATE \"{t}\" SET n = 1 WHERE pk = 'p1'")
    assert err(e) == ("ValidationException",
                      "Where clause does not contain a mandatory equality on all key attributes")

    out = run(ddb, f"DELETE FROM \"{t}\" WHERE pk = 'p1' AND sk = 1 RETURNING ALL OLD *")
    assert out["Items"][0]["n"] == N(6)
    assert "Item" not in ddb.get_item(TableName=t, Key={"pk": S("p1"), "sk": N(1)})


def test_select_as_query_and_scan_with_paging(ddb):
    t = make_table(ddb, extra_attrs=[{"AttributeName": "color", "AttributeType": "S"}],
                   GlobalSecondaryIndexes=[{"IndexName": "byColor",
                                            "KeySchema": [{"AttributeName": "color", "KeyType": "HASH"}],
                                            "Projection": {"ProjectionType": "ALL"}}])
    for p in ("a", "b"):
        for i in range(6):
            ddb.put_item(TableName=t, Item={"pk": S(p), "sk": N(i), "v": N(i * 10),
                                            "color": S("red" if i % 2 else "blue"),
                                            "doc": {"M": {"xs": {"L": [N(i)]}}}})
    # A WHERE on the partition key reads that partition in sort key order.
    items = run(ddb, f'SELECT sk FROM "{t}" WHERE pk = ?', S("a"))["Items"]
    assert [i["sk"]["N"] for i in items] == ["0", "1", "2", "3", "4", "5"]
    items = run(ddb, f'SELECT sk FROM "{t}" WHERE pk = \'a\' ORDER BY sk DESC')["Items"]
    assert [i["sk"]["N"] for i in items] == ["5", "4", "3", "2", "1", "0"]
    items = run(ddb, f'SELECT sk FROM "{t}" WHERE pk = \'a\' AND sk BETWEEN 2 AND 4 AND v <> 30')["Items"]
    assert [i["sk"]["N"] for i in items] == ["2", "4"]
    # Without it, a Scan with the WHERE as a filter.
    cases = {
        "v >= 40": 4,
        "v < 10": 2,
        "v <= 10 OR sk IN [5]": 6,
        "NOT (color = 'red')": 6,
        "begins_with(color, 're')": 6,
        "contains(color, 'lu')": 6,
        "doc.xs[0] > 3": 4,
        "attribute_exists(doc) AND color IS NOT MISSING": 12,
        "missing_attr IS MISSING AND attribute_not_exists(other)": 12,
        "pk IN ('a', 'zz') AND sk IN [0, 1]": 2,
    }
    for where, count in cases.items():
        items = run(ddb, f'SELECT * FROM "{t}" WHERE {where}')["Items"]
        assert len(items) == count, where
    # An index as "table"."index".
    items = run(ddb, f'SELECT pk, sk FROM "{t}"."byColor" WHERE color = \'red\'')["Items"]
    assert len(items) == 6
    # Limit and NextToken page through everything once.
    seen, token, pages = [], None, 0
    while True:
        kw = {"Limit": 5}
        if token:
            kw["NextToken"] = token
        out = run(ddb, f'SELECT * FROM "{t}"', **kw)
        seen += [(i["pk"]["S"], i["sk"]["N"]) for i in out["Items"]]
        pages += 1
        token = out.get("NextToken")
        if not token:
            break
    assert len(seen) == 12 and len(set(seen)) == 12 and pages == 3
    out = run(ddb, f'SELECT * FROM "{t}" WHERE pk = \'b\'', Limit=2, ConsistentRead=True)
    assert len(out["Items"]) == 2 and "NextToken" in out
    out = run(ddb, f'SELECT * FROM "{t}" WHERE pk = \'b\'', NextToken=out["NextToken"])
    assert [i["sk"]["N"] for i in out["Items"]] == ["2", "3", "4", "5"]


@pytest.mark.parametrize("statement, params, code, message", [
    ("CREATE TABLE x", [], "ValidationException",
     "Statement wasn't well formed, can't be processed: Expected data manipulation"),
    ('SELECT * FROM "t" WHERE', [], "ValidationException",
     "Statement wasn't well formed, can't be processed: Unexpected end of statement"),
    ("SELECT * FROM \"t\" WHERE a = 'x", [], "ValidationException",
     "Statement wasn't well formed, can't be processed: Unterminated string literal"),
    ('SELECT * FROM "t" WHERE a = ?', [], "ValidationException",
     "Number of parameters in request and statement don't match."),
    ('SELECT * FROM "no-such-table"', [], "ResourceNotFoundException", "Requested resource not found"),
    ("INSERT INTO \"t\" VALUE {'a': <<'x', 'x'>>}", [], "ValidationException",
     "Input collection contains duplicates"),
])
def test_validation_messages(ddb, statement, params, code, message):
    with pytest.raises(ClientError) as e:
        kw = {"Parameters": params} if params else {}
        ddb.execute_statement(Statement=statement, **kw)
    assert err(e) == (code, message)


def test_batch_execute_statement(ddb):
    t = make_table(ddb, range_key=False)
    out = ddb.batch_execute_statement(Statements=[
        {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': ?, 'v': 1}}", "Parameters": [S("a")]},
        {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': 'b', 'v': 2}}"},
        {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': 'a', 'v': 3}}"},
        {"Statement": f"UPDATE \"{t}\" SET v = 9 WHERE pk = 'zz'"},
        {"Statement": "INSERT INTO \"no-such\" VALUE {'pk': 'a'}"},
    ])["Responses"]
    assert out[0] == {"TableName": t} and out[1] == {"TableName": t}
    assert out[2]["Error"]["Code"] == "DuplicateItem"
    assert out[3]["Error"]["Code"] == "ConditionalCheckFailed"
    assert out[4]["Error"]["Code"] == "ResourceNotFound"
    out = ddb.batch_execute_statement(Statements=[
        {"Statement": f"SELECT * FROM \"{t}\" WHERE pk = 'a'"},
        {"Statement": f"SELECT v FROM \"{t}\" WHERE pk = ?", "Parameters": [S("b")]},
        {"Statement": f"SELECT * FROM \"{t}\" WHERE pk = 'none'"},
    ])["Responses"]
    assert out[0]["Item"] == {"pk": S("a"), "v": N(1)}
    assert out[1] == {"TableName": t, "Item": {"v": N(2)}}
    assert out[2] == {"TableName": t}
    with pytest.raises(ClientError) as e:
        ddb.batch_execute_statement(Statements=[
            {"Statement": f"SELECT * FROM \"{t}\" WHERE pk = 'a'"},
            {"Statement": f"DELETE FROM \"{t}\" WHERE pk = 'a'"}])
    assert err(e)[0] == "ValidationException"


def test_execute_transaction(ddb):
    t = make_table(ddb, range_key=False)
    ddb.put_item(TableName=t, Item={"pk": S("acct1"), "bal": N(100)})
    ddb.put_item(TableName=t, Item={"pk": S("acct2"), "bal": N(0)})

    def transfer(amount, token=None):
        kw = {"ClientRequestToken": token} if token else {}
        return ddb.execute_transaction(TransactStatements=[
            {"Statement": f'UPDATE "{t}" SET bal = bal - ? WHERE pk = \'acct1\' AND bal >= ?',
             "Parameters": [N(amount), N(amount)], "ReturnValuesOnConditionCheckFailure": "ALL_OLD"},
            {"Statement": f'UPDATE "{t}" SET bal = bal + ? WHERE pk = \'acct2\'', "Parameters": [N(amount)]},
            {"Statement": f"INSERT INTO \"{t}\" VALUE {{'pk': ?}}", "Parameters": [S(f"log-{amount}")]},
        ], **kw)

    token = uuid.uuid4().hex
    transfer(60, token=token)
    transfer(60, token=token)  # the same request under the same token: applied once
    with pytest.raises(ClientError) as e:
        transfer(61, token=token)
    assert err(e)[0] == "IdempotentParameterMismatchException"
    with pytest.raises(ClientError) as e:
        transfer(60)
    code, message = err(e)
    assert code == "TransactionCanceledException"
    assert message == ("Transaction cancelled, please refer cancellation reasons for specific reasons "
                       "[ConditionalCheckFailed, None, DuplicateItem]")
    reasons = e.value.response["CancellationReasons"]
    assert reasons[0]["Item"]["bal"] == N(40)
    assert reasons[2]["Code"] == "DuplicateItem"
    got = ddb.execute_transaction(TransactStatements=[
        {"Statement": f"SELECT bal FROM \"{t}\" WHERE pk = '{k}'"} for k in ("acct1", "acct2", "nope")
    ])["Responses"]
    assert got == [{"Item": {"bal": N(40)}}, {"Item": {"bal": N(60)}}, {}]
    with pytest.raises(ClientError) as e:
        ddb.execute_transaction(TransactStatements=[
            {"Statement": f"UPDATE \"{t}\" SET x = 1 WHERE pk = 'acct1'"},
            {"Statement": f"DELETE FROM \"{t}\" WHERE pk = 'acct1'"}])
    assert err(e) == ("ValidationException", "Transaction request cannot include multiple operations on one item")


def test_partiql_writes_reach_the_stream(ddb, streams):
    t = make_table(ddb, range_key=False, stream="NEW_AND_OLD_IMAGES")
    arn = ddb.describe_table(TableName=t)["Table"]["LatestStreamArn"]
    run(ddb, f"INSERT INTO \"{t}\" VALUE {{'pk': 'a', 'v': 1}}")
    run(ddb, f"UPDATE \"{t}\" SET v = 2 WHERE pk = 'a'")
    run(ddb, f"DELETE FROM \"{t}\" WHERE pk = 'a'")
    recs = read_stream(streams, arn)
    assert [r["eventName"] for r in recs] == ["INSERT", "MODIFY", "REMOVE"]
    assert recs[1]["dynamodb"]["OldImage"]["v"] == N(1) and recs[1]["dynamodb"]["NewImage"]["v"] == N(2)


def test_transaction_tokens_survive_restart(tmp_path):
    """A ClientRequestToken is stored with the writes it guards: after kill -9 and a restart, a
    replay still applies nothing and a different request under it is still refused."""
    proc, client = start_durable(tmp_path / "data")
    items = lambda n: [{"Update": {"TableName": "tok", "Key": {"pk": S("c")},  # noqa: E731
                                   "UpdateExpression": "ADD n :one",
                                   "ExpressionAttributeValues": {":one": N(n)}}}]
    try:
        ddb = client("dynamodb")
        make_table(ddb, "tok", range_key=False)
        ddb.transact_write_items(TransactItems=items(1), ClientRequestToken="tok-a")
        ddb.execute_transaction(TransactStatements=[
            {"Statement": "UPDATE \"tok\" SET m = 1 WHERE pk = 'c'"}], ClientRequestToken="tok-b")
    finally:
        proc.kill()
        proc.wait()
    proc, client = start_durable(tmp_path / "data")
    try:
        ddb = client("dynamodb")
        ddb.transact_write_items(TransactItems=items(1), ClientRequestToken="tok-a")
        assert ddb.get_item(TableName="tok", Key={"pk": S("c")})["Item"]["n"] == N(1)
        with pytest.raises(ClientError) as e:
            ddb.transact_write_items(TransactItems=items(2), ClientRequestToken="tok-a")
        assert err(e)[0] == "IdempotentParameterMismatchException"
        with pytest.raises(ClientError) as e:
            ddb.execute_transaction(TransactStatements=[
                {"Statement": "UPDATE \"tok\" SET m = 2 WHERE pk = 'c'"}], ClientRequestToken="tok-b")
        assert err(e)[0] == "IdempotentParameterMismatchException"
        ddb.transact_write_items(TransactItems=items(5), ClientRequestToken="tok-c")
        assert ddb.get_item(TableName="tok", Key={"pk": S("c")})["Item"]["n"] == N(6)
    finally:
        proc.kill()
        proc.wait()



def test_kinesis_streaming_destination(server, ddb):
    """Item changes reach a Kinesis stream in AWS's DynamoDB-to-Kinesis record shape, in order
    per item, while the destination is enabled, and not after it is disabled."""
    import base64
    import json
    import time

    kinesis = server.client("kinesis")
    stream = f"ddb-dest-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"]
    t = make_table(ddb, range_key=False)
    with pytest.raises(ClientError) as e:
        ddb.enable_kinesis_streaming_destination(TableName=t, StreamArn=arn + "-missing")
    assert err(e)[0] == "ValidationException"
    out = ddb.enable_kinesis_streaming_destination(TableName=t, StreamArn=arn)
    assert out["DestinationStatus"] == "ENABLING" and out["TableName"] == t
    dests = ddb.describe_kinesis_streaming_destination(TableName=t)["KinesisDataStreamDestinations"]
    assert dests == [{"StreamArn": arn, "DestinationStatus": "ACTIVE",
                      "ApproximateCreationDateTimePrecision": "MILLISECOND"}]
    ddb.put_item(TableName=t, Item={"pk": S("a"), "v": N(1)})
    run(ddb, f"UPDATE \"{t}\" SET v = 2 WHERE pk = 'a'")
    ddb.delete_item(TableName=t, Key={"pk": S("a")})
    shard = kinesis.list_shards(StreamARN=arn)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamARN=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records, deadline = [], time.monotonic() + 10
    while len(records) < 3 and time.monotonic() < deadline:
        got = kinesis.get_records(ShardIterator=it)
        records += [json.loads(r["Data"]) for r in got["Records"]]
        it = got["NextShardIterator"]
        if len(records) < 3:
            time.sleep(0.05)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    first = records[0]
    assert first["eventSource"] == "aws:dynamodb" and first["tableName"] == t
    assert first["recordFormat"] == "application/json"
    assert first["dynamodb"]["Keys"] == {"pk": S("a")} and first["dynamodb"]["NewImage"]["v"] == N(1)
    assert records[1]["dynamodb"]["OldImage"]["v"] == N(1) and records[1]["dynamodb"]["NewImage"]["v"] == N(2)
    assert "NewImage" not in records[2]["dynamodb"]

    out = ddb.disable_kinesis_streaming_destination(TableName=t, StreamArn=arn)
    assert out["DestinationStatus"] == "DISABLING"
    assert ddb.describe_kinesis_streaming_destination(TableName=t)[
        "KinesisDataStreamDestinations"][0]["DestinationStatus"] == "DISABLED"
    with pytest.raises(ClientError) as e:
        ddb.disable_kinesis_streaming_destination(TableName=t, StreamArn=arn)
    assert err(e)[0] == "ValidationException"
    ddb.put_item(TableName=t, Item={"pk": S("b")})
    ddb.put_item(TableName=t, Item={"pk": S("c")})
    # Enabled again: the next record on the stream is d's; b and c went nowhere.
    ddb.enable_kinesis_streaming_destination(TableName=t, StreamArn=arn)
    ddb.put_item(TableName=t, Item={"pk": S("d")})
    later, deadline = [], time.monotonic() + 10
    while not later and time.monotonic() < deadline:
        got = kinesis.get_records(ShardIterator=it)
        later += [json.loads(r["Data"]) for r in got["Records"]]
        it = got["NextShardIterator"]
        if not later:
            time.sleep(0.05)
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in later] == ["d"]
