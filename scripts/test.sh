#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests, then the end-to-end
# tests (official socket.io-client against real gateway processes, PostgreSQL and Redis), the
# load-testing tools (a tiny run of each scenario) and the benchmark peer.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis 7 on 127.0.0.1:6379, or
# TEST_PG_URL / TEST_REDIS_URL; `.ci/run` starts them when they are down.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked --bin gateway --bin loadgen
cargo test --workspace --locked

[ -d e2e/node_modules ] || (cd e2e && npm ci --no-audit --no-fund)
[ -d loadtest/peers/node-socketio/node_modules ] || (cd loadtest/peers/node-socketio && npm ci --no-audit --no-fund)
# The k6 scenarios' Socket.IO framing against a live replica, and the Node reference peer.
node --test loadtest/k6/test/
(cd loadtest/peers/node-socketio && node --test test/)
(cd e2e && npm test)
