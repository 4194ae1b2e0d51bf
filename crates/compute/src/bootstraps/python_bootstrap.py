"""tsumiki's built-in runtime for python3.x functions.

It speaks the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) the way AWS's own runtime does:
imports the handler named by _HANDLER once, then loops over invocation/next, calling the
handler with the event and a context object, and posts the result or AWS's error shape.
Standard library only, so a cold start costs little more than the interpreter's own start.
The interpreter runs with `-S`; `logging` and `traceback` are imported only when used (each
costs a cold start milliseconds on a slow machine, and most handlers need neither).
"""
import importlib
import json
import os
import socket
import sys
import time

_HOST, _PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].rsplit(":", 1)
_PREFIX = "/2018-06-01/runtime"
_request_id = ""


class _Headers(dict):
    """Response headers, looked up without regard to case."""

    def get(self, name, default=None):
        return dict.get(self, name.lower(), default)


class _Response:
    def __init__(self, status, headers):
        self.status = status
        self.headers = headers


class _Connection:
    """A minimal HTTP/1.1 keep-alive client for the Runtime API. http.client spends about
    100 us of Python per exchange, and every invocation makes two: this one writes each request
    in one send and reads the answer's head line by line."""

    def __init__(self):
        self.sock = None
        self.file = None

    def close(self):
        if self.sock is not None:
            try:
                self.file.close()
                self.sock.close()
            except OSError:
                pass
        self.sock = self.file = None

    def exchange(self, method, path, body, headers):
        if self.sock is None:
            self.sock = socket.create_connection((_HOST, int(_PORT)))
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.file = self.sock.makefile("rb")
        if isinstance(body, str):
            body = body.encode("utf-8")
        head = [f"{method} {path} HTTP/1.1", f"Host: {_HOST}:{_PORT}"]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
        for name, value in headers.items():
            head.append(f"{name}: {value}")
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b""))
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("the Runtime API closed the connection")
        status = int(status_line.split()[1])
        found = _Headers()
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("the Runtime API closed the connection")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            found[name.strip().lower()] = value.strip()
        if "chunked" in found.get("transfer-encoding", "").lower():
            data = bytearray()
            while True:
                size = int(self.file.readline().split(b";")[0], 16)
                if size == 0:
                    while self.file.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                data += self.file.read(size)
                self.file.readline()
            data = bytes(data)
        else:
            length = int(found.get("content-length", "0"))
            data = self.file.read(length)
            if len(data) < length:
                raise ConnectionError("the Runtime API closed the connection")
        if found.get("connection", "").lower() == "close":
            self.close()
        return _Response(status, found), data


_conn = _Connection()


def _call(method, path, body=None, headers=None):
    for attempt in (0, 1):
        try:
            return _conn.exchange(method, _PREFIX + path, body, headers or {})
        except (OSError, ValueError, IndexError):
            _conn.close()
            if attempt:
                raise


def _log_line(text):
    # Newlines become carriage returns so one message stays one log event, as on AWS.
    sys.stdout.write(text.replace("\n", "\r") + "\n")
    sys.stdout.flush()


def _install_log_handler(logging):
    """Puts AWS's log line format on the root logger, as AWS's runtime does at start."""

    class _LambdaLogHandler(logging.Handler):
        def emit(self, record):
            try:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                msecs = int(record.msecs)
                _log_line(
                    f"[{record.levelname}]\t{stamp}.{msecs:03d}Z\t{_request_id}\t"
                    f"{self.format(record)}"
                )
            except Exception:  # noqa: BLE001 - logging must never break a handler
                self.handleError(record)

    logging.getLogger().addHandler(_LambdaLogHandler())


class _LoggingHook:
    """A meta path finder that installs the log handler right after the first `import
    logging`, whoever makes it (the handler, boto3, ...), before the importer sees the module."""

    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            _install_log_handler(module)

        loader.exec_module = exec_module
        return spec


def _site_dirs():
    # The machine's site directories (see runtimes.rs), after the function's own paths and the
    # standard library, where `site` would have put them.
    for entry in os.environ.pop("TSUMIKI_PYTHON_SITE_DIRS", "").split(":"):
        if entry and entry not in sys.path:
            sys.path.append(entry)


