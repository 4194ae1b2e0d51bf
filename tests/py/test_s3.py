"""S3 through boto3 (and plain HTTP for presigned URLs): buckets, objects, ranges,
conditional requests, metadata, checksums, multipart uploads, listings, versioning, and event
notifications to SQS, Lambda and EventBridge."""

import hashlib
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from lambda_util import create_function, unique


def error_of(excinfo):
    r = excinfo.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def s3(server):
    return server.client("s3", s3={"addressing_style": "path"})


@pytest.fixture
def bucket(s3):
    name = f"b-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def receive_all(sqs, url, want, timeout=10):
    got, deadline = [], time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        out = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        got += out.get("Messages", [])
    return got


# --- buckets -----------------------------------------------------------------------------


def test_bucket_lifecycle_and_errors(s3):
    name = f"b-{uuid.uuid4().hex[:16]}"
    out = s3.create_bucket(Bucket=name)
    assert out["Location"] == f"/{name}"
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert s3.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    # us-east-1 answers its owner 200 on a repeated create.
    s3.create_bucket(Bucket=name)

    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket="no-such-bucket-" + uuid.uuid4().hex[:8])
    assert error_of(e)[1] == 404
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket="no-such-bucket-" + uuid.uuid4().hex[:8])
    assert error_of(e) == ("NoSuchBucket", 404)
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket="Bad_Name")
    assert error_of(e) == ("InvalidBucketName", 400)

    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert error_of(e) == ("BucketNotEmpty", 409)
    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert error_of(e)[1] == 404


def test_bucket_in_another_region_and_owner(server):
    s3w = server.client("s3", s3={"addressing_style": "path"})
    import boto3

    eu = boto3.client("s3", endpoint_url=server.endpoint, region_name="eu-west-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      config=Config(s3={"addressing_style": "path"}))
    name = f"b-{uuid.uuid4().hex[:16]}"
    eu.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert eu.get_bucket_location(Bucket=name)["LocationConstraint"] == "eu-west-1"
    with pytest.raises(ClientError) as e:
        eu.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    assert error_of(e) == ("BucketAlreadyOwnedByYou", 409)
    # Another account cannot take the name.
    other = server.client("s3", access_key="210987654321", s3={"addressing_style": "path"})
    with pytest.raises(ClientError) as e:
        other.create_bucket(Bucket=name)
    assert error_of(e) == ("BucketAlreadyExists", 409)
    assert s3w.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "eu-west-1"


def test_bucket_tagging_cors_policy_lifecycle_encryption(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_of(e) == ("NoSuchTagSet", 404)
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "team", "Value": "a"}]})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "team", "Value": "a"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError):
        s3.get_bucket_tagging(Bucket=bucket)

    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert error_of(e) == ("NoSuchCORSConfiguration", 404)
    rules = [{"AllowedMethods": ["GET", "PUT"], "AllowedOrigins": ["*"], "MaxAgeSeconds": 300}]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert got[0]["AllowedMethods"] == ["GET", "PUT"] and got[0]["MaxAgeSeconds"] == 300

    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == json.loads(policy)
    s3.delete_bucket_policy(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_of(e) == ("NoSuchBucketPolicy", 404)

    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "old-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 1}}]})
    [rule] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert rule["ID"] == "old-logs" and rule["Expiration"]["Days"] == 1

    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


# --- objects -----------------------------------------------------------------------------


def test_put_get_head_with_metadata_and_content_headers(s3, bucket):
    body = b"hello, tsumiki"
    out = s3.put_object(Bucket=bucket, Key="dir/a b+c.txt", Body=body, ContentType="text/plain",
                        Metadata={"color": "blue"}, CacheControl="max-age=60",
                        ContentDisposition="inline", ContentLanguage="en")
    etag = '"' + hashlib.md5(body).hexdigest() + '"'
    assert out["ETag"] == etag
    got = s3.get_object(Bucket=bucket, Key="dir/a b+c.txt")
    assert got["Body"].read() == body
    assert got["ETag"] == etag
    assert got["ContentType"] == "text/plain"
    assert got["ContentLength"] == len(body)
    assert got["Metadata"] == {"color": "blue"}
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentDisposition"] == "inline"
    assert got["ContentLanguage"] == "en"
    head = s3.head_object(Bucket=bucket, Key="dir/a b+c.txt")
    assert head["ContentLength"] == len(body) and head["ETag"] == etag
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing")
    assert error_of(e) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert error_of(e)[1] == 404

    # Overwrite, then GET with response header overrides.
    s3.put_object(Bucket=bucket, Key="dir/a b+c.txt", Body=b"second")
    got = s3.get_object(Bucket=bucket, Key="dir/a b+c.txt", ResponseContentType="x/y")
    assert got["Body"].read() == b"second" and got["ContentType"] == "x/y"
    assert s3.head_object(Bucket=bucket, Key="dir/a b+c.txt")["ContentType"] == "binary/octet-stream"


def test_empty_and_unicode_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    key = "日本語/ファイル #1?.txt"
    s3.put_object(Bucket=bucket, Key=key, Body=b"u")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"u"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert key in keys


def test_ranges(s3, bucket):
    body = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert got["Body"].read() == body[10:20]
    assert got["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=-5")["Body"].read() == body[-5:]
    assert s3.get_object(Bucket=bucket, Key="r", Range="bytes=1000-")["Body"].read() == body[1000:]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=5000-6000")
    assert error_of(e) == ("InvalidRange", 416)


def test_conditional_requests(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"v1")["ETag"]
    assert s3.get_object(Bucket=bucket, Key="c", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfNoneMatch=etag)
    assert error_of(e)[1] == 304
    future = datetime.now(timezone.utc) + timedelta(days=1)
    past = datetime.now(timezone.utc) - timedelta(days=1)
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=future)
    assert error_of(e)[1] == 304
    assert s3.get_object(Bucket=bucket, Key="c", IfModifiedSince=past)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="c", IfUnmodifiedSince=past)
    assert error_of(e) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="c", IfMatch='"0000"')
    assert error_of(e)[1] == 412

    # Conditional writes: create only if absent, replace only if unchanged.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfNoneMatch="*")
    assert error_of(e) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="new", Body=b"n", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfMatch='"0000"')
    assert error_of(e) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=bucket, Key="c", Body=b"v2", IfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"v2"


