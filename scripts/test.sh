#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and integration tests, then the end-to-end
# tests (official socket.io-client against real gateway processes, PostgreSQL and Redis), the
# load-testing tools (a tiny run of each scenario) and the benchmark peer.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and Redis 7 on 127.0.0.1:6379, or
# TEST_PG_URL / TEST_REDIS_URL; `.ci/run` starts them when they are down.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools the tests use, installed when missing: Prometheus' promtool (Debian), and the deploy
# checks' Python tools pinned by hash in .venv/ (deploy/requirements.txt).
if ! command -v promtool >/dev/null; then
  echo "installing prometheus (promtool) from Debian's packages"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --require-hashes -r deploy/requirements.txt

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked --bin gateway --bin loadgen
cargo test --workspace --locked

[ -d testkit/node_modules ] || (cd testkit && npm ci --no-audit --no-fund)
[ -d e2e/node_modules ] || (cd e2e && npm ci --no-audit --no-fund)
[ -d loadtest/peers/node-socketio/node_modules ] || (cd loadtest/peers/node-socketio && npm ci --no-audit --no-fund)
# The k6 scenarios, run by k6 itself in tiny runs, and their Socket.IO framing against a live
# replica; the Node reference peer.
node --test loadtest/k6/test/
(cd loadtest/peers/node-socketio && node --test test/)
(cd e2e && npm test)
# The multi-replica suites again, with the replicas on a local Redis Cluster of three masters.
(cd e2e && npm run test:redis-cluster)
# The deployment artifacts: Dockerfile, compose stack, Helm chart (docs/deployment.md).
.venv/bin/python -m pytest -q -p no:cacheprovider deploy/tests