def _error(exc, error_type=None, stack=True):
    import traceback

    # The runtime's own frames are not the function's business (AWS leaves them out too).
    frames = [
        f
        for f in (traceback.extract_tb(exc.__traceback__) if stack else [])
        if f.filename != __file__
    ]
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": _request_id,
        "stackTrace": traceback.format_list(frames),
    }


def _report_error(payload):
    trace = "".join(payload.get("stackTrace") or [])
    text = f"[ERROR] {payload['errorType']}: {payload['errorMessage']}"
    if trace:
        text += "\nTraceback (most recent call last):\n" + trace
    _log_line(text)


def _init_error(payload):
    _report_error(payload)
    _call(
        "POST",
        "/init/error",
        json.dumps(payload),
        {"Lambda-Runtime-Function-Error-Type": payload["errorType"]},
    )
    sys.exit(1)


def _load_handler():
    handler = os.environ.get("_HANDLER", "")
    try:
        module_path, name = handler.rsplit(".", 1)
    except ValueError as e:
        _init_error(
            {
                "errorMessage": f"Bad handler '{handler}': {e}",
                "errorType": "Runtime.MalformedHandlerName",
                "requestId": "",
                "stackTrace": [],
            }
        )
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        _init_error(
            {
                "errorMessage": f"Unable to import module '{module_name}': {e}",
                "errorType": "Runtime.ImportModuleError",
                "requestId": "",
                "stackTrace": [],
            }
        )
    except SyntaxError as e:
        _init_error(
            {
                "errorMessage": f"Syntax error in module '{module_name}': {e}",
                "errorType": "Runtime.UserCodeSyntaxError",
                "requestId": "",
                "stackTrace": [],
            }
        )
    except Exception as e:  # noqa: BLE001 - any init failure is reported as AWS does
        _init_error(_error(e))
    fn = getattr(module, name, None)
    if fn is None:
        _init_error(
            {
                "errorMessage": f"Handler '{name}' missing on module '{module_name}'",
                "errorType": "Runtime.HandlerNotFound",
                "requestId": "",
                "stackTrace": [],
            }
        )
    return fn


class CognitoIdentity:
    def __init__(self, data):
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class Client:
    def __init__(self, data):
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    def __init__(self, data):
        self.client = Client(data["client"]) if data.get("client") else None
        self.custom = data.get("custom")
        self.env = data.get("env")


class LambdaContext:
    def __init__(self, request_id, deadline_ms, arn, client_context, identity):
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity(identity or {})
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)


def _json_header(headers, name):
    value = headers.get(name)
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def main():
    global _request_id
    if "logging" in sys.modules:
        _install_log_handler(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingHook())
    handler = _load_handler()
    while True:
        resp, body = _call("GET", "/invocation/next")
        headers = resp.headers
        _request_id = headers.get("Lambda-Runtime-Aws-Request-Id", "")
        os.environ["_X_AMZN_TRACE_ID"] = headers.get("Lambda-Runtime-Trace-Id", "")
        context = LambdaContext(
            _request_id,
            int(headers.get("Lambda-Runtime-Deadline-Ms", "0")),
            headers.get("Lambda-Runtime-Invoked-Function-Arn"),
            _json_header(headers, "Lambda-Runtime-Client-Context"),
            _json_header(headers, "Lambda-Runtime-Cognito-Identity"),
        )
        try:
            event = json.loads(body) if body else {}
            result = handler(event, context)
        except Exception as e:  # noqa: BLE001 - the function's failure is its result
            payload = _error(e)
            _report_error(payload)
            _call(
                "POST",
                f"/invocation/{_request_id}/error",
                json.dumps(payload),
                {"Lambda-Runtime-Function-Error-Type": payload["errorType"]},
            )
            continue
        try:
            data = json.dumps(result)
        except (TypeError, ValueError) as e:
            payload = _error(e, "Runtime.MarshalError", stack=False)
            payload["errorMessage"] = f"Unable to marshal response: {e}"
            _report_error(payload)
            _call(
                "POST",
                f"/invocation/{_request_id}/error",
                json.dumps(payload),
                {"Lambda-Runtime-Function-Error-Type": payload["errorType"]},
            )
            continue
        _call("POST", f"/invocation/{_request_id}/response", data)


if __name__ == "__main__":
    # The bootstrap's own directory must not shadow the function's modules.
    sys.path[:] = [p for p in sys.path if p != os.path.dirname(os.path.abspath(__file__))]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    _site_dirs()
    main()
