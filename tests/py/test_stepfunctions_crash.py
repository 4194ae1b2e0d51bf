"""Crash test: Standard executions in a Wait and in a running Map survive `kill -9`, resume on
restart from the same data directory, and each finishes exactly once with the right output."""

import json
import signal
import time

from conftest import ACCOUNT, Server

ROLE = f"arn:aws:iam::{ACCOUNT}:role/sfn-role"


def durable_server(tmp_path):
    # conftest starts servers --in-memory; a later --data-dir does not undo that, so build
    # the command line here.
    import subprocess
    import threading
    from conftest import LISTENING, tsumiki_bin
    log_path = tmp_path / f"tsumiki-{time.monotonic_ns()}.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([str(tsumiki_bin()), "serve", "--listen", "127.0.0.1:0", "--clock", "manual",
                             "--data-dir", str(tmp_path / "data"), "--default-account", ACCOUNT],
                            stdout=subprocess.PIPE, stderr=log)
    first = proc.stdout.readline().decode(errors="replace")
    match = LISTENING.search(first)
    assert match, first

    def drain():
        for line in proc.stdout:
            log.write(line)
        log.close()

    threading.Thread(target=drain, daemon=True).start()
    s = Server(match.group(1), proc, log_path)
    s.wait_healthy()
    return s


def wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def types(sfn, arn):
    return [e["type"] for e in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]]


def test_wait_and_map_survive_kill_9(tmp_path):
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        hour = sfn.create_state_machine(name="hour", roleArn=ROLE, definition=json.dumps({
            "StartAt": "W", "States": {
                "W": {"Type": "Wait", "Seconds": 3600, "Next": "Done"},
                "Done": {"Type": "Pass", "Parameters": {"waited.$": "$.id"}, "End": True}}}))["stateMachineArn"]
        mapm = sfn.create_state_machine(name="map", roleArn=ROLE, definition=json.dumps({
            "StartAt": "M", "States": {"M": {"Type": "Map", "MaxConcurrency": 2, "ItemsPath": "$.items",
                                             "ItemProcessor": {"StartAt": "W", "States": {
                                                 "W": {"Type": "Wait", "SecondsPath": "$", "Next": "Sq"},
                                                 "Sq": {"Type": "Pass", "Parameters": {"v.$": "States.MathAdd($, 1000)"}, "End": True}}},
                                             "End": True}}}))["stateMachineArn"]
        waits = [sfn.start_execution(stateMachineArn=hour, input=json.dumps({"id": i}))["executionArn"] for i in range(3)]
        items = [10, 20, 30, 40, 50, 60]
        maps = [sfn.start_execution(stateMachineArn=mapm, input=json.dumps({"items": items}))["executionArn"] for _ in range(2)]
        s.advance(10)
        wait(lambda: all(types(sfn, m).count("MapIterationSucceeded") >= 1 for m in maps))
        for arn in waits + maps:
            assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        for arn in waits + maps:
            assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING", arn

        def all_done():
            s.advance(30)
            time.sleep(0.05)
            return all(sfn.describe_execution(executionArn=a)["status"] != "RUNNING" for a in waits + maps)

        # Each Map iteration arms its Wait when the one before it ends: move time in steps.
        wait(all_done, timeout=60)
        for i, arn in enumerate(waits):
            d = sfn.describe_execution(executionArn=arn)
            assert d["status"] == "SUCCEEDED"
            assert json.loads(d["output"]) == {"waited": i}
            h = types(sfn, arn)
            assert h.count("ExecutionSucceeded") == 1 and h.count("WaitStateExited") == 1
        for arn in maps:
            d = sfn.describe_execution(executionArn=arn)
            assert d["status"] == "SUCCEEDED", d
            assert json.loads(d["output"]) == [{"v": n + 1000} for n in items]
            h = types(sfn, arn)
            assert (h.count("MapIterationStarted"), h.count("MapIterationSucceeded"), h.count("ExecutionSucceeded")) == (6, 6, 1), h
            ids = [e["id"] for e in sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]]
            assert ids == list(range(1, len(ids) + 1))
    finally:
        s.stop()


def test_variables_survive_kill_9(tmp_path):
    """Variables assigned before a crash (at the top level and inside a Map iteration) are
    still there when the restarted execution reads them."""
    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        m = sfn.create_state_machine(name="vars", roleArn=ROLE, definition=json.dumps({
            "QueryLanguage": "JSONata", "StartAt": "Init", "States": {
                "Init": {"Type": "Pass", "Assign": {"who": "{% $states.input.who %}"}, "Next": "P"},
                "P": {"Type": "Pass", "Assign": {"stamp": "{% $who & '-1' %}"}, "Next": "M"},
                "M": {"Type": "Map", "Items": [1, 2], "ItemProcessor": {"StartAt": "A", "States": {
                    "A": {"Type": "Pass", "Assign": {"mine": "{% $states.input * 10 %}"}, "Next": "W"},
                    "W": {"Type": "Wait", "Seconds": 3600, "Next": "B"},
                    "B": {"Type": "Pass", "Output": "{% $stamp & ':' & $string($mine) %}", "End": True}}},
                      "Output": {"items": "{% $states.result %}", "who": "{% $who %}"}, "End": True}}}))["stateMachineArn"]
        arn = sfn.start_execution(stateMachineArn=m, input=json.dumps({"who": "ada"}))["executionArn"]
        wait(lambda: types(sfn, arn).count("WaitStateEntered") == 2)
    finally:
        s.proc.send_signal(signal.SIGKILL)
        s.proc.wait()

    s = durable_server(tmp_path)
    try:
        sfn = s.client("stepfunctions", inject_host_prefix=False)
        assert sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        s.advance(3600)
        wait(lambda: sfn.describe_execution(executionArn=arn)["status"] != "RUNNING")
        d = sfn.describe_execution(executionArn=arn)
        assert d["status"] == "SUCCEEDED", d
        assert json.loads(d["output"]) == {"items": ["ada-1:10", "ada-1:20"], "who": "ada"}
        assert types(sfn, arn).count("ExecutionSucceeded") == 1
    finally:
        s.stop()
