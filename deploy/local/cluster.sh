#!/usr/bin/env bash
# A local gateway cluster: three replicas behind HAProxy on one public port, sharing PostgreSQL
# and Redis. Builds, makes sure PostgreSQL and Redis are up (throwaway instances when none is
# reachable), migrates, seeds demo users, prints their tokens, and runs until Ctrl-C, which
# stops everything this script started.
#
# Settings (environment): GATEWAY_PORT (3000, as in the guide's examples), REPLICAS (3), PUBLIC_BASE_PORT (3001),
# INTERNAL_BASE_PORT (9001), DATABASE_URL, REDIS_URL, REDIS_PREFIX, JWT_SECRET, INTERNAL_API_TOKEN.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
state=${CLUSTER_STATE_DIR:-$root/.cluster}
mkdir -p "$state/logs"

GATEWAY_PORT=${GATEWAY_PORT:-3000}
REPLICAS=${REPLICAS:-3}
PUBLIC_BASE_PORT=${PUBLIC_BASE_PORT:-3001}
INTERNAL_BASE_PORT=${INTERNAL_BASE_PORT:-9001}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/gateway}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
export REDIS_PREFIX=${REDIS_PREFIX:-gateway}
export JWT_SECRET=${JWT_SECRET:-local-dev-jwt-secret-change-me}
export INTERNAL_API_TOKEN=${INTERNAL_API_TOKEN:-local-dev-internal-token}
export LOG_FORMAT=${LOG_FORMAT:-json}
export SHUTDOWN_GRACE_MS=${SHUTDOWN_GRACE_MS:-5000}

pids=()
say() { printf '==> %s\n' "$*"; }
# PostgreSQL refuses to run as root: the throwaway instance runs as the postgres user then.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

