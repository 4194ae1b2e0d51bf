#!/usr/bin/env bash
# dynamodb.sh - runs two peers' DynamoDB suites, written against real DynamoDB, as yardsticks
# against a tsumiki binary, and prints their pass/fail counts. Not part of CI's required tests:
# a yardstick measures, it does not gate (where a peer and AWS's documentation disagree, AWS
# wins).
#
#   TSUMIKI_BIN=target/debug/tsumiki tests/yardsticks/dynamodb.sh [moto] [dynalite]
#
# moto:     moto's own tests/test_dynamodb and tests/test_dynamodbstreams in server mode, through
#           ../shared/peers/moto_suite.sh (MOTO_SUITE overrides; it downloads moto's sdist, which
#           holds tests/, for the installed moto version; MOTO_SRC points at a source tree).
# dynalite: architect/dynalite's mocha suite (test/*.js) in its REMOTE mode, pointed at tsumiki.
#           Its npm package ships no tests: DYNALITE_SRC names a checkout with test/, else the
#           script clones https://github.com/architect/dynalite (DYNALITE_REF, default master)
#           into $WORKDIR. DYNALITE_TESTS limits the files (e.g. "getItem putItem").
#
# dynalite's assertions compare whole error bodies, including AWS's namespaced `__type`
# (`com.amazon.coral.validate#ValidationException`, `com.amazonaws.dynamodb.v20120810#...`).
# `--exit`: a file whose `after all` hook fails would otherwise leave mocha waiting until the
# timeout.
#
# Recorded runs (2026-11-29; 19 files fetched from architect/dynalite's stored sources, a fresh
# server per file): 48 passed, 990 failed, 19 pending before DynamoDB's namespaced `__type` and
# legacy parameters; 327 passed, 611 failed after them. What is left: SerializationException
# bodies (AWS's Java-style `Message` for wrongly typed members, 205), validation AWS does
# before it looks the table up (69), validation wording and counts, ConsumedCapacity details.
#
# Output: one "<suite> <passed> <failed>" line per suite (or "<suite> n/a: reason"). Logs go to
# $WORKDIR (default /tmp/tsumiki-yardsticks). The server runs in memory with the account id
# moto's tests expect (123456789012), on a free port, and is stopped at the end.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
TSUMIKI_BIN="${TSUMIKI_BIN:-$ROOT/target/debug/tsumiki}"
WORKDIR="${WORKDIR:-/tmp/tsumiki-yardsticks}"
MOTO_SUITE="${MOTO_SUITE:-$ROOT/../shared/peers/moto_suite.sh}"
SUITES=("$@")
[ ${#SUITES[@]} -eq 0 ] && SUITES=(moto dynalite)
mkdir -p "$WORKDIR"

[ -x "$TSUMIKI_BIN" ] || { echo "no tsumiki binary at $TSUMIKI_BIN" >&2; exit 2; }

PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
ENDPOINT="http://127.0.0.1:$PORT"
"$TSUMIKI_BIN" serve --listen "127.0.0.1:$PORT" --in-memory --default-account 123456789012 \
    > "$WORKDIR/tsumiki.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null' EXIT
for _ in $(seq 50); do
    curl -sf "$ENDPOINT/_tsumiki/health" >/dev/null 2>&1 && break
    sleep 0.2
done

run_moto() {
    if [ ! -x "$MOTO_SUITE" ] && [ ! -f "$MOTO_SUITE" ]; then
        echo "moto n/a: no moto_suite.sh at $MOTO_SUITE"; return
    fi
    ENDPOINT="$ENDPOINT" WORKDIR="$WORKDIR/moto" TEST_TIMEOUT="${TEST_TIMEOUT:-30}" \
        bash "$MOTO_SUITE" dynamodb dynamodbstreams 2> "$WORKDIR/moto.err" \
        | sed 's/^/moto /'
}

run_dynalite() {
    local src="${DYNALITE_SRC:-$WORKDIR/dynalite}"
    if [ ! -d "$src/test" ]; then
        if ! git clone -q --depth 1 --branch "${DYNALITE_REF:-master}" \
                https://github.com/architect/dynalite "$src" > "$WORKDIR/dynalite-clone.log" 2>&1; then
            echo "dynalite n/a: no checkout with test/ (set DYNALITE_SRC; cloning failed, see $WORKDIR/dynalite-clone.log)"
            return
        fi
    fi
    if [ ! -d "$src/node_modules/mocha" ]; then
        (cd "$src" && npm install --no-audit --no-fund > "$WORKDIR/dynalite-npm.log" 2>&1 \
            ) \
            || { echo "dynalite n/a: npm install failed (see $WORKDIR/dynalite-npm.log)"; return; }
    fi
    # REMOTE mode talks to dynamodb.us-east-1.amazonaws.com; point it at tsumiki instead.
    local tree="$WORKDIR/dynalite-tree"
    rm -rf "$tree"; cp -r "$src" "$tree"
    # (Both spellings: a fixed us-east-1 host, and 'dynamodb.' + exports.awsRegion + ...)
    sed -i -E "s#\{host: 'dynamodb\.[^}]*amazonaws\.com', method: 'POST'\}#{host: '127.0.0.1', port: $PORT, method: 'POST', service: 'dynamodb', region: 'us-east-1'}#" \
        "$tree/test/helpers.js"
    grep -q "port: $PORT" "$tree/test/helpers.js" \
        || { echo "dynalite n/a: could not point test/helpers.js's REMOTE mode at tsumiki"; return; }
    local files=()
    if [ -n "${DYNALITE_TESTS:-}" ]; then
        for t in $DYNALITE_TESTS; do files+=("test/$t.js"); done
    else
        files=(test/*.js)
    fi
    (cd "$tree" && REMOTE=1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
        timeout "${DYNALITE_TIMEOUT:-1800}" node_modules/.bin/mocha --require should --timeout 30000 --exit --reporter json \
        "${files[@]}" > "$WORKDIR/dynalite.json" 2> "$WORKDIR/dynalite.err")
    "$PYTHON" - "$WORKDIR/dynalite.json" <<'PY'
import json, sys
try:
    text = open(sys.argv[1]).read()
    report = json.loads(text[text.index("{"):])
except Exception as e:
    print(f"dynalite n/a: no mocha report ({e})")
    sys.exit()
s = report["stats"]
print(f"dynalite {s['passes']} {s['failures']}")
PY
}

for suite in "${SUITES[@]}"; do
    case "$suite" in
        moto) run_moto ;;
        dynalite) run_dynalite ;;
        *) echo "unknown suite: $suite" >&2 ;;
    esac
done
