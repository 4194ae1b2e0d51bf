#!/usr/bin/env python3
"""Side-by-side SQS benchmark: tsumiki (durable, release build) against moto's server.

Usage:
    python3 bench/sqs_bench.py [--seconds 5] [--max-messages 20000] [--json out.json]
                               [--no-build] [--skip-moto] [--skip-rust] [--localstack auto|yes|no]

What it does, in one run:
  1. builds target/release/tsumiki and target/release/sqs-load (unless --no-build);
  2. starts tsumiki (`serve --listen 127.0.0.1:0 --data-dir <temp dir>`: data on disk, SQLite
     WAL) and moto's server (`python3 -m moto.server`, else ../shared/peers/start_peers.sh
     moto) on free ports, and LocalStack (host mode, through start_peers.sh, on $LS_PORT or 4566)
     when its venv is already installed or with --localstack yes; bounded by
     --localstack-timeout; otherwise its rows say `n/a: reason`;
  3. runs the same boto3 workload against each server, row by row (one server busy at a time):
       send1   SendMessage, one message per call, 1 client
       send8   SendMessage, 8 threads, each with its own boto3 session and client
       batch   SendMessageBatch, 10 messages per call, 1 client
       drain   ReceiveMessage(10, wait 0) + DeleteMessageBatch of the batch row's queue
     Each row is bounded by --seconds and by --max-messages. For each row: messages/s, the
     SERVER's CPU time (utime+stime from /proc/PID/stat, process tree, over the row's window
     only) per API call and per message, the client's own CPU share, and tsumiki vs moto ratios;
  4. drives tsumiki alone with the Rust client `sqs-load` (AWS SDK for Rust): send with 1 and
     8 clients, batch with 8 and 32 clients (--rust-batch-clients; a queue each), then drain
     the first batch row's queue with --rust-drain-clients clients; msgs/s, server CPU us per message and the client's own CPU
     (sqs-load reads /proc/PID/stat and /proc/self/stat around its window).

Client and server share the machine's cores: boto3 costs far more CPU per call than tsumiki,
so tsumiki's boto3 rows are client-bound; the server-CPU columns are what compares servers.
/proc's CPU counters tick at 10 ms; rows of a few seconds keep that error small.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import boto3
    from botocore.config import Config
except ImportError:  # pragma: no cover
    sys.stderr.write("sqs_bench.py needs boto3 (pip install boto3)\n")
    sys.exit(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get(
    "PEERS_DIR_SCRIPTS",
    os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "shared", "peers"),
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = "x" * 64


# ----------------------------------------------------------------------------------------------
# process helpers


def proc_tree(pid):
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        if not os.path.exists(f"/proc/{p}"):
            continue
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        todo.extend(int(x) for x in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def proc_cpu_seconds(pid):
    """utime+stime of pid and its descendants, in seconds (None if unknown)."""
    if not pid:
        return None
    total = 0
    try:
        for p in proc_tree(pid):
            with open(f"/proc/{p}/stat") as f:
                data = f.read()
            fields = data[data.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, ValueError):
        return None
    return total / CLK_TCK


def rss_mib(pid):
    total = 0
    for p in proc_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024.0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rustc_running():
    try:
        out = subprocess.run(["pgrep", "-x", "rustc"], capture_output=True, text=True, timeout=5)
        return bool(out.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return False


def wait_for_idle_build(limit_s):
    """Waits (up to limit_s) while a rustc runs on this machine; returns True if one still runs."""
    end = time.time() + limit_s
    while rustc_running():
        if time.time() >= end:
            return True
        time.sleep(2)
    return False


def wait_sqs(endpoint, timeout, pid=None):
    req = urllib.request.Request(
        endpoint + "/",
        data=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "AmazonSQS.ListQueues",
            "Authorization": "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, "
            "SignedHeaders=host;x-amz-date, Signature=00",
        },
        method="POST",
    )
    end = time.time() + timeout
    while time.time() < end:
        if pid and not os.path.exists(f"/proc/{pid}"):
            return False
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:  # noqa: BLE001
            pass
        time.sleep(0.05)
    return False


class Server:
    """A server under test: label, endpoint, pid, and how to stop it (None if not ours)."""

    def __init__(self, label, endpoint=None, pid=None, proc=None, na=None, stop=None, startup_s=None):
        self.label = label
        self.endpoint = endpoint
        self.pid = pid
        self.proc = proc
        self.na = na  # reason the server is not available
        self._stop = stop
        self.startup_s = startup_s

    def stop(self):
        stop, self._stop = self._stop, None  # idempotent
        if stop:
            try:
                stop()
            except Exception as e:  # noqa: BLE001
                print(f"(stopping {self.label}: {e})", file=sys.stderr)


def stop_proc(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_tsumiki(binary, data_dir):
    t0 = time.time()
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        stdout=subprocess.PIPE,
        stderr=open(os.path.join(data_dir, "..", "tsumiki.log"), "w"),
        text=True,
        env={**os.environ, "TSUMIKI_LOG": os.environ.get("TSUMIKI_LOG", "warn")},
    )
    line = proc.stdout.readline().strip()
    prefix = "listening on "
    if prefix not in line:
        stop_proc(proc)
        return Server("tsumiki", na=f"unexpected first line {line!r}")
    endpoint = line.split(prefix, 1)[1].strip()
    if not wait_sqs(endpoint, 30, proc.pid):
        stop_proc(proc)
        return Server("tsumiki", na="no answer to ListQueues within 30 s")
    return Server("tsumiki", endpoint, proc.pid, proc, stop=lambda: stop_proc(proc), startup_s=time.time() - t0)


def start_moto(port):
    """moto's server: `python3 -m moto.server` if moto imports here, else start_peers.sh moto."""
    try:
        import moto  # noqa: F401

        t0 = time.time()
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        endpoint = f"http://127.0.0.1:{port}"
        if not wait_sqs(endpoint, 60, proc.pid):
            stop_proc(proc)
            return Server("moto", na="moto.server did not answer within 60 s")
        label = f"moto {moto.__version__}"
        return Server(label, endpoint, proc.pid, proc, stop=lambda: stop_proc(proc), startup_s=time.time() - t0)
    except ImportError:
        pass
    script = os.path.join(PEERS, "start_peers.sh")
    if not os.path.exists(script):
        return Server("moto", na="moto is not importable and start_peers.sh is missing")
    env = {**os.environ, "MOTO_PORT": str(port)}
    try:
        subprocess.run(["bash", script, "moto"], env=env, check=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as e:
        return Server("moto", na=f"start_peers.sh moto failed: {e}")
    pidfile = os.path.join(os.environ.get("PEERS_DIR", "/tmp/peers"), "moto.pid")
    pid = int(open(pidfile).read().split()[0])
    return Server(
        "moto", f"http://127.0.0.1:{port}", pid,
        stop=lambda: subprocess.run(["bash", script, "stop"], env=env, timeout=60),
    )


def start_localstack(port, timeout):
    script = os.path.join(PEERS, "start_peers.sh")
    if not os.path.exists(script):
        return Server("localstack", na=f"{script} missing")
    env = {**os.environ, "LS_PORT": str(port), "WAIT_S": str(int(timeout))}
    pidfile = os.path.join(os.environ.get("PEERS_DIR", "/tmp/peers"), "localstack.pid")

    def read_pid():
        try:
            return int(open(pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    before = read_pid()
    already = before is not None and os.path.exists(f"/proc/{before}")
    t0 = time.time()
    try:
        r = subprocess.run(["bash", script, "localstack"], env=env, timeout=timeout,
                           capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return Server("localstack", na=f"start_peers.sh localstack did not finish within {timeout:.0f} s")
    if r.returncode != 0:
        tail = (r.stderr or "").strip().splitlines()[-1:] or ["?"]
        return Server("localstack", na=f"start_peers.sh localstack failed: {tail[0][:200]}")
    pid = read_pid()
    if pid is None:
        return Server("localstack", na=f"no pid in {pidfile}")
    if already and pid == before:
        # someone else's LocalStack: measure it, leave it running
        return Server("localstack", f"http://127.0.0.1:{port}", pid)

    def stop():
        # start_peers.sh stop would also stop a moto it started; end only LocalStack's pid.
        os.kill(pid, signal.SIGTERM)
        for _ in range(300):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        try:
            os.remove(pidfile)
        except OSError:
            pass

    return Server("localstack", f"http://127.0.0.1:{port}", pid, stop=stop, startup_s=time.time() - t0)


# ----------------------------------------------------------------------------------------------
# boto3 workload


def sqs_client(endpoint, pool=4):
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                    region_name="us-east-1")
    return session.client(
        "sqs",
        endpoint_url=endpoint,
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=60,
                      max_pool_connections=pool),
    )


def pct(values, p):
    if not values:
        return float("nan")
    vs = sorted(values)
    k = (len(vs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(vs) - 1)
    return vs[lo] + (vs[hi] - vs[lo]) * (k - lo)


class Window:
    """Wall time, this process's CPU and the server's CPU over a block."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.s0 = proc_cpu_seconds(self.pid)
        self.c0 = time.process_time()
        self.w0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.client_cpu = time.process_time() - self.c0
        s1 = proc_cpu_seconds(self.pid)
        self.server_cpu = None if s1 is None or self.s0 is None else s1 - self.s0
        return False


def row_result(name, w, ops, msgs, lat, errors, note=""):
    r = {
        "row": name,
        "ops": ops,
        "messages": msgs,
        "seconds": round(w.wall, 3),
        "msgs_per_s": round(msgs / w.wall, 1) if w.wall > 0 else None,
        "p50_ms": round(pct(lat, 50) * 1000, 3) if lat else None,
        "p99_ms": round(pct(lat, 99) * 1000, 3) if lat else None,
        "server_cpu_s": None if w.server_cpu is None else round(w.server_cpu, 3),
        "server_us_per_op": None if w.server_cpu is None or not ops else round(w.server_cpu / ops * 1e6, 1),
        "server_us_per_msg": None if w.server_cpu is None or not msgs else round(w.server_cpu / msgs * 1e6, 1),
        "client_cpu_pct": round(100 * w.client_cpu / w.wall) if w.wall > 0 else None,
        "errors": errors,
        "note": note,
    }
    return r


def make_queue(sqs, name):
    return sqs.create_queue(QueueName=name)["QueueUrl"]


def boto_send1(server, args, run_id):
    sqs = sqs_client(server.endpoint)
    url = make_queue(sqs, f"b-{run_id}-send1")
    for _ in range(3):
        sqs.send_message(QueueUrl=url, MessageBody="warmup")
    lat, n, errors = [], 0, 0
    end = time.perf_counter() + args.seconds
    with Window(server.pid) as w:
        while n < args.max_messages and time.perf_counter() < end:
            t0 = time.perf_counter()
            sqs.send_message(QueueUrl=url, MessageBody=f"m{n}-{BODY}")
            lat.append(time.perf_counter() - t0)
            n += 1
    return row_result("send1", w, n, n, lat, errors)


def boto_send8(server, args, run_id):
    threads_n = args.threads
    sqs0 = sqs_client(server.endpoint)
    url = make_queue(sqs0, f"b-{run_id}-send8")
    clients = []
    for _ in range(threads_n):
        c = sqs_client(server.endpoint)
        c.send_message(QueueUrl=url, MessageBody="warmup")  # opens the connection
        clients.append(c)
    per = args.max_messages // threads_n
    sent = [0] * threads_n
    lats = [[] for _ in range(threads_n)]
    errors = []
    barrier = threading.Barrier(threads_n + 1)
    holder = {}

    def worker(i):
        barrier.wait()
        end = holder["end"]
        c = clients[i]
        try:
            for k in range(per):
                if time.perf_counter() >= end:
                    break
                t0 = time.perf_counter()
                c.send_message(QueueUrl=url, MessageBody=f"t{i}-{k}-{BODY}")
                lats[i].append(time.perf_counter() - t0)
                sent[i] += 1
        except Exception as e:  # noqa: BLE001
            errors.append(str(e)[:200])

    ths = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads_n)]
    for t in ths:
        t.start()
    holder["end"] = time.perf_counter() + args.seconds
    with Window(server.pid) as w:
        barrier.wait()
        for t in ths:
            t.join(args.seconds + 60)
    n = sum(sent)
    note = f"{len(errors)} thread error(s): {errors[0]}" if errors else ""
    return row_result(f"send{threads_n}", w, n, n, [x for l in lats for x in l], len(errors), note)


def boto_batch_and_drain(server, args, run_id):
    sqs = sqs_client(server.endpoint)
    url = make_queue(sqs, f"b-{run_id}-batch")
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "w", "MessageBody": "warmup"}])
    lat, calls, sent, failed = [], 0, 0, 0
    end = time.perf_counter() + args.seconds
    with Window(server.pid) as w:
        while sent < args.max_messages and time.perf_counter() < end:
            entries = [{"Id": str(i), "MessageBody": f"b{calls}-{i}-{BODY}"} for i in range(10)]
            t0 = time.perf_counter()
            r = sqs.send_message_batch(QueueUrl=url, Entries=entries)
            lat.append(time.perf_counter() - t0)
            calls += 1
            sent += len(r.get("Successful", []))
            failed += len(r.get("Failed", []))
    batch = row_result("batch", w, calls, sent, lat, failed, f"{failed} entries failed" if failed else "")

    total = sent + 1  # + the warm-up message
    lat, calls, got, empties = [], 0, 0, 0
    end = time.perf_counter() + args.seconds
    with Window(server.pid) as w:
        while got < total and time.perf_counter() < end:
            t0 = time.perf_counter()
            r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                    VisibilityTimeout=60)
            lat.append(time.perf_counter() - t0)
            calls += 1
            msgs = r.get("Messages", [])
            if not msgs:
                empties += 1
                if empties >= 5:
                    break
                continue
            empties = 0
            t0 = time.perf_counter()
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
            )
            lat.append(time.perf_counter() - t0)
            calls += 1
            got += len(msgs)
    note = "" if got >= total else f"drained {got} of {total} in the window"
    drain = row_result("drain", w, calls, got, lat, 0, note)
    return [batch, drain]


def run_boto_rows(server, args, run_id):
    rows = []
    for fn in (boto_send1, boto_send8, boto_batch_and_drain):
        if args.wait_build:
            wait_for_idle_build(args.wait_build)
        busy = rustc_running()
        try:
            out = fn(server, args, run_id)
        except Exception as e:  # noqa: BLE001 - a server that fails a row gets n/a
            name = {boto_send1: "send1", boto_send8: f"send{args.threads}"}.get(fn, "batch")
            out = {"row": name, "na": f"{type(e).__name__}: {str(e)[:200]}"}
        for r in out if isinstance(out, list) else [out]:
            if busy:
                r["note"] = (r.get("note", "") + "; rustc was running").lstrip("; ")
            rows.append(r)
            print(f"  {server.label:<12} {fmt_row(r)}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# Rust client rows


def run_rust_rows(server, args, run_id, sqs_load):
    plans = [
        ("send", 1, f"r-{run_id}-send1", 0),
        ("send", args.threads, f"r-{run_id}-send8", 0),
    ]
    # one queue per batch row; the drain row empties the first batch row's queue
    counts = sorted({int(x) for x in args.rust_batch_clients.split(",") if x.strip()})
    for c in counts:
        plans.append(("batch", c, f"r-{run_id}-batch{c}", 0))
    if counts:
        plans.append(("drain", args.rust_drain_clients, f"r-{run_id}-batch{counts[0]}", 0))
    rows = []
    for mode, clients, queue, prefill in plans:
        if args.wait_build:
            wait_for_idle_build(args.wait_build)
        busy = rustc_running()
        # drain: bounded by --rust-drain-seconds (the batch row may leave a big queue behind)
        seconds = args.rust_drain_seconds if mode == "drain" else args.seconds
        cmd = [sqs_load, mode, "--endpoint", server.endpoint, "--queue", queue, "--clients", str(clients),
               "--seconds", str(seconds), "--server-pid", str(server.pid)]
        if mode != "drain":
            cmd += ["--messages", str(args.rust_max_messages)]
        if prefill:
            cmd += ["--prefill", str(prefill)]
        name = f"rust {mode} x{clients}"
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
            if r.returncode != 0:
                raise RuntimeError((r.stderr or r.stdout).strip()[-300:])
            j = json.loads(r.stdout.strip().splitlines()[-1])
            row = {
                "row": name,
                "ops": j["ops"],
                "messages": j["messages"],
                "seconds": j["seconds"],
                "msgs_per_s": j["msgs_per_s"],
                "p50_ms": j["p50_ms"],
                "p99_ms": j["p99_ms"],
                "server_cpu_s": j["server_cpu_s"],
                "server_us_per_op": j["server_cpu_us_per_op"],
                "server_us_per_msg": j["server_cpu_us_per_msg"],
                "client_cpu_pct": round(100 * j["client_cpu_s"] / j["seconds"]) if j.get("client_cpu_s") is not None and j["seconds"] else None,
                "client_us_per_msg": j.get("client_cpu_us_per_msg"),
                "errors": j["errors"],
                "note": (j.get("first_error") or "")[:200],
            }
        except Exception as e:  # noqa: BLE001
            row = {"row": name, "na": f"{type(e).__name__}: {str(e)[:300]}"}
        if busy:
            row["note"] = (row.get("note", "") + "; rustc was running").lstrip("; ")
        rows.append(row)
        print(f"  {server.label:<12} {fmt_row(row)}", flush=True)
    return rows


# ----------------------------------------------------------------------------------------------
# output


def fmt_num(x, digits=0):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def fmt_row(r):
    if "na" in r:
        return f"{r['row']:<16} n/a: {r['na']}"
    return (f"{r['row']:<16} {r['messages']:>8} msgs {fmt_num(r['msgs_per_s']):>9} msg/s  "
            f"server {fmt_num(r['server_us_per_op'], 1):>8} us/op {fmt_num(r['server_us_per_msg'], 1):>8} us/msg"
            + (f"  ({r['note']})" if r.get("note") else ""))


def ratio(a, b):
    if a is None or b is None or a == 0 or b == 0:
        return None
    return a / b


def print_tables(result):
    servers = result["servers"]
    labels = [s["label"] for s in servers]
    print()
    title = f"SQS side by side ({result['date']}, {result['machine']})"
    print(title)
    print("=" * len(title))
    for s in servers:
        extra = f"pid {s['pid']}, start-up {s['startup_s']:.2f} s, RSS after {s['rss_mib']:.0f} MiB" \
            if not s.get("na") else f"n/a: {s['na']}"
        print(f"  {s['label']:<12} {s.get('endpoint') or ''}  {extra}")
    print()
    hdr = (f"{'row':<8} {'server':<12} {'msgs':>7} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
           f"{'srv us/op':>10} {'srv us/msg':>11} {'client CPU':>10}  notes")
    print(hdr)
    print("-" * len(hdr))
    rows_by = {s["label"]: {r["row"]: r for r in s.get("boto_rows", [])} for s in servers}
    row_names = []
    for s in servers:
        for r in s.get("boto_rows", []):
            if r["row"] not in row_names:
                row_names.append(r["row"])
    for name in row_names:
        for label in labels:
            r = rows_by[label].get(name)
            srv = next(s for s in servers if s["label"] == label)
            if srv.get("na"):
                print(f"{name:<8} {label:<12} n/a: {srv['na']}")
                continue
            if r is None:
                continue
            if "na" in r:
                print(f"{name:<8} {label:<12} n/a: {r['na']}")
                continue
            cc = f"{r['client_cpu_pct']}%" if r.get("client_cpu_pct") is not None else "-"
            print(f"{name:<8} {label:<12} {r['messages']:>7} {fmt_num(r['msgs_per_s']):>9} "
                  f"{fmt_num(r['p50_ms'], 2):>8} {fmt_num(r['p99_ms'], 2):>8} "
                  f"{fmt_num(r['server_us_per_op'], 1):>10} {fmt_num(r['server_us_per_msg'], 1):>11} {cc:>10}  "
                  f"{r.get('note', '')}")
    print()
    print("tsumiki vs each peer (boto3 rows): throughput ratio (x faster) and server CPU ratio "
          "(peer us/msg / tsumiki us/msg, x less CPU)")
    ts = rows_by.get("tsumiki", {})
    for label in labels:
        if label == "tsumiki":
            continue
        srv = next(s for s in servers if s["label"] == label)
        if srv.get("na"):
            print(f"  vs {label}: n/a: {srv['na']}")
            continue
        for name in row_names:
            a, b = ts.get(name), rows_by[label].get(name)
            if not a or not b or "na" in a or "na" in b:
                print(f"  {name:<8} vs {label:<12} n/a")
                continue
            t = ratio(a["msgs_per_s"], b["msgs_per_s"])
            c = ratio(b["server_us_per_msg"], a["server_us_per_msg"])
            print(f"  {name:<8} vs {label:<12} throughput {fmt_num(t, 1):>6}x   "
                  f"server CPU per message {fmt_num(c, 0):>6}x less")
    rust = result.get("rust_rows")
    if rust:
        print()
        print("tsumiki alone, Rust client (sqs-load, AWS SDK for Rust)")
        hdr = (f"{'row':<16} {'msgs':>8} {'msg/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'srv us/op':>10} "
               f"{'srv us/msg':>11} {'client CPU':>10} {'cli us/msg':>10}  notes")
        print(hdr)
        print("-" * len(hdr))
        for r in rust:
            if "na" in r:
                print(f"{r['row']:<16} n/a: {r['na']}")
                continue
            print(f"{r['row']:<16} {r['messages']:>8} {fmt_num(r['msgs_per_s']):>9} "
                  f"{fmt_num(r['p50_ms'], 2):>8} {fmt_num(r['p99_ms'], 2):>8} "
                  f"{fmt_num(r['server_us_per_op'], 1):>10} {fmt_num(r['server_us_per_msg'], 1):>11} "
                  f"{(str(r['client_cpu_pct']) + '%') if r.get('client_cpu_pct') is not None else '-':>10} "
                  f"{fmt_num(r.get('client_us_per_msg'), 1):>10}  {r.get('note', '')}")
    targets = result.get("targets")
    if targets:
        print()
        print("targets (server CPU from /proc, data on disk)")
        for t in targets:
            print(f"  {t['name']:<42} target {t['target']:<11} best {t['best']:>11} ({t['best_row']}), "
                  f"worst {t['worst']:>11} ({t['worst_row']}): {t['verdict']}")


def check_targets(result):
    """The issue's targets, judged on every tsumiki row that measures them (best and worst)."""
    ts = next((s for s in result["servers"] if s["label"] == "tsumiki"), None)
    if not ts or ts.get("na"):
        return []
    threads = result["threads"]
    rows = {f"boto3 {r['row']}": r for r in ts.get("boto_rows", []) if "na" not in r}
    rows.update({r["row"]: r for r in result.get("rust_rows", []) if "na" not in r})
    out = []

    def judge(name, keys, field, target, ok, fmt):
        vals = [(rows[k][field], k) for k in keys if k in rows and rows[k].get(field) is not None]
        if not vals:
            return
        best = min(vals) if field != "msgs_per_s" else max(vals)
        worst = max(vals) if field != "msgs_per_s" else min(vals)
        met = [k for v, k in vals if ok(v)]
        verdict = "met in every row" if len(met) == len(vals) else (
            f"met only in: {', '.join(met)}" if met else "MISSED in every row")
        out.append({"name": name, "best": fmt(best[0]), "best_row": best[1], "worst": fmt(worst[0]),
                    "worst_row": worst[1], "target": target, "verdict": verdict})

    judge("server CPU per SendMessage", ["boto3 send1", f"boto3 send{threads}", "rust send x1",
                                         f"rust send x{threads}"],
          "server_us_per_msg", "< 25 us", lambda v: v < 25, lambda v: f"{v:,.1f} us")
    rust_batch = [k for k in rows if k.startswith("rust batch x")]
    judge("server CPU per message, SendMessageBatch", ["boto3 batch"] + rust_batch,
          "server_us_per_msg", "< 5 us", lambda v: v < 5, lambda v: f"{v:,.1f} us")
    judge("SendMessageBatch msgs/s, Rust client", rust_batch,
          "msgs_per_s", "> 50,000/s", lambda v: v > 50000, lambda v: f"{v:,.0f}/s")
    return out


def machine_desc():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="bound of each row's timed window")
    ap.add_argument("--max-messages", type=int, default=20000, help="bound of each boto3 row's messages")
    ap.add_argument("--threads", type=int, default=8, help="clients of the concurrent rows")
    ap.add_argument("--rust-max-messages", type=int, default=1_000_000, help="bound of each Rust send row")
    ap.add_argument("--rust-batch-clients", default="8,32",
                    help="comma list: one Rust SendMessageBatch row per client count")
    ap.add_argument("--rust-drain-clients", type=int, default=4)
    ap.add_argument("--rust-drain-seconds", type=float, default=10.0)
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    ap.add_argument("--target-dir", default=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")))
    ap.add_argument("--skip-moto", action="store_true")
    ap.add_argument("--skip-rust", action="store_true")
    ap.add_argument("--localstack", choices=["auto", "yes", "no"], default="auto",
                    help="LocalStack via start_peers.sh: auto = only if its venv is already installed "
                         "(PEERS_DIR, default /tmp/peers); yes = install if needed (~3 min)")
    ap.add_argument("--localstack-timeout", type=float, default=120.0,
                    help="bound of LocalStack's start (and install, with --localstack yes: 4x this)")
    ap.add_argument("--wait-build", type=float, default=0.0,
                    help="before each row wait up to this many seconds while a rustc runs")
    ap.add_argument("--json", default=None, help="write the results as JSON to this file ('-' = stdout)")
    args = ap.parse_args()

    release = os.path.join(args.target_dir, "release")
    tsumiki_bin = os.path.join(release, "tsumiki")
    sqs_load = os.path.join(release, "sqs-load")
    if not args.no_build:
        print("building tsumiki and sqs-load (release)...", flush=True)
        subprocess.run(["cargo", "build", "--release", "-p", "tsumiki", "--bin", "tsumiki",
                        "-p", "tsumiki-bench", "--bin", "sqs-load"], cwd=ROOT, check=True)
    for b in (tsumiki_bin,) + (() if args.skip_rust else (sqs_load,)):
        if not os.path.exists(b):
            sys.exit(f"missing {b}: build it or drop --no-build")

    run_id = f"{int(time.time()) % 100000:05d}"
    tmp = tempfile.mkdtemp(prefix="tsumiki-bench-")
    servers = []
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_desc(),
        "seconds_per_row": args.seconds,
        "max_messages_per_row": args.max_messages,
        "threads": args.threads,
        "load_avg_start": os.getloadavg()[0],
        "servers": [],
    }
    facts = {}

    def record(s, rows):
        d = {"label": s.label, "endpoint": s.endpoint, "pid": s.pid, "na": s.na, "startup_s": s.startup_s or 0.0}
        if not s.na:
            d["rss_mib"] = rss_mib(s.pid)
            d["cpu_total_s"] = proc_cpu_seconds(s.pid)
            d["boto_rows"] = rows
        facts[s.label] = d

    def start_localstack_or_na():
        ls_marker = os.path.join(os.environ.get("PEERS_DIR", "/tmp/peers"), "ls-venv", ".peer-bench-marker")
        if args.localstack == "no":
            return Server("localstack", na="skipped (--localstack no)")
        if args.localstack == "auto" and not os.path.exists(ls_marker):
            return Server("localstack", na="not installed here; `bash ../shared/peers/start_peers.sh "
                                           "localstack` installs it (~3 min), or pass --localstack yes")
        timeout = args.localstack_timeout * (4 if args.localstack == "yes" else 1)
        return start_localstack(int(os.environ.get("LS_PORT", "4566")), timeout)

    # One server under load at a time (2-core machines): tsumiki's boto3 rows, then each peer
    # started, measured and stopped in turn, then the Rust client against tsumiki.
    try:
        os.makedirs(os.path.join(tmp, "data"))
        ts = start_tsumiki(tsumiki_bin, os.path.join(tmp, "data"))
        servers.append(ts)
        peers = [] if args.skip_moto else [lambda: start_moto(free_port())]
        peers.append(start_localstack_or_na)
        order = [lambda: ts] + peers
        print("boto3 workload", flush=True)
        for start in order:
            s = start()
            if s is not ts:
                servers.append(s)
            print(f"{s.label}: " + (f"n/a: {s.na}" if s.na else f"{s.endpoint} pid {s.pid}, "
                                    f"start-up {s.startup_s or 0:.2f} s"), flush=True)
            rows = [] if s.na else run_boto_rows(s, args, run_id)
            record(s, rows)
            if s is not ts:
                s.stop()
        rust_rows = []
        if not args.skip_rust and not ts.na:
            print("Rust client (sqs-load) against tsumiki", flush=True)
            rust_rows = run_rust_rows(ts, args, run_id, sqs_load)
        if not ts.na:
            boto = facts["tsumiki"]["boto_rows"]
            record(ts, boto)
        result["servers"] = [facts[s.label] for s in servers]
        result["rust_rows"] = rust_rows
        result["load_avg_end"] = os.getloadavg()[0]
        result["targets"] = check_targets(result)
        print_tables(result)
        print(f"\nload average (1 min) start / end: {result['load_avg_start']:.2f} / {result['load_avg_end']:.2f}")
        if args.json:
            text = json.dumps(result, indent=1)
            if args.json == "-":
                print(text)
            else:
                with open(args.json, "w") as f:
                    f.write(text + "\n")
    finally:
        for s in servers:
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