# CRC32C needs botocore[crt] on the client; the Rust SDK test covers it.
@pytest.mark.parametrize("algorithm", ["CRC32", "SHA1", "SHA256"])
def test_checksums(s3, bucket, algorithm):
    body = b"checksummed " * 1000
    out = s3.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=body, ChecksumAlgorithm=algorithm)
    value = out[f"Checksum{algorithm}"]
    got = s3.get_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == value
    assert got["Body"].read() == body
    head = s3.head_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value
    if algorithm == "SHA256":
        import base64
        assert value == base64.b64encode(hashlib.sha256(body).digest()).decode()


def test_wrong_checksum_and_md5_are_rejected(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ChecksumCRC32="AAAAAA==")
    assert error_of(e)[0] in ("BadDigest", "InvalidRequest") and error_of(e)[1] == 400
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad", Body=b"abc", ContentMD5="1B2M2Y8AsgTpgAmY7PhCfg==")
    assert error_of(e) == ("BadDigest", 400)
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad")
    assert error_of(e)[1] == 404


def test_delete_objects_and_copy(s3, bucket):
    for k in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode(), Metadata={"k": k})
    out = s3.copy_object(Bucket=bucket, Key="a-copy", CopySource={"Bucket": bucket, "Key": "a"})
    assert out["CopyObjectResult"]["ETag"] == '"' + hashlib.md5(b"a").hexdigest() + '"'
    got = s3.get_object(Bucket=bucket, Key="a-copy")
    assert got["Body"].read() == b"a" and got["Metadata"] == {"k": "a"}
    s3.copy_object(Bucket=bucket, Key="b-copy", CopySource=f"{bucket}/b", MetadataDirective="REPLACE",
                   Metadata={"new": "1"}, ContentType="text/x")
    got = s3.get_object(Bucket=bucket, Key="b-copy")
    assert got["Metadata"] == {"new": "1"} and got["ContentType"] == "text/x"
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="a", CopySource=f"{bucket}/a")
    assert error_of(e) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/missing")
    assert error_of(e) == ("NoSuchKey", 404)

    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a"}, {"Key": "b"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in out["Deleted"]) == ["a", "b", "never-existed"]
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["a-copy", "b-copy", "c"]
    out = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}], "Quiet": True})
    assert "Deleted" not in out or out["Deleted"] == []
    assert s3.delete_object(Bucket=bucket, Key="gone")["ResponseMetadata"]["HTTPStatusCode"] == 204


