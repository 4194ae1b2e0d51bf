"""S3 durability: ``kill -9`` while large PUTs and multipart uploads are in flight, restart on
the same data directory, then every acknowledged upload is there and whole, and nothing
visible is partial."""

import os
import re
import subprocess
import threading
import time
import uuid

import boto3
import pytest
from botocore.config import Config

from conftest import ACCOUNT, tsumiki_bin

LISTENING = re.compile(r"listening on (http://\S+)")
BIG = 3 * 1024 * 1024
PART = 5 * 1024 * 1024


def start(data_dir, log):
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0",
                             "--data-dir", str(data_dir), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=log)
    m = LISTENING.search(proc.stdout.readline().decode())
    assert m, "tsumiki did not start"
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, m.group(1)


def client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"max_attempts": 1}, s3={"addressing_style": "path"},
                                      read_timeout=60, connect_timeout=5))


def body_for(key, length):
    seed = sum(key.encode()) % 251
    block = bytes((seed + i) % 256 for i in range(4096))
    return (block * (length // 4096 + 1))[:length]


def test_kill9_during_uploads_keeps_acknowledged_and_never_shows_partial(tmp_path):
    log = open(tmp_path / "server.log", "wb")
    data = tmp_path / "data"
    proc, endpoint = start(data, log)
    s3 = client(endpoint)
    s3.create_bucket(Bucket="crash")
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def putter(n):
        c = client(endpoint)
        for i in range(10_000):
            if stop.is_set():
                return
            key = f"put/{n}/{i}"
            length = BIG + (i * 4099) % 100_000
            try:
                c.put_object(Bucket="crash", Key=key, Body=body_for(key, length))
            except Exception:
                return
            with lock:
                acked[key] = length

    def multiparter(n):
        c = client(endpoint)
        for i in range(10_000):
            if stop.is_set():
                return
            key = f"mpu/{n}/{i}"
            whole = body_for(key, 2 * PART + 777)
            try:
                uid = c.create_multipart_upload(Bucket="crash", Key=key)["UploadId"]
                parts = []
                for j in range(0, len(whole), PART):
                    num = j // PART + 1
                    etag = c.upload_part(Bucket="crash", Key=key, UploadId=uid, PartNumber=num,
                                         Body=whole[j:j + PART])["ETag"]
                    parts.append({"PartNumber": num, "ETag": etag})
                c.complete_multipart_upload(Bucket="crash", Key=key, UploadId=uid,
                                            MultipartUpload={"Parts": parts})
            except Exception:
                return
            with lock:
                acked[key] = len(whole)

    threads = [threading.Thread(target=putter, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=multiparter, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 10 and any(k.startswith("mpu/") for k in acked):
                break
        time.sleep(0.02)
    proc.kill()  # SIGKILL, mid-upload
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 10

    proc, endpoint = start(data, log)
    try:
        s3 = client(endpoint)
        visible = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="crash"):
            for o in page.get("Contents", []):
                visible[o["Key"]] = o["Size"]
        for key, length in acked.items():
            assert key in visible, f"acknowledged {key} is gone after kill -9"
            assert s3.get_object(Bucket="crash", Key=key)["Body"].read() == body_for(key, length), key
        # Anything visible (acknowledged or not: the kill may fall between commit and answer)
        # is whole.
        for key, size in visible.items():
            got = s3.get_object(Bucket="crash", Key=key)["Body"].read()
            assert len(got) == size and got == body_for(key, size), f"{key} is partial"
        assert os.listdir(data / "s3" / "tmp") == [], "temporary upload files survived"
        # Every file under data/ belongs to an object or an unfinished upload's part.
        uploads = s3.list_multipart_uploads(Bucket="crash").get("Uploads", [])
        parts = sum(len(s3.list_parts(Bucket="crash", Key=u["Key"], UploadId=u["UploadId"])
                        .get("Parts", [])) for u in uploads)
        assert len(os.listdir(data / "s3" / "data")) == len(visible) + parts
    finally:
        proc.kill()
        proc.wait()
        log.close()
