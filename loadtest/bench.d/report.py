"""Writes docs/benchmarks.md and its charts from loadtest/results/*.json (made by loadtest/bench)."""
import json
import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESULTS = ROOT / "loadtest" / "results"
DOCS = ROOT / "docs"
CHARTS = DOCS / "benchmarks"
CHARTS.mkdir(parents=True, exist_ok=True)

machine = json.loads((RESULTS / "machine.json").read_text())
g = json.loads((RESULTS / "gateway.json").read_text())
p = json.loads((RESULTS / "peer.json").read_text())


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "n/a"


def kb(r):
    return r["bytes_per_connection"] / 1024


rows = []


def row(metric, gv, pv, fmt, target, better_is_lower=False):
    rows.append((metric, fmt(gv), fmt(pv), ratio(gv, pv), target))


f0 = lambda v: f"{v:,.0f}"  # noqa: E731
f1 = lambda v: f"{v:,.1f}"  # noqa: E731
f2 = lambda v: f"{v:,.2f}"  # noqa: E731

def cpu_rate(r):
    """Operations per second of server CPU: the rate one core of the server alone could carry."""
    us = r["cpu_per_handshake"]["servers_us"]
    return 1e6 / us if us else 0


def capacity(r, field):
    """The highest sustained rate of a ramp (0 when even the first step was not sustained)."""
    return r["best"][field] if r["best"] else 0


SUSTAINED = "≥ 99% delivered, none lost or refused, p99 ≤ 250 ms"
row(f"idle memory per WebSocket connection, {g['idle10k']['connected']:,} connections (KB)", kb(g["idle10k"]), kb(p["idle10k"]), f1, "≤ 12 KB")
row(f"idle memory per connection, {g['idleMax']['connected']:,} / {p['idleMax']['connected']:,} connections (KB)", kb(g["idleMax"]), kb(p["idleMax"]), f1, "≤ 12 KB")
row("handshake throughput, full JWT + PostgreSQL auth (per second)", g["handshakeThroughput"]["handshakes_per_second"], p["handshakeThroughput"]["handshakes_per_second"], f0, "≥ 5x peer")
row("handshakes per second of server CPU (1 s ÷ server CPU per handshake)", cpu_rate(g["handshakeThroughput"]), cpu_rate(p["handshakeThroughput"]), f0, "")
hl_g, hl_p = g["handshakeLatency"]["handshake"], p["handshakeLatency"]["handshake"]
row(f"handshake latency p50 at {g['handshakeLatency']['target_rate']:.0f}/s (ms)", hl_g["p50_ms"], hl_p["p50_ms"], f2, "")
row(f"handshake latency p99 at {g['handshakeLatency']['target_rate']:.0f}/s (ms)", hl_g["p99_ms"], hl_p["p99_ms"], f2, "")
row(f"cross-replica fan-out capacity (msg/s delivered, {SUSTAINED})", capacity(g["fanoutCapacity"], "delivered_per_second"), capacity(p["fanoutCapacity"], "delivered_per_second"), f0, "≥ 5x peer")
fo_g, fo_p = g["fanout"], p["fanout"]
rate_label = f"{fo_g['emits_per_second'] * fo_g['rooms_per_emit']:,.0f} msg/s"
row(f"fan-out end-to-end p50 at a fixed {rate_label} (ms)", fo_g["latency"]["p50_ms"], fo_p["latency"]["p50_ms"], f2, "")
row(f"fan-out end-to-end p99 at a fixed {rate_label} (ms)", fo_g["latency"]["p99_ms"], fo_p["latency"]["p99_ms"], f2, "")
rv_g, rv_p = g["revocation"], p["revocation"]
row(f"revocation latency p50, {rv_g['connected']:,} sockets connected (ms)", rv_g["latency"]["p50_ms"], rv_p["latency"]["p50_ms"], f2, "")
row(f"revocation latency p99, {rv_g['connected']:,} sockets connected (ms)", rv_g["latency"]["p99_ms"], rv_p["latency"]["p99_ms"], f2, "≤ 0.5x peer")
lo_g, lo_p = g["locations"], p["locations"]
# The per-operation targets (performance issue): server CPU for the same work, from the fixed-rate runs.
row(f"server CPU per driver:location with ack at {lo_g['offered_per_second']:,.0f}/s, same work (µs)",
    lo_g["cpu_per_update"]["servers_us"], lo_p["cpu_per_update"]["servers_us"], f1, "≤ 0.2x peer")
