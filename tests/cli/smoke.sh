#!/usr/bin/env bash
# smoke.sh - an aws-cli smoke test of tsumiki's SQS and S3.
#
#   TSUMIKI_ENDPOINT=http://127.0.0.1:4566 tests/cli/smoke.sh   # against a running server
#   tests/cli/smoke.sh                                          # starts its own server
#
# Without TSUMIKI_ENDPOINT it starts "$TSUMIKI_BIN" (default: target/debug/tsumiki under the
# repository root) with --listen 127.0.0.1:0 --in-memory, reads the address from its first
# stdout line, and stops it on exit. Builds nothing. Exits non-zero on any mismatch.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${TSUMIKI_BIN:-$ROOT/target/debug/tsumiki}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac

# Fixed test credentials; nothing from the caller's AWS configuration leaks in.
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=""
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_SESSION_TOKEN

TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null
        wait "$SERVER_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${TSUMIKI_ENDPOINT:-}" ]; then
    [ -x "$BIN" ] || { echo "smoke: no tsumiki binary at $BIN (build it or set TSUMIKI_BIN)" >&2; exit 2; }
    "$BIN" serve --listen 127.0.0.1:0 --in-memory --default-account 123456789012 \
        >"$TMP/stdout" 2>"$TMP/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        TSUMIKI_ENDPOINT="$(head -n1 "$TMP/stdout" 2>/dev/null | grep -o 'http://[^ ]*')"
        [ -n "$TSUMIKI_ENDPOINT" ] && break
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$TSUMIKI_ENDPOINT" ]; then
        echo "smoke: tsumiki did not announce its address" >&2
        cat "$TMP/server.log" >&2
        exit 2
    fi
fi
ENDPOINT="${TSUMIKI_ENDPOINT%/}"
echo "smoke: against $ENDPOINT"

FAILURES=0
pass() { echo "  ok   $1"; }
fail() { echo "  FAIL $1"; FAILURES=$((FAILURES + 1)); }

# expect_eq DESCRIPTION EXPECTED ACTUAL
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: expected [$2], got [$3]"; fi
}

# sqs ARGS...: runs "aws sqs ARGS" against the endpoint (text output) in this shell: stdout in
# $OUT, stderr in $TMP/err, exit code in $RC.
sqs() {
    aws --endpoint-url "$ENDPOINT" --output text sqs "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT="$(cat "$TMP/out")"
}

# expect_error DESCRIPTION CODE ARGS...: the command fails (aws-cli v1 exits 255 on a service
# error, v2 254) and names the error code.
expect_error() {
    local desc="$1" code="$2"
    shift 2
    sqs "$@"
    if [ "$RC" != 255 ] && [ "$RC" != 254 ]; then
        fail "$desc: exit code $RC, expected 254/255 ($(tr '\n' ' ' <"$TMP/err"))"
    elif ! grep -q "($code)" "$TMP/err"; then
        fail "$desc: error does not name $code: $(tr '\n' ' ' <"$TMP/err")"
    else
        pass "$desc (exit $RC, $code)"
    fi
}

# expect_ok DESCRIPTION: the last command succeeded.
expect_ok() {
    if [ "$RC" = 0 ]; then pass "$1"; else fail "$1: exit code $RC: $(tr '\n' ' ' <"$TMP/err")"; fi
}

md5() { printf '%s' "$1" | md5sum | cut -d' ' -f1; }

NAME="smoke-$$-$RANDOM"

