#!/usr/bin/env bash
# run_client_suites.sh - runs the client suites against the tsumiki binary: the boto3 suite
# (tests/py, pytest) and then the aws-cli smoke test (tests/cli/smoke.sh).
#
#   TSUMIKI_BIN=target/debug/tsumiki tests/run_client_suites.sh [extra pytest args]
#
# Builds nothing: TSUMIKI_BIN (default target/debug/tsumiki under the repository root) must
# exist. Each suite starts its own servers on free ports. Installs pytest with pip when it is
# missing. Exits non-zero when either suite fails; both always run.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TSUMIKI_BIN="${TSUMIKI_BIN:-$ROOT/target/debug/tsumiki}"
case "$TSUMIKI_BIN" in /*) ;; *) TSUMIKI_BIN="$ROOT/$TSUMIKI_BIN" ;; esac
export TSUMIKI_BIN
unset TSUMIKI_ENDPOINT

if [ ! -x "$TSUMIKI_BIN" ]; then
    echo "run_client_suites: no tsumiki binary at $TSUMIKI_BIN (cargo build -p tsumiki --bin tsumiki)" >&2
    exit 2
fi

missing=""
for mod in pytest boto3 requests cryptography; do
    "$PYTHON" -c "import $mod" 2>/dev/null || missing="$missing $mod"
done
if [ -n "$missing" ]; then
    echo "run_client_suites: installing$missing" >&2
    "$PYTHON" -m pip install -q $missing >&2 || { echo "run_client_suites: pip install failed" >&2; exit 2; }
fi

status=0

echo "== boto3 suite (tests/py)"
(cd "$ROOT" && "$PYTHON" -m pytest tests/py -q "$@") || status=1

echo "== aws-cli smoke (tests/cli/smoke.sh)"
if command -v aws >/dev/null 2>&1; then
    "$ROOT/tests/cli/smoke.sh" || status=1
else
    echo "run_client_suites: aws-cli not installed; the smoke test cannot run" >&2
    status=1
fi

if [ "$status" -eq 0 ]; then echo "== client suites passed"; else echo "== client suites FAILED"; fi
exit "$status"