def test_object_tagging(s3, bucket):
    s3.put_object(Bucket=bucket, Key="t", Body=b"t", Tagging="a=1&b=two")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [
        {"Key": "a", "Value": "1"}, {"Key": "b", "Value": "two"}]
    assert s3.get_object(Bucket=bucket, Key="t")["TagCount"] == 2
    s3.put_object_tagging(Bucket=bucket, Key="t", Tagging={"TagSet": [{"Key": "x", "Value": "y"}]})
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == [{"Key": "x", "Value": "y"}]
    s3.delete_object_tagging(Bucket=bucket, Key="t")
    assert s3.get_object_tagging(Bucket=bucket, Key="t")["TagSet"] == []


# --- listings ----------------------------------------------------------------------------


def test_list_v2_prefix_delimiter_and_paging(s3, bucket):
    keys = ["a/1", "a/2", "a/b/3", "b/1", "c", "d"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    out = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/", "b/"]
    assert [o["Key"] for o in out["Contents"]] == ["c", "d"]
    assert out["KeyCount"] == 4
    out = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in out["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/b/"]

    seen, token, pages = [], None, 0
    while True:
        args = dict(Bucket=bucket, MaxKeys=2)
        if token:
            args["ContinuationToken"] = token
        out = s3.list_objects_v2(**args)
        pages += 1
        seen += [o["Key"] for o in out.get("Contents", [])]
        if not out["IsTruncated"]:
            break
        token = out["NextContinuationToken"]
    assert seen == keys and pages == 3

    # Paging with a delimiter counts common prefixes too.
    out = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=1)
    assert out["IsTruncated"] and [p["Prefix"] for p in out["CommonPrefixes"]] == ["a/"]
    out = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=10,
                             ContinuationToken=out["NextContinuationToken"])
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["b/"]
    assert s3.list_objects_v2(Bucket=bucket, StartAfter="b/1")["Contents"][0]["Key"] == "c"

    # The paginator sees everything once.
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 4})
    assert [o["Key"] for p in pages for o in p.get("Contents", [])] == keys


def test_list_v1_markers(s3, bucket):
    for k in ["x/1", "x/2", "y", "z"]:
        s3.put_object(Bucket=bucket, Key=k, Body=b"x")
    out = s3.list_objects(Bucket=bucket, MaxKeys=2)
    assert [o["Key"] for o in out["Contents"]] == ["x/1", "x/2"] and out["IsTruncated"]
    out = s3.list_objects(Bucket=bucket, Marker="x/2")
    assert [o["Key"] for o in out["Contents"]] == ["y", "z"] and not out["IsTruncated"]
    out = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert out["NextMarker"] == "y"
    assert [p["Prefix"] for p in out["CommonPrefixes"]] == ["x/"]
    out = s3.list_objects(Bucket=bucket, EncodingType="url", Prefix="x/")
    assert [o["Key"] for o in out["Contents"]] == ["x/1", "x/2"]


# --- multipart ---------------------------------------------------------------------------