row(f"server CPU per delivered fan-out message at {rate_label}, three replicas (µs)",
    fo_g["cpu_per_message"]["servers_us"], fo_p["cpu_per_message"]["servers_us"], f1, "≤ 0.2x peer")
row(f"driver:location capacity with acks, one replica (updates/s, {SUSTAINED})", capacity(g["locationCapacity"], "accepted_per_second"), capacity(p["locationCapacity"], "accepted_per_second"), f0, "≥ 5x peer")
row(f"driver:location ack p99 at a fixed {lo_g['offered_per_second']:,.0f}/s (ms)", lo_g["ack"]["p99_ms"], lo_p["ack"]["p99_ms"], f2, "")


def cpu_table(key, label):
    names = [("servers_us", "server under test"), ("postgres_us", "PostgreSQL"), ("redis_us", "Redis"),
             ("load_generator_us", "load generator"), ("total_us", "**total**")]
    cg, cp = g[key[0]][key[1]], p[key[0]][key[1]]
    lines = [f"| {label} | gateway | peer |", "|---|---|---|"]
    lines += [f"| {name} | {cg[k]:,.0f} | {cp[k]:,.0f} |" for k, name in names]
    return "\n".join(lines)


def ramp_table(key, field, p99):
    lines = ["| system | offered | achieved | p99 (ms) | sustained |", "|---|---|---|---|---|"]
    for label, r in (("gateway", g), ("peer", p)):
        for st in r[key]["steps"]:
            res = st["result"]
            offered = res.get("offered_per_second") or st["rate"] * res.get("rooms_per_emit", 1)
            lines.append(f"| {label} | {offered:,.0f} | {res[field]:,.0f} | {p99(res):,.1f} | {'yes' if st['ok'] else 'no'} |")
    return "\n".join(lines)


def losses(r):
    return {
        "idle10k errors": sum(r["idle10k"]["errors"].values()),
        "idleMax errors": sum(r["idleMax"]["errors"].values()),
        "handshake errors": sum(r["handshakeThroughput"]["errors"].values()) + sum(r["handshakeLatency"]["errors"].values()),
        "locations refused/unanswered": sum(r["locations"]["refused"].values()) + r["locations"]["unanswered"],
        "locations ticks skipped (4 unanswered: client waits)": r["locations"].get("skipped", 0),
        "fan-out lost": r["fanout"]["expected"] - r["fanout"]["delivered"],
        "revocations not seen": r["revocation"]["revoked"] - r["revocation"]["disconnects_seen"],
    }


def curve_chart(name, title, gsum, psum):
    plt.figure(figsize=(7, 4))
    for label, s in (("gateway", gsum), ("Node Socket.IO peer", psum)):
        xs = [pt[0] for pt in s["curve"]]
        ys = [max(pt[1], 0.001) for pt in s["curve"]]
        plt.plot(range(len(xs)), ys, marker="o", label=label)
        plt.xticks(range(len(xs)), [f"p{x:g}" for x in xs], rotation=45)
    plt.yscale("log")
    plt.ylabel("ms (log)")
    plt.title(title)
    plt.legend()
    plt.grid(True, which="both", alpha=0.3)
    plt.tight_layout()
    plt.savefig(CHARTS / f"{name}.png", dpi=100)
    plt.close()