cleanup() {
  trap - EXIT
  say "stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -f "$state/pg/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$state/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  say "stopped"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building the gateway"
(cd "$root" && cargo build --quiet --bin gateway)
gateway="$root/target/debug/gateway"

# --- PostgreSQL -----------------------------------------------------------------------------
pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
pg_host=$(sed -E 's#^postgres(ql)?://([^@/]*@)?([^:/]+).*#\3#' <<<"$DATABASE_URL")
pg_port=$(sed -nE 's#^postgres(ql)?://([^@/]*@)?[^:/]+:([0-9]+).*#\3#p' <<<"$DATABASE_URL")
pg_port=${pg_port:-5432}
if ! pg_isready -q -h "$pg_host" -p "$pg_port"; then
  if command -v pg_ctlcluster >/dev/null && [ "$pg_port" = 5432 ]; then
    say "PostgreSQL not reachable: starting the system cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
fi
if ! pg_isready -q -h "$pg_host" -p "$pg_port"; then
  say "starting a throwaway PostgreSQL on port 55432 ($state/pg)"
  [ -n "$pg_bin" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
  rm -rf "$state/pg" && mkdir -p "$state/pg"
  [ "$(id -u)" = 0 ] && chown postgres "$state/pg" "$state/logs"
  as_pg "$pg_bin/initdb" -D "$state/pg" -A trust -U postgres >/dev/null
  as_pg "$pg_bin/pg_ctl" -D "$state/pg" -l "$state/logs/postgres.log" \
    -o "-p 55432 -k /tmp -c listen_addresses=127.0.0.1" -w start >/dev/null
  export DATABASE_URL="postgres://postgres@127.0.0.1:55432/gateway"
fi

# --- Redis ----------------------------------------------------------------------------------
redis_host=$(sed -E 's#^redis://([^@/]*@)?([^:/]+).*#\2#' <<<"$REDIS_URL")
redis_port=$(sed -nE 's#^redis://([^@/]*@)?[^:/]+:([0-9]+).*#\2#p' <<<"$REDIS_URL")
redis_port=${redis_port:-6379}
if ! redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
  say "Redis not reachable: starting a throwaway Redis on port 56379"
  redis-server --port 56379 --bind 127.0.0.1 --save "" --appendonly no \
    --logfile "$state/logs/redis.log" &
  pids+=($!)
  export REDIS_URL="redis://127.0.0.1:56379"
  until redis-cli -p 56379 ping >/dev/null 2>&1; do sleep 0.1; done
fi

# --- schema and demo data -------------------------------------------------------------------
say "migrating"
"$gateway" migrate
psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$root/deploy/local/seed.sql"

# --- replicas -------------------------------------------------------------------------------
servers=""
for i in $(seq 1 "$REPLICAS"); do
  public=$((PUBLIC_BASE_PORT + i - 1))
  internal=$((INTERNAL_BASE_PORT + i - 1))
  BIND_ADDR="127.0.0.1:$public" INTERNAL_BIND_ADDR="127.0.0.1:$internal" NODE_ID="gw-$i" \
    "$gateway" serve >"$state/logs/gw-$i.log" 2>&1 &
  pids+=($!)
  servers+="    server gw-$i 127.0.0.1:$public check cookie gw-$i"$'\n'
done
for i in $(seq 1 "$REPLICAS"); do
  internal=$((INTERNAL_BASE_PORT + i - 1))
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$internal/readyz" >/dev/null && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$internal/readyz" >/dev/null \
    || { echo "replica gw-$i did not become ready; see $state/logs/gw-$i.log" >&2; exit 1; }
done

# --- load balancer --------------------------------------------------------------------------
if ! command -v haproxy >/dev/null; then
  say "installing HAProxy (Debian package)"
  apt-get install -y -qq haproxy >/dev/null || { apt-get update -qq && apt-get install -y -qq haproxy >/dev/null; }
fi
config=$(<"$root/deploy/local/haproxy.cfg.tmpl")
config=${config//'${LB_BIND}'/127.0.0.1:$GATEWAY_PORT}
config=${config//'${SERVERS}'/${servers%$'\n'}}
printf '%s\n' "$config" >"$state/haproxy.cfg"
haproxy -W -db -f "$state/haproxy.cfg" >"$state/logs/haproxy.log" 2>&1 &
haproxy_pid=$!
pids+=("$haproxy_pid")
until curl -fs "http://127.0.0.1:$GATEWAY_PORT/healthz" >/dev/null; do
  kill -0 "$haproxy_pid" 2>/dev/null || { cat "$state/logs/haproxy.log" >&2; exit 1; }
  sleep 0.1
done

# The "Try" line below runs an example with the official client: make sure it is installed.
if [ ! -d "$root/e2e/node_modules/socket.io-client" ]; then
  say "installing the example client (npm ci in e2e/)"
  (cd "$root/e2e" && npm ci --no-audit --no-fund --silent) >"$state/logs/npm.log" 2>&1 \
    || say "npm ci failed (see $state/logs/npm.log): the Try line needs e2e/node_modules"
fi

token() { "$gateway" token --user "$1" --sid "$2" --ttl-secs 86400; }
cat <<INFO

Gateway cluster ready: http://localhost:$GATEWAY_PORT  ($REPLICAS replicas behind HAProxy, sticky by cookie)
  replicas:     public 127.0.0.1:$PUBLIC_BASE_PORT.., internal http://127.0.0.1:$INTERNAL_BASE_PORT.. (logs in $state/logs/)
  internal API: Authorization: Bearer $INTERNAL_API_TOKEN

Demo tokens (24 h):
  DRIVER_TOKEN=$(token 11111111-1111-4111-8111-111111111111 demo-driver-session)
  PASSENGER_TOKEN=$(token 22222222-2222-4222-8222-222222222222 demo-passenger-session)
  ADMIN_TOKEN=$(token 33333333-3333-4333-8333-333333333333 demo-admin-session)

Try:  GATEWAY_URL=http://localhost:$GATEWAY_PORT TOKEN=\$DRIVER_TOKEN node e2e/examples/driver.mjs
Revoke the driver's session:
  curl -X POST -H "Authorization: Bearer $INTERNAL_API_TOKEN" -H 'content-type: application/json' \\
    -d '{"userId":"11111111-1111-4111-8111-111111111111","reason":"logout"}' \\
    http://127.0.0.1:$INTERNAL_BASE_PORT/internal/v1/sessions/demo-driver-session/revoke
Ctrl-C stops everything this script started.
INFO

wait -n "${pids[@]}" || true
say "a process of the cluster exited; see $state/logs/"
exit 1