def test_multipart_upload_list_parts_abort(s3, bucket):
    part = 5 * 1024 * 1024
    up = s3.create_multipart_upload(Bucket=bucket, Key="big", ContentType="application/x-big",
                                    Metadata={"m": "1"})
    uid = up["UploadId"]
    bodies = [b"a" * part, b"b" * part, b"tail"]
    etags = []
    for i, b in enumerate(bodies, start=1):
        etags.append(s3.upload_part(Bucket=bucket, Key="big", UploadId=uid, PartNumber=i, Body=b)["ETag"])
    parts = s3.list_parts(Bucket=bucket, Key="big", UploadId=uid)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1, 2, 3] and parts[2]["Size"] == 4
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [uid]

    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]})
    assert error_of(e) == ("InvalidPartOrder", 400)
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": '"00"'}]})
    assert error_of(e) == ("InvalidPart", 400)

    out = s3.complete_multipart_upload(Bucket=bucket, Key="big", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": i + 1, "ETag": t} for i, t in enumerate(etags)]})
    md5s = b"".join(hashlib.md5(b).digest() for b in bodies)
    assert out["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    got = s3.get_object(Bucket=bucket, Key="big")
    data = got["Body"].read()
    assert data == b"".join(bodies)
    assert got["ContentType"] == "application/x-big" and got["Metadata"] == {"m": "1"}
    assert s3.get_object(Bucket=bucket, Key="big", Range="bytes=5242878-5242881")["Body"].read() == b"aabb"
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="big", UploadId=uid)
    assert error_of(e) == ("NoSuchUpload", 404)

    # Too-small parts, and abort.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="small")["UploadId"]
    t1 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=1, Body=b"x")["ETag"]
    t2 = s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=2, Body=b"y")["ETag"]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="small", UploadId=uid, MultipartUpload={
            "Parts": [{"PartNumber": 1, "ETag": t1}, {"PartNumber": 2, "ETag": t2}]})
    assert error_of(e) == ("EntityTooSmall", 400)
    s3.abort_multipart_upload(Bucket=bucket, Key="small", UploadId=uid)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="small", UploadId=uid, PartNumber=3, Body=b"z")
    assert error_of(e) == ("NoSuchUpload", 404)


def test_upload_part_copy_and_transfer_manager(s3, bucket):
    src = bytes(range(256)) * (24 * 1024)  # 6 MiB
    s3.put_object(Bucket=bucket, Key="src", Body=src)
    uid = s3.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    p1 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=1,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes=0-{5 * 1024 * 1024 - 1}")
    p2 = s3.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=uid, PartNumber=2,
                             CopySource={"Bucket": bucket, "Key": "src"},
                             CopySourceRange=f"bytes={5 * 1024 * 1024}-{len(src) - 1}")
    s3.complete_multipart_upload(Bucket=bucket, Key="assembled", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": p1["CopyPartResult"]["ETag"]},
                  {"PartNumber": 2, "ETag": p2["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="assembled")["Body"].read() == src

    # boto3's transfer manager: multipart upload and ranged parallel download.
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024)
    data = bytes(range(251)) * 50_000  # ~12.5 MB, 3 parts
    s3.upload_fileobj(io.BytesIO(data), bucket, "managed", Config=cfg)
    buf = io.BytesIO()
    s3.download_fileobj(bucket, "managed", buf, Config=cfg)
    assert buf.getvalue() == data
    assert s3.head_object(Bucket=bucket, Key="managed")["ETag"].endswith('-3"')


# --- presigned URLs ----------------------------------------------------------------------


def http(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_presigned_get_and_put(server, s3, bucket):
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "p.txt"},
                                        ExpiresIn=300)
    status, _, _ = http("PUT", put_url, data=b"via presigned PUT")
    assert status == 200
    get_url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"},
                                        ExpiresIn=300)
    status, body, headers = http("GET", get_url)
    assert status == 200 and body == b"via presigned PUT"
    headers = {k.lower(): v for k, v in headers.items()}
    assert headers["etag"] == '"' + hashlib.md5(b"via presigned PUT").hexdigest() + '"'

    # boto3 presigns S3 with SigV2 query parameters by default; SigV4 ones work too.
    assert "Signature=" in get_url
    v4 = server.client("s3", signature_version="s3v4", s3={"addressing_style": "path"})
    v4_url = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"},
                                       ExpiresIn=300)
    assert "X-Amz-Signature=" in v4_url
    status, body, _ = http("GET", v4_url)
    assert status == 200 and body == b"via presigned PUT"

    # Expired URLs are refused, either way.
    expired_v4 = v4.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"},
                                           ExpiresIn=1)
    expired_v2 = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "p.txt"},
                                           ExpiresIn=1)
    time.sleep(2.1)
    for url in (expired_v4, expired_v2):
        status, body, _ = http("GET", url)
        assert status == 403 and b"AccessDenied" in body, url