echo "queues"
sqs create-queue --queue-name "$NAME" --attributes VisibilityTimeout=45 --tags team=smoke --query QueueUrl
expect_ok "create-queue"
URL="$OUT"
case "$URL" in */"$NAME") pass "queue URL ends in the name" ;; *) fail "queue URL [$URL]" ;; esac
sqs get-queue-url --queue-name "$NAME" --query QueueUrl
expect_eq "get-queue-url" "$URL" "$OUT"
sqs list-queues --queue-name-prefix "$NAME" --query 'QueueUrls[0]'
expect_eq "list-queues --queue-name-prefix" "$URL" "$OUT"
sqs get-queue-attributes --queue-url "$URL" --attribute-names VisibilityTimeout --query Attributes.VisibilityTimeout
expect_eq "VisibilityTimeout as created" "45" "$OUT"
sqs set-queue-attributes --queue-url "$URL" --attributes DelaySeconds=0,MessageRetentionPeriod=600
expect_ok "set-queue-attributes"
sqs get-queue-attributes --queue-url "$URL" --attribute-names All \
    --query '[Attributes.MessageRetentionPeriod, Attributes.MaximumMessageSize, Attributes.VisibilityTimeout]'
expect_eq "attributes after set (retention, default size, visibility)" "600	1048576	45" "$OUT"
sqs list-queue-tags --queue-url "$URL" --query Tags.team
expect_eq "list-queue-tags" "smoke" "$OUT"

echo "messages"
sqs send-message --queue-url "$URL" --message-body "hello from the cli" --query MD5OfMessageBody
expect_eq "send-message MD5OfMessageBody" "$(md5 "hello from the cli")" "$OUT"
sqs send-message --queue-url "$URL" --message-body "with attributes" \
    --message-attributes '{"colour":{"DataType":"String","StringValue":"blue"}}' --query MD5OfMessageAttributes
# Length-prefixed name, type, transport byte 1, value (AWS's documented digest of attributes).
WANT_ATTR_MD5="$(printf '\x00\x00\x00\x06colour\x00\x00\x00\x06String\x01\x00\x00\x00\x04blue' | md5sum | cut -d' ' -f1)"
expect_eq "send-message MD5OfMessageAttributes" "$WANT_ATTR_MD5" "$OUT"
sqs send-message-batch --queue-url "$URL" \
    --entries '[{"Id":"a","MessageBody":"batch a"},{"Id":"b","MessageBody":"batch b"}]' \
    --query 'length(Successful)'
expect_eq "send-message-batch successes" "2" "$OUT"
sqs get-queue-attributes --queue-url "$URL" --attribute-names ApproximateNumberOfMessages \
    --query Attributes.ApproximateNumberOfMessages
expect_eq "ApproximateNumberOfMessages" "4" "$OUT"

: >"$TMP/bodies"
: >"$TMP/handles"
for _ in 1 2 3 4 5 6; do
    if ! aws --endpoint-url "$ENDPOINT" --output json sqs receive-message --queue-url "$URL" \
        --max-number-of-messages 10 --message-attribute-names All --attribute-names All \
        >"$TMP/recv.json" 2>"$TMP/err"; then
        fail "receive-message: $(cat "$TMP/err")"
        break
    fi
    python3 - "$TMP/recv.json" "$TMP/bodies" "$TMP/handles" <<'PY'
import json, sys
text = open(sys.argv[1]).read().strip()
data = json.loads(text) if text else {}
with open(sys.argv[2], "a") as bodies, open(sys.argv[3], "a") as handles:
    for m in data.get("Messages", []):
        colour = m.get("MessageAttributes", {}).get("colour", {}).get("StringValue", "")
        bodies.write(m["Body"] + ("|" + colour if colour else "") + "\n")
        handles.write(m["ReceiptHandle"] + "\n")
PY
    [ "$(wc -l <"$TMP/bodies")" -ge 4 ] && break
done
expect_eq "receive-message bodies and attributes" \
    "batch a|batch b|hello from the cli|with attributes|blue" "$(sort "$TMP/bodies" | paste -sd'|')"
while read -r handle; do
    sqs delete-message --queue-url "$URL" --receipt-handle "$handle"
    [ "$RC" = 0 ] || fail "delete-message: $(cat "$TMP/err")"
