#!/usr/bin/env bash
# Every test: unit, data-driven and golden tests, the end-to-end tests that drive the real
# binary with the AWS SDK for Rust (crash test included), then the boto3 and aws-cli suites.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q -r tests/py/requirements.txt
cargo build -p tsumiki --bin tsumiki
cargo test --workspace
TSUMIKI_BIN="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tsumiki" \
    tests/run_client_suites.sh