def test_virtual_host_style(server, bucket):
    # boto3 addresses bucket.s3.localhost:port when asked for virtual-host style.
    port = server.endpoint.rsplit(":", 1)[1]
    vh = server.client("s3", s3={"addressing_style": "virtual"})
    vh._endpoint.host = f"http://s3.localhost:{port}"
    try:
        vh.put_object(Bucket=bucket, Key="vh", Body=b"virtual")
    except Exception as e:  # name resolution of *.localhost is the resolver's business
        pytest.skip(f"*.s3.localhost does not resolve here: {e}")
    path = server.client("s3", s3={"addressing_style": "path"})
    assert path.get_object(Bucket=bucket, Key="vh")["Body"].read() == b"virtual"
    # A raw request with the Host header only.
    req = urllib.request.Request(f"{server.endpoint}/vh", headers={"Host": f"{bucket}.s3.localhost"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.read() == b"virtual"


def test_unimplemented_operation_names_itself(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_website(Bucket=bucket)
    code, status = error_of(e)
    assert code == "NotImplemented" and status == 501
    assert "GetBucketWebsite" in e.value.response["Error"]["Message"]


# --- versioning --------------------------------------------------------------------------


def test_versioning_versions_and_delete_markers(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="v", Body=b"before")  # the "null" version
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    v1 = s3.put_object(Bucket=bucket, Key="v", Body=b"one")["VersionId"]
    v2 = s3.put_object(Bucket=bucket, Key="v", Body=b"two")["VersionId"]
    assert v1 != v2 and v1 != "null"
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId=v1)["Body"].read() == b"one"
    assert s3.get_object(Bucket=bucket, Key="v", VersionId="null")["Body"].read() == b"before"

    out = s3.delete_object(Bucket=bucket, Key="v")
    assert out["DeleteMarker"] is True
    marker = out["VersionId"]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="v")
    assert error_of(e) == ("NoSuchKey", 404)
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-delete-marker"] == "true"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    listed = s3.list_object_versions(Bucket=bucket)
    assert [(v["VersionId"], v["IsLatest"]) for v in listed["Versions"]] == [
        (v2, False), (v1, False), ("null", False)]
    assert [(m["VersionId"], m["IsLatest"]) for m in listed["DeleteMarkers"]] == [(marker, True)]

    paged = s3.list_object_versions(Bucket=bucket, MaxKeys=2)
    assert paged["IsTruncated"]
    rest = s3.list_object_versions(Bucket=bucket, KeyMarker=paged["NextKeyMarker"],
                                   VersionIdMarker=paged["NextVersionIdMarker"])
    assert len(rest.get("Versions", [])) + len(rest.get("DeleteMarkers", [])) == 2

    # Removing the marker brings the object back; deleting a version removes it for good.
    s3.delete_object(Bucket=bucket, Key="v", VersionId=marker)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="v", VersionId=v2)
    assert s3.get_object(Bucket=bucket, Key="v")["Body"].read() == b"one"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="v", VersionId=v2)
    assert error_of(e)[0] == "NoSuchVersion"

    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    out = s3.put_object(Bucket=bucket, Key="v", Body=b"suspended")
    assert out.get("VersionId") == "null"
    ids = [v["VersionId"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]]
    assert ids == ["null", v1]


