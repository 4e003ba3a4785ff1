#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests, then the end-to-end
# tests (official socket.io-client against real gateway processes, PostgreSQL and Redis).
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis 7 on 127.0.0.1:6379, or
# TEST_PG_URL / TEST_REDIS_URL; `.ci/run` starts them when they are down.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked --bin gateway
cargo test --workspace --locked

cd e2e
[ -d node_modules ] || npm ci --no-audit --no-fund
npm test
