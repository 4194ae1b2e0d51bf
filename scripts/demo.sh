#!/usr/bin/env bash
# Builds tsumiki, serves it on 127.0.0.1:4566 with the example app deployed, and stays in the
# foreground until Ctrl-C. State lives in ./.tsumiki (delete it to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tsumiki --bin tsumiki
LISTEN="${TSUMIKI_LISTEN:-127.0.0.1:4566}"
./target/release/tsumiki serve --listen "$LISTEN" --data-dir "${TSUMIKI_DATA_DIR:-.tsumiki}" &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server' INT TERM EXIT
for _ in $(seq 1 100); do
    curl -sf "http://$LISTEN/_tsumiki/health" >/dev/null 2>&1 && break
    sleep 0.1
done
python3 examples/hello-queue/deploy.py "http://$LISTEN"
echo "tsumiki is serving on http://$LISTEN (Ctrl-C stops it)."
wait $server