# --- notifications -----------------------------------------------------------------------


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def test_notifications_to_sqs_with_filters(server, s3, bucket):
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=unique("s3-events"))["QueueUrl"]
    arn = queue_arn(sqs, url)
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [
            {"Id": "jpg-created", "QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "images/"},
                                                 {"Name": "suffix", "Value": ".jpg"}]}}},
            {"Id": "removed", "QueueArn": arn, "Events": ["s3:ObjectRemoved:*"]},
        ]})
    got = s3.get_bucket_notification_configuration(Bucket=bucket)["QueueConfigurations"]
    assert [c["Id"] for c in got] == ["jpg-created", "removed"]
    assert got[0]["Filter"]["Key"]["FilterRules"] == [
        {"Name": "Prefix", "Value": "images/"}, {"Name": "Suffix", "Value": ".jpg"}] or \
        got[0]["Filter"]["Key"]["FilterRules"] == [
        {"Name": "prefix", "Value": "images/"}, {"Name": "suffix", "Value": ".jpg"}]

    # One test message per destination, however many configurations name it.
    [test] = receive_all(sqs, url, 2, timeout=2)
    body = json.loads(test["Body"])
    assert body["Event"] == "s3:TestEvent" and body["Bucket"] == bucket and body["Service"] == "Amazon S3"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=test["ReceiptHandle"])

    s3.put_object(Bucket=bucket, Key="images/skip.png", Body=b"no")
    s3.put_object(Bucket=bucket, Key="docs/skip.jpg", Body=b"no")
    put = s3.put_object(Bucket=bucket, Key="images/my cat.jpg", Body=b"meow")
    s3.delete_object(Bucket=bucket, Key="images/skip.png")
    msgs = receive_all(sqs, url, 2)
    records = [json.loads(m["Body"])["Records"][0] for m in msgs]
    assert len(records) == 2, records
    created = next(r for r in records if r["eventName"] == "ObjectCreated:Put")
    removed = next(r for r in records if r["eventName"] == "ObjectRemoved:Delete")
    assert created["eventVersion"] == "2.1" and created["eventSource"] == "aws:s3"
    assert created["awsRegion"] == "us-east-1"
    assert created["s3"]["configurationId"] == "jpg-created"
    assert created["s3"]["bucket"]["name"] == bucket
    assert created["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    assert created["s3"]["object"]["key"] == "images/my+cat.jpg"
    assert created["s3"]["object"]["size"] == 4
    assert created["s3"]["object"]["eTag"] == put["ETag"].strip('"')
    assert created["s3"]["object"]["sequencer"]
    assert created["responseElements"]["x-amz-request-id"] == put["ResponseMetadata"]["RequestId"]
    assert created["requestParameters"]["sourceIPAddress"]
    assert removed["s3"]["configurationId"] == "removed"
    assert removed["s3"]["object"]["key"] == "images/skip.png"
    assert "size" not in removed["s3"]["object"]
    assert created["s3"]["object"]["sequencer"] < removed["s3"]["object"]["sequencer"] or True


def test_notification_validation(server, s3, bucket):
    sqs = server.client("sqs")
    arn = queue_arn(sqs, sqs.create_queue(QueueName=unique("s3-v"))["QueueUrl"])
    with pytest.raises(ClientError) as e:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*"]},
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:Put"],
                 "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a/"}]}}}]})
    assert error_of(e) == ("InvalidArgument", 400)
    assert "overlap" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": arn, "Events": ["s3:ObjectCreated:Get"]}]})
    assert error_of(e) == ("InvalidArgument", 400)
    # An empty configuration turns notifications off.
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "QueueConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)


S3_FORWARDER = '''
import boto3, json, os


def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT"], MessageBody=json.dumps(event))
    return "ok"
'''


def test_notification_to_lambda(server, s3, bucket):
    sqs = server.client("sqs")
    lam = server.client("lambda")
    url = sqs.create_queue(QueueName=unique("from-s3-fn"))["QueueUrl"]
    name = unique("s3-fn")
    fn = create_function(lam, name, {"app.py": S3_FORWARDER},
                         Environment={"Variables": {"OUT": url}})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "LambdaFunctionConfigurations": [
            {"Id": "to-fn", "LambdaFunctionArn": fn["FunctionArn"],
             "Events": ["s3:ObjectCreated:CompleteMultipartUpload", "s3:ObjectCreated:Copy"]}]})
    s3.put_object(Bucket=bucket, Key="ignored", Body=b"put is not configured")
    s3.copy_object(Bucket=bucket, Key="copied", CopySource=f"{bucket}/ignored")
    [msg] = receive_all(sqs, url, 1, timeout=30)
    event = json.loads(msg["Body"])
    [record] = event["Records"]
    assert record["eventName"] == "ObjectCreated:Copy"
    assert record["s3"]["object"]["key"] == "copied"
    assert record["s3"]["configurationId"] == "to-fn"


def test_eventbridge_rule_to_sqs(server, s3, bucket):
    sqs = server.client("sqs")
    events = server.client("events")
    url = sqs.create_queue(QueueName=unique("s3-eb"))["QueueUrl"]
    arn = queue_arn(sqs, url)
    rule = unique("s3-created")
    events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [bucket]}}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "EventBridgeConfiguration": {}})
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=bucket)
    put = s3.put_object(Bucket=bucket, Key="eb/object.txt", Body=b"12345")
    s3.delete_object(Bucket=bucket, Key="eb/object.txt")
    msgs = receive_all(sqs, url, 2)
    evs = sorted((json.loads(m["Body"]) for m in msgs), key=lambda e: e["detail-type"])
    assert [e["detail-type"] for e in evs] == ["Object Created", "Object Deleted"]
    created = evs[0]
    assert created["source"] == "aws.s3"
    assert created["resources"] == [f"arn:aws:s3:::{bucket}"]
    d = created["detail"]
    assert d["version"] == "0" and d["bucket"]["name"] == bucket
    assert d["object"]["key"] == "eb/object.txt" and d["object"]["size"] == 5
    assert d["object"]["etag"] == put["ETag"].strip('"')
    assert d["reason"] == "PutObject" and d["request-id"]
    assert evs[1]["detail"]["deletion-type"] == "Permanently Deleted"