done <"$TMP/handles"
sqs get-queue-attributes --queue-url "$URL" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query '[Attributes.ApproximateNumberOfMessages, Attributes.ApproximateNumberOfMessagesNotVisible]'
expect_eq "queue empty after delete-message" "0	0" "$OUT"

echo "errors"
expect_error "get-queue-url of a missing queue" "AWS.SimpleQueueService.NonExistentQueue" \
    get-queue-url --queue-name "no-such-queue-$$"
expect_error "delete-message with a garbage receipt handle" "ReceiptHandleIsInvalid" \
    delete-message --queue-url "$URL" --receipt-handle not-a-handle
expect_error "get-queue-attributes with an unknown name" "InvalidAttributeName" \
    get-queue-attributes --queue-url "$URL" --attribute-names NotAnAttribute
expect_error "create-queue with a different attribute" "QueueAlreadyExists" \
    create-queue --queue-name "$NAME" --attributes VisibilityTimeout=46

echo "cleanup"
sqs purge-queue --queue-url "$URL"
expect_ok "purge-queue"
sqs delete-queue --queue-url "$URL"
expect_ok "delete-queue"
expect_error "get-queue-url after delete-queue" "AWS.SimpleQueueService.NonExistentQueue" \
    get-queue-url --queue-name "$NAME"

echo "s3"
s3cli() {
    aws --endpoint-url "$ENDPOINT" "$@" >"$TMP/out" 2>"$TMP/err"
    RC=$?
    OUT="$(cat "$TMP/out")"
}
BUCKET="smoke-$$-$RANDOM"
s3cli s3 mb "s3://$BUCKET"
expect_ok "s3 mb"
mkdir -p "$TMP/tree/sub"
printf 'one' >"$TMP/tree/a.txt"
printf 'two' >"$TMP/tree/sub/b.txt"
head -c 9000000 /dev/urandom >"$TMP/big.bin"
s3cli s3 cp "$TMP/big.bin" "s3://$BUCKET/big.bin"
expect_ok "s3 cp of a 9 MB file (multipart)"
s3cli s3 cp "s3://$BUCKET/big.bin" "$TMP/big.back"
expect_ok "s3 cp back"
expect_eq "s3 cp round trip" "$(md5sum <"$TMP/big.bin")" "$(md5sum <"$TMP/big.back")"
s3cli s3 sync "$TMP/tree" "s3://$BUCKET/tree"
expect_ok "s3 sync up"
s3cli s3 ls "s3://$BUCKET/tree/" --recursive
expect_eq "s3 ls --recursive" "tree/a.txt|tree/sub/b.txt" "$(awk '{print $4}' <<<"$OUT" | paste -sd'|')"
s3cli s3 sync "s3://$BUCKET/tree" "$TMP/down"
expect_ok "s3 sync down"
expect_eq "s3 sync down content" "two" "$(cat "$TMP/down/sub/b.txt" 2>/dev/null)"
s3cli s3 ls "s3://$BUCKET/"
expect_eq "s3 ls shows prefixes" "PRE tree/" "$(grep PRE <<<"$OUT" | awk '{print $1, $2}')"
s3cli s3api head-object --bucket "$BUCKET" --key tree/a.txt --query ContentLength --output text
expect_eq "s3api head-object" "3" "$OUT"
s3cli s3api get-object --bucket "$BUCKET" --key missing "$TMP/none"
if [ "$RC" != 0 ] && grep -q "NoSuchKey" "$TMP/err"; then pass "s3api get-object of a missing key (NoSuchKey)"; else fail "get-object missing: $RC $(cat "$TMP/err")"; fi
s3cli s3 rb "s3://$BUCKET" --force
expect_ok "s3 rb --force"

if [ "$FAILURES" -gt 0 ]; then
    echo "smoke: $FAILURES check(s) failed"
    [ -n "$SERVER_PID" ] && { echo "--- server log (tail)"; tail -n 40 "$TMP/server.log"; }
    exit 1
fi
echo "smoke: all checks passed"
