"""Fixtures for the boto3 suite: real tsumiki processes on free ports, in memory.

* ``server``: a session-wide server on the real clock (or the one ``TSUMIKI_ENDPOINT``
  names). Tests share it and use unique queue names.
* ``clock_server``: a session-wide server started with ``--clock manual``; tests move
  time with ``clock_server.advance(seconds)`` instead of sleeping. They too use unique
  names, so the clock moving under one test never matters to another.

The binary is ``$TSUMIKI_BIN`` or ``target/debug/tsumiki`` under the repository root;
nothing here builds it. A server's log is printed when a test using it fails.
"""

import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO_ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
LISTENING = re.compile(r"listening on (http://\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def tsumiki_bin() -> Path:
    path = Path(os.environ.get("TSUMIKI_BIN", REPO_ROOT / "target" / "debug" / "tsumiki"))
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


class Server:
    """A tsumiki endpoint: started here (``proc`` set) or given from outside."""

    def __init__(self, endpoint, proc=None, log_path=None):
        self.endpoint = endpoint.rstrip("/")
        self.proc = proc
        self.log_path = log_path

    @classmethod
    def start(cls, tmp_dir: Path, *extra_args: str) -> "Server":
        binary = tsumiki_bin()
        if not binary.exists():
            pytest.exit(f"tsumiki binary not found at {binary}: build it or set TSUMIKI_BIN", returncode=2)
        log_path = tmp_dir / f"tsumiki-{uuid.uuid4().hex[:8]}.log"
        log = open(log_path, "wb")
        args = [str(binary), "serve", "--listen", "127.0.0.1:0", "--in-memory",
                "--default-account", ACCOUNT, *extra_args]
        env = dict(os.environ, NO_COLOR="1")
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, env=env)
        first = proc.stdout.readline().decode(errors="replace")
        match = LISTENING.search(first)
        if not match:
            proc.kill()
            log.close()
            raise RuntimeError(f"tsumiki did not announce its address: {first!r}\n{log_path.read_text()}")

        def drain():  # keep the pipe from filling up; anything printed goes to the log
            for line in proc.stdout:
                log.write(line)
            log.close()

        threading.Thread(target=drain, daemon=True).start()
        server = cls(match.group(1), proc, log_path)
        server.wait_healthy()
        return server

    def wait_healthy(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.admin("GET", "/_tsumiki/health")
                return
            except (OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def admin(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.endpoint + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"{}")

    def health(self):
        return self.admin("GET", "/_tsumiki/health")

    def advance(self, seconds):
        """Moves the manual clock forward by ``seconds`` (business time, no sleeping)."""
        return self.admin("POST", "/_tsumiki/clock/advance", {"seconds": seconds})

    def client(self, service="sqs", access_key="testing", **config):
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=60, **config)
        return boto3.client(service, endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=access_key, aws_secret_access_key="testing",
                            config=cfg)

    def log_tail(self, n=40):
        if not self.log_path or not self.log_path.exists():
            return ""
        text = ANSI.sub("", self.log_path.read_text(errors="replace"))
        return "\n".join(text.splitlines()[-n:])


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    endpoint = os.environ.get("TSUMIKI_ENDPOINT")
    if endpoint:
        s = Server(endpoint)
        s.wait_healthy()
        yield s
        return
    s = Server.start(tmp_path_factory.mktemp("tsumiki"))
    yield s
    s.stop()


@pytest.fixture(scope="session")
def clock_server(tmp_path_factory):
    s = Server.start(tmp_path_factory.mktemp("tsumiki-clock"), "--clock", "manual")
    assert s.health()["clock"] == "manual"
    yield s
    s.stop()


@pytest.fixture(scope="session")
def sqs(server):
    return server.client()


@pytest.fixture(scope="session")
def csqs(clock_server):
    """An SQS client of the manual-clock server."""
    return clock_server.client()


@pytest.fixture
def name():
    """A factory of unique queue names: name(), name("prefix"), name(fifo=True)."""

    def make(prefix="q", fifo=False):
        base = f"{prefix}-{uuid.uuid4().hex[:12]}"
        return base + ".fifo" if fifo else base

    return make


@pytest.fixture
def queue(sqs, name):
    """A fresh standard queue URL on the shared server."""
    return sqs.create_queue(QueueName=name())["QueueUrl"]


@pytest.fixture
def fifo_queue(sqs, name):
    return sqs.create_queue(QueueName=name(fifo=True), Attributes={"FifoQueue": "true"})["QueueUrl"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for fixture in ("server", "clock_server"):
            s = item.funcargs.get(fixture)
            if isinstance(s, Server) and s.proc is not None:
                report.sections.append((f"tsumiki log ({fixture})", s.log_tail()))