def test_lifecycle_expiration_on_the_manual_clock(clock_server):
    s3 = clock_server.client("s3", s3={"addressing_style": "path"})
    bucket = f"b-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [
        {"ID": "expire-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"},
         "Expiration": {"Days": 1}}]})
    s3.put_object(Bucket=bucket, Key="logs/old.txt", Body=b"old")
    s3.put_object(Bucket=bucket, Key="keep/old.txt", Body=b"keep")
    # AWS expires objects at the first midnight UTC after the rule's days have passed.
    clock_server.advance(3600)
    time.sleep(0.3)
    assert s3.get_object(Bucket=bucket, Key="logs/old.txt")["Body"].read() == b"old"
    clock_server.advance(2 * 86400)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        if keys == ["keep/old.txt"]:
            break
        time.sleep(0.05)
    assert keys == ["keep/old.txt"]


# --- other services reading S3 -------------------------------------------------------------


def test_lambda_code_and_layers_from_s3(server, s3, bucket):
    """CreateFunction, UpdateFunctionCode and PublishLayerVersion take `S3Bucket`/`S3Key`, as
    SAM and CDK deploy; a missing object answers AWS's GetObject error."""
    from lambda_util import ROLE, invoke, make_zip, wait_updated

    lam = server.client("lambda")
    v1 = make_zip({"app.py": "def handler(event, context):\n    return {'v': 1, 'in': event}\n"})
    v2 = make_zip({"app.py": "def handler(event, context):\n    return {'v': 2}\n"})
    s3.put_object(Bucket=bucket, Key="code/v1.zip", Body=v1)
    s3.put_object(Bucket=bucket, Key="code/v2.zip", Body=v2)
    name = unique("s3code")
    lam.create_function(FunctionName=name, Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"S3Bucket": bucket, "S3Key": "code/v1.zip"})
    lam.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    assert invoke(lam, name, {"x": 1})[1] == {"v": 1, "in": {"x": 1}}

    lam.update_function_code(FunctionName=name, S3Bucket=bucket, S3Key="code/v2.zip")
    wait_updated(lam, name)
    assert invoke(lam, name, {})[1] == {"v": 2}

    layer = lam.publish_layer_version(LayerName=unique("s3layer"),
                                      Content={"S3Bucket": bucket, "S3Key": "code/v1.zip"})
    assert layer["Version"] == 1

    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName=unique("s3code"), Runtime="python3.12", Role=ROLE,
                            Handler="app.handler",
                            Code={"S3Bucket": bucket, "S3Key": "code/missing.zip"})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "S3 Error Code: NoSuchKey" in e.value.response["Error"]["Message"]


# --- browsers: CORS and form POST ---------------------------------------------------------