curve_chart("handshake-latency", "Handshake latency at a fixed rate", hl_g, hl_p)
curve_chart("location-ack-latency", "driver:location ack latency", lo_g["ack"], lo_p["ack"])
curve_chart("fanout-latency", "Cross-replica fan-out, end to end", fo_g["latency"], fo_p["latency"])
curve_chart("revocation-latency", "Revocation: request on A to disconnect on B/C", rv_g["latency"], rv_p["latency"])

fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for ax, key, field, p99, title in (
    (axes[0], "locationCapacity", "accepted_per_second", lambda r: r["ack"]["p99_ms"], "driver:location, one replica"),
    (axes[1], "fanoutCapacity", "delivered_per_second", lambda r: r["latency"]["p99_ms"], "fan-out across three replicas"),
):
    for label, r in (("gateway", g), ("Node Socket.IO peer", p)):
        xs = [st["result"][field] for st in r[key]["steps"]]
        ys = [max(p99(st["result"]), 0.001) for st in r[key]["steps"]]
        ax.plot(xs, ys, marker="o", label=label)
    ax.axhline(250, color="red", linestyle="--", label="p99 250 ms")
    ax.set_yscale("log")
    ax.set_xlabel("achieved per second")
    ax.set_ylabel("p99 ms (log)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
fig.tight_layout()
fig.savefig(CHARTS / "capacity-ramps.png", dpi=100)
plt.close(fig)

plt.figure(figsize=(7, 4))
labels = [f"{g['idle10k']['connected']:,}", "max"]
width = 0.35
plt.bar([0 - width / 2, 1 - width / 2], [kb(g["idle10k"]), kb(g["idleMax"])], width, label="gateway")
plt.bar([0 + width / 2, 1 + width / 2], [kb(p["idle10k"]), kb(p["idleMax"])], width, label="Node Socket.IO peer")
plt.axhline(12, color="red", linestyle="--", label="target 12 KB")
plt.xticks([0, 1], labels)
plt.ylabel("KB of server RSS per idle connection")
plt.title("Memory per idle authenticated WebSocket connection")
plt.legend()
plt.tight_layout()
plt.savefig(CHARTS / "memory-per-connection.png", dpi=100)
plt.close()

table = "\n".join(f"| {m} | {a} | {b} | {r} | {t} |" for m, a, b, r, t in rows)
loss_g, loss_p = losses(g), losses(p)
loss_table = "\n".join(f"| {k} | {loss_g[k]:,} | {loss_p[k]:,} |" for k in loss_g)
# The scenarios beyond the side-by-side table (loadtest/bench runs each, after run.mjs): what
# each measures, and the table it printed in this run.
MORE = [
    ("many-connections", "100,000 connections on this machine",
     "Six cluster-mode replicas on one Redis, one loadgen process per replica over 127.0.0.x, every connection an "
     "idle authenticated WebSocket (each process here is capped at 20,000 open files)."),
    ("fanout-cluster", "Fan-out on a Redis Cluster",
     "Three release replicas, 2,000 passengers on two of them, pushes to 10 rooms each through the third at rising "
     "rates, on one Redis and on a local Redis Cluster of three masters."),
    ("churn", "Churn: passengers dropping every 5-15 s while pushes flow",
     "The official socket.io-client reconnecting by itself through three replicas: the gateway with recovery "
     "(`auth.offset`), with the stock client and no app code (its `pid`), and without, the peer, and the peer with "
     "Socket.IO's connection state recovery."),
    ("mobile", "Mobile networks: offers to drivers dropping every 5-15 s, and a Redis restart under pushes",
     "The official socket.io-client reconnecting by itself through three replicas, the gateway against the peer "
     "(Node's natural offer: `timeout(expiresInMs).emit(..., ack)` to the driver's room). Offers: every driver's app "
     "runs throughout and answers after 0.5-3 s, so every offer's driver is present; an offer seen again is answered "
     "at once (idempotent by `offerId`). Restart: passengers stay connected while Redis shuts down, saving its data, "
     "and comes back."),
    ("roll", "Rolling update: one replica drained under load",
     "Three replicas holding drivers, one sent SIGTERM as Kubernetes does; the old behaviour (every socket dropped "
     "at once) against the defaults (disconnects spread over `DRAIN_SPREAD_MS`)."),
    ("crash-storm", "A replica crashes: its clients reconnecting at the same instant",
     "Three replicas holding drivers, one sent SIGKILL; with handshake shedding (`MAX_PENDING_HANDSHAKES`) and "
     "without."),
    ("chaos", "Chaos: a replica killed, Redis restarted empty, PostgreSQL frozen, under load",
     "Driver apps under steady load through three faults in turn; every count's goal is zero."),
    ("limits-cost", "What the per-user limits cost a handshake",
     "One cluster-mode replica, the defaults (`MAX_SOCKETS_PER_USER=5`, `HANDSHAKE_RATE_PER_USER=10`) against both "
     "off, alternating over rounds."),
    ("revalidation-cost", "What session re-validation costs",
     "One replica holding sockets of distinct users, with a round every second against re-validation off."),
    ("tracing-cost", "What trace export costs",
     "One replica without an exporter and with one exporting every span to an OTLP/HTTP sink on this machine."),
]


def polling_table():
    """Polling connections' memory, gateway and peer, from the two idle-memory.mjs runs."""
    runs = {}
    for target in ("gateway", "peer"):
        f = RESULTS / f"idle-polling-{target}.json"
        if f.exists() and f.read_text().strip():
            runs[target] = json.loads(f.read_text().strip().splitlines()[-1])
    if len(runs) < 2:
        return "*(not run: `loadtest/bench` with `BENCH_MORE=0`)*"
    g_, p_ = runs["gateway"], runs["peer"]
    return "\n".join([
        f"| idle clients held on HTTP long-polling (official socket.io-client) | gateway | peer | gateway/peer |",
        "|---|---|---|---|",
        f"| server RSS per connection, {g_['connected']:,} / {p_['connected']:,} connected (KB) | "
        f"{g_['bytes_per_connection'] / 1024:,.1f} | {p_['bytes_per_connection'] / 1024:,.1f} | "
        f"{ratio(g_['bytes_per_connection'], p_['bytes_per_connection'])} |",
        "",
        "Command: `TARGET=gateway|peer TRANSPORT=polling node loadtest/bench.d/idle-memory.mjs`.",
    ])


def callgrind_table():
    """Instructions per operation inside the gateway, from the two callgrind.mjs runs."""
    rows_ = []
    for scenario, key, what in (("locations", "instructions_per_update", "per driver:location with ack (one replica)"),
                                ("fanout", "instructions_per_push", "per push to 10 rooms (three replicas)")):
        f = RESULTS / f"callgrind-{scenario}.json"
        if not (f.exists() and f.read_text().strip().startswith("{")):
            continue
        counts = json.loads(f.read_text())[key]
        for replica, c in counts.items():
            roles = {"A": "replica A, which takes the push", "B": "replica B, which delivers half of it"}
            role = "the replica" if scenario == "locations" else roles.get(replica, replica)
            rows_.append(f"| {what}: {role} | {c['per_operation']:,} |")
    if not rows_:
        return "*(not run: `loadtest/bench` with `BENCH_MORE=0`)*"
    return "\n".join(["| gateway instructions (valgrind callgrind, steady state) | per operation |", "|---|---|", *rows_, "",
                      "Command: `SCENARIO=locations|fanout node loadtest/bench.d/callgrind.mjs` (dumps in `/tmp/callgrind`, "
                      "read with `callgrind_annotate --inclusive=yes`)."])


def more_sections():
    parts = ["## Instructions per operation", "", callgrind_table(), "",
             "## Polling connections' memory", "", polling_table(), ""]
    for name, title, what in MORE:
        f = RESULTS / f"{name}.md"
        table = f.read_text().strip() if f.exists() and f.read_text().strip() else \
            "*(not run: `loadtest/bench` with `BENCH_MORE=0`)*"
        parts += [f"## {title}", "", what, "", table, ""]
    return "\n".join(parts)


duration = (RESULTS / "duration.txt").read_text().strip() if (RESULTS / "duration.txt").exists() else "unknown"
notes_path = DOCS / "benchmarks-notes.md"
notes = notes_path.read_text() if notes_path.exists() else ""

(DOCS / "benchmarks.md").write_text(f"""# Benchmarks: the gateway and Node's Socket.IO, same load, same machine

Generated by `loadtest/bench` ({machine['date']}); raw results in `loadtest/results/`. Do not edit by hand:
explanations live in `docs/benchmarks-notes.md` and are appended below.

**Machine**: {machine['cpu']}, {machine['cores']} cores, {machine['memoryGiB']} GiB, Linux {machine['kernel']},
file-descriptor hard limit {machine['fdHardLimit']:,} per process. Load generator, servers, PostgreSQL and Redis share
the same cores. **Versions**: {machine['rustc']}; gateway (socketioxide 0.18.9, socketioxide-redis 0.4.4, fred 10.1),
release build; peer: Node {machine['node']}, socket.io {machine['socketio']}, @socket.io/redis-adapter
{machine['redisAdapter']} (`loadtest/peers/node-socketio/`); {machine['redis']}; {machine['postgres']}.
**Command**: `{' '.join(machine['commands'])}` (scale {machine['scale']}).

**Load**: `loadgen` (the `loadtest/` crate), raw WebSocket Socket.IO clients spread over 127.0.0.1-16. Memory is the
server process' RSS growth while the connections are held idle (after 5 s to settle), divided by connections.
Handshakes go through the full auth: JWT, one PostgreSQL query, rooms, `hello`. Fan-out: pushes through replica A's
internal API to passengers connected to B and C (three replicas, Redis adapter). Revocation: sessions revoked through
A while 10k sockets are connected to B and C, timed from the request to the DISCONNECT packet at the client.
Locations: drivers on one replica send `driver:location` with acks. Latency rows are at a fixed rate both systems
sustain; capacity rows come from the ramps below.

| metric | gateway | peer | gateway/peer | target |
|---|---|---|---|---|
{table}

Errors and losses (every scenario counts them):

| | gateway | peer |
|---|---|---|
{loss_table}

![memory](benchmarks/memory-per-connection.png)
![handshake latency](benchmarks/handshake-latency.png)
![location ack latency](benchmarks/location-ack-latency.png)
![fan-out latency](benchmarks/fanout-latency.png)
![revocation latency](benchmarks/revocation-latency.png)
![capacity ramps](benchmarks/capacity-ramps.png)

Capacity ramps: rising rates, each a fresh 10-second run on the same servers, stopping at the first rate not
sustained ({SUSTAINED}).

*driver:location with acks, one replica (2,000 drivers):*

{ramp_table("locationCapacity", "accepted_per_second", lambda r: r["ack"]["p99_ms"])}

*Fan-out across three replicas (pushes to 10 rooms each, through A, to 2,000 passengers on B and C):*

{ramp_table("fanoutCapacity", "delivered_per_second", lambda r: r["latency"]["p99_ms"])}

Where the CPU goes: microseconds of CPU per operation of every process on the machine, from `/proc/<pid>/stat`
before and after the run (everything shares the same cores, so the total bounds the rate this machine can reach).

{cpu_table(("handshakeThroughput", "cpu_per_handshake"), "µs of CPU per handshake (throughput run)")}

{cpu_table(("locations", "cpu_per_update"), f"µs of CPU per driver:location at {lo_g['offered_per_second']:,.0f}/s")}

{cpu_table(("fanout", "cpu_per_message"), f"µs of CPU per fan-out message at {rate_label} (three replicas)")}

# More scenarios, from the same run

Each is one script under `loadtest/bench.d/` (the chaos run: `loadtest/chaos/run.mjs`), run by `loadtest/bench`
after the side-by-side table; its JSON is in `loadtest/results/`, and what it printed is below. The whole run took
{duration}.

{more_sections()}
{notes}
""")
