"""Helpers for the Lambda tests: deployment packages built in memory, functions created and
waited for, invocations decoded.

A package is a dict of archive name -> content (str or bytes), or -> (content, mode) to set
the file's Unix mode: a ``provided.*`` runtime's ``bootstrap`` must be executable, and AWS (like
tsumiki) keeps the zip's execute bits.
"""

import base64
import hashlib
import io
import json
import uuid
import zipfile

from botocore.exceptions import ClientError

ROLE = "arn:aws:iam::123456789012:role/lambda-role"


def make_zip(files: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            mode = 0o644
            if isinstance(content, tuple):
                content, mode = content
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100000 | mode) << 16  # a regular file with this mode
            zf.writestr(info, content)
    return buf.getvalue()


def zip_dir(root, extra: dict) -> bytes:
    """A package of every file under ``root`` (keeping execute bits) plus ``extra``."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            mode = path.stat().st_mode & 0o777
            files[str(path.relative_to(root))] = (path.read_bytes(), mode)
    files.update(extra)
    return make_zip(files)


def code_sha256(zip_bytes: bytes) -> str:
    """``CodeSha256`` as AWS reports it: the base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(zip_bytes).digest()).decode()


def unique(prefix="fn") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def create_function(lam, name, files, runtime="python3.12", handler="app.handler", wait=True,
                    **kwargs):
    """Creates a function from ``files`` (a dict for :func:`make_zip`, or zip bytes) and waits,
    as every AWS client must, until it is Active."""
    zip_bytes = files if isinstance(files, bytes) else make_zip(files)
    args = dict(FunctionName=name, Runtime=runtime, Role=ROLE, Code={"ZipFile": zip_bytes},
                Timeout=kwargs.pop("Timeout", 30))
    if handler is not None:
        args["Handler"] = handler
    args.update(kwargs)
    out = lam.create_function(**args)
    if wait:
        lam.get_waiter("function_active_v2").wait(
            FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    return out


def wait_updated(lam, name):
    lam.get_waiter("function_updated_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})


def invoke(lam, name, event=None, **kwargs):
    """Invokes synchronously; returns (response, decoded payload)."""
    if event is not None:
        kwargs["Payload"] = json.dumps(event).encode()
    resp = lam.invoke(FunctionName=name, **kwargs)
    body = resp["Payload"].read() if "Payload" in resp else b""
    return resp, (json.loads(body) if body else None)


def log_tail(resp) -> str:
    return base64.b64decode(resp["LogResult"]).decode()


def error_of(excinfo):
    """(code, HTTP status, whole response) of a ClientError caught by pytest.raises."""
    err = excinfo.value
    assert isinstance(err, ClientError)
    return (err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"],
            err.response)