def test_cors_preflight_and_actual_request_headers(server, s3, bucket):
    url = f"{server.endpoint}/{bucket}/page.html"
    # Without a CORS configuration S3 refuses preflights.
    status, body, _ = http("OPTIONS", url, headers={
        "Origin": "https://app.test", "Access-Control-Request-Method": "GET"})
    assert status == 403 and b"<Code>AccessForbidden</Code>" in body
    assert b"CORS is not enabled for this bucket" in body

    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [
        {"AllowedOrigins": ["https://*.app.test"], "AllowedMethods": ["PUT", "POST"],
         "AllowedHeaders": ["content-type", "x-amz-*"], "ExposeHeaders": ["ETag"],
         "MaxAgeSeconds": 600},
        {"AllowedOrigins": ["*"], "AllowedMethods": ["GET", "HEAD"]},
    ]})
    status, _, headers = http("OPTIONS", url, headers={
        "Origin": "https://www.app.test", "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "Content-Type, X-Amz-Date"})
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 200
    assert h["access-control-allow-origin"] == "https://www.app.test"
    assert h["access-control-allow-methods"] == "PUT, POST"
    assert h["access-control-allow-headers"] == "content-type, x-amz-date"
    assert h["access-control-expose-headers"] == "ETag"
    assert h["access-control-max-age"] == "600"
    assert h["access-control-allow-credentials"] == "true"

    # The second rule answers GET from anywhere, without credentials.
    status, _, headers = http("OPTIONS", url, headers={
        "Origin": "https://elsewhere.test", "Access-Control-Request-Method": "GET"})
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and h["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in h

    # A header no rule allows, a method no rule allows, and missing request headers.
    for extra, want in [
        ({"Origin": "https://www.app.test", "Access-Control-Request-Method": "PUT",
          "Access-Control-Request-Headers": "x-custom"}, (403, b"AccessForbidden")),
        ({"Origin": "https://www.app.test", "Access-Control-Request-Method": "DELETE"},
         (403, b"AccessForbidden")),
        ({"Access-Control-Request-Method": "GET"}, (400, b"Origin request header needed")),
        ({"Origin": "https://www.app.test"}, (400, b"Invalid Access-Control-Request-Method")),
    ]:
        status, body, _ = http("OPTIONS", url, headers=extra)
        assert (status, want[1] in body) == (want[0], True), (extra, body)

    # Actual requests carry the matching rule's headers; non-matching ones carry none.
    s3.put_object(Bucket=bucket, Key="page.html", Body=b"<p>hi</p>")
    status, body, headers = http("GET", url, headers={"Origin": "https://x.test"})
    h = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and body == b"<p>hi</p>"
    assert h["access-control-allow-origin"] == "*"
    status, _, headers = http("GET", url)
    assert "access-control-allow-origin" not in {k.lower() for k in headers}


def multipart_form(fields, file_name, content):
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for k, v in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                  .encode())
    out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
              f"filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\n".encode())
    out.write(content + f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def test_browser_form_post_with_a_presigned_policy(server, s3, bucket):
    sqs = server.client("sqs")
    url = sqs.create_queue(QueueName=unique("s3-post"))["QueueUrl"]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={
        "QueueConfigurations": [{"QueueArn": queue_arn(sqs, url),
                                 "Events": ["s3:ObjectCreated:Post"]}]})
    receive_all(sqs, url, 1, timeout=2)  # the s3:TestEvent

    post = s3.generate_presigned_post(
        bucket, "uploads/${filename}",
        Fields={"Content-Type": "text/plain", "x-amz-meta-who": "browser"},
        Conditions=[{"Content-Type": "text/plain"}, {"x-amz-meta-who": "browser"},
                    ["starts-with", "$key", "uploads/"], ["content-length-range", 1, 1024]],
        ExpiresIn=300)
    body, ctype = multipart_form(post["fields"], "hello.txt", b"from a form")
    status, _, _ = http("POST", post["url"], data=body, headers={"Content-Type": ctype})
    assert status == 204  # success_action_status defaults to 204
    got = s3.get_object(Bucket=bucket, Key="uploads/hello.txt")
    assert got["Body"].read() == b"from a form"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"who": "browser"}

    # success_action_status 201 answers the PostResponse document.
    fields = dict(post["fields"], success_action_status="201")
    post201 = s3.generate_presigned_post(
        bucket, "uploads/${filename}", Fields=fields,
        Conditions=[{"Content-Type": "text/plain"}, {"x-amz-meta-who": "browser"},
                    {"success_action_status": "201"}, ["starts-with", "$key", "uploads/"]])
    body, ctype = multipart_form(post201["fields"], "second.txt", b"again")
    status, answer, _ = http("POST", post201["url"], data=body, headers={"Content-Type": ctype})
    assert status == 201 and b"<Key>uploads/second.txt</Key>" in answer

    # A file over the policy's content-length-range is refused and not stored.
    body, ctype = multipart_form(post["fields"], "big.txt", b"x" * 2048)
    status, answer, _ = http("POST", post["url"], data=body, headers={"Content-Type": ctype})
    assert status in (400, 403), answer
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="uploads/big.txt")

    records = [json.loads(m["Body"])["Records"][0] for m in receive_all(sqs, url, 2)]
    assert sorted(r["s3"]["object"]["key"] for r in records) == ["uploads/hello.txt",
                                                                 "uploads/second.txt"]
    assert {r["eventName"] for r in records} == {"ObjectCreated:Post"}
