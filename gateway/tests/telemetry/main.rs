//! Telemetry as operators see it (`docs/spec/telemetry.md`): the spans real `gateway`
//! processes export to an OTLP receiver in this process, one trace per revocation across three
//! replicas, `/metrics` after a known sequence, and no secret in any span or log line at
//! `RUST_LOG=trace`. Needs PostgreSQL and Redis (`TEST_PG_URL`, `TEST_REDIS_URL`).

mod support;

use serde_json::json;
use support::{
    Connect, DB_PASSWORD, Database, Exported, Receiver, Replica, SocketIoClient, sample, token,
    unique,
};

const JWT_SECRET: &str = "jwt-secret-that-must-not-leak-0123456789";
const INTERNAL_TOKEN: &str = "internal-token-that-must-not-leak-9876";
const OTLP_HEADER_SECRET: &str = "otlp-api-key-that-must-not-leak";

const REVOKE_ROUTE: &str = "/internal/v1/sessions/{sid}/revoke";

/// A caller's trace: what an auth service would send in `traceparent`.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn env(receiver_url: &str, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("JWT_SECRET", JWT_SECRET.to_owned()),
        ("INTERNAL_API_TOKEN", INTERNAL_TOKEN.to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_url.to_owned()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            format!("x-api-key={OTLP_HEADER_SECRET}"),
        ),
        // Export promptly, so the test waits for spans, not for a 5 s batch.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ];
    env.extend_from_slice(extra);
    env
}

fn connected(outcome: Connect) -> SocketIoClient {
    match outcome {
        Connect::Hello(client) => *client,
        Connect::Refused(message) => panic!("handshake refused: {message}"),
    }
}

fn named<'a>(spans: &'a [Exported], name: &str) -> impl Iterator<Item = &'a Exported> {
    spans.iter().filter(move |s| s.span.name == name)
}

async fn revoke(replica: &Replica, sid: &str, user: uuid::Uuid) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!(
            "http://{}/internal/v1/sessions/{sid}/revoke",
            replica.internal
        ))
        .bearer_auth(INTERNAL_TOKEN)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({ "userId": user.to_string() }))
        .send()
        .await
        .expect("POST revoke")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_spans_and_metrics_on_a_single_replica() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let db = Database::create(env!("CARGO_BIN_EXE_gateway")).await;
    let node = unique("single-");
    let replica = Replica::start(&node, &env(&url, &[("DATABASE_URL", db.url.clone())])).await;

    let (driver, sid) = db.identity("DRIVER").await;
    let (other, other_sid) = db.identity("DRIVER").await;
    let mut first = connected(
        SocketIoClient::connect(replica.public, "/drivers", &token(JWT_SECRET, driver, &sid)).await,
    );
    let _second = connected(
        SocketIoClient::connect(
            replica.public,
            "/drivers",
            &token(JWT_SECRET, other, &other_sid),
        )
        .await,
    );
    let refused = SocketIoClient::connect(
        replica.public,
        "/drivers",
        &token("wrong-key", driver, &sid),
    )
    .await;
    assert!(
        matches!(&refused, Connect::Refused(m) if m == "Invalid token"),
        "{refused:?}"
    );
    let ack = first
        .ask("driver:status", json!({ "status": "ONLINE" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let answer = revoke(&replica, &sid, driver).await;
    assert_eq!(answer.status(), 200);
    first.disconnected().await;

    // The handshake span tree: token check and identity query are its children.
    let handshake = receiver
        .until("an ok socketio.handshake span with enduser.id", |spans| {
            named(spans, "socketio.handshake")
                .find(|s| s.attr("enduser.id").as_deref() == Some(&*driver.to_string()))
                .cloned()
        })
        .await;
    assert_eq!(
        handshake.span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
    );
    assert_eq!(
        handshake.attr("socketio.namespace").as_deref(),
        Some("/drivers")
    );
    assert_eq!(handshake.attr("gateway.outcome").as_deref(), Some("ok"));
    assert_eq!(handshake.attr("gateway.node").as_deref(), Some(&*node));
    assert_eq!(handshake.node(), Some(&*node));
    assert_eq!(
        handshake.resource.get("service.name").map(String::as_str),
        Some("gateway")
    );
    let children = receiver
        .until(
            "jwt.verify and the identity query under the handshake",
            |spans| {
                let child = |name: &str| {
                    spans
                        .iter()
                        .find(|s| s.span.name == name && s.parent_id() == handshake.span_id())
                        .cloned()
                };
                Some((child("jwt.verify")?, child("SELECT users")?))
            },
        )
        .await;
    let (verify, query) = children;
    assert_eq!(verify.trace_id(), handshake.trace_id());
    assert_eq!(verify.attr("gateway.outcome").as_deref(), Some("ok"));
    assert_eq!(query.attr("db.system.name").as_deref(), Some("postgresql"));
    assert_eq!(query.attr("db.operation.name").as_deref(), Some("SELECT"));
    assert_eq!(
        query.span.kind,
        opentelemetry_proto::tonic::trace::v1::span::SpanKind::Client as i32
    );

    // A refused handshake says why.
    let refusal = receiver
        .until("a refused socketio.handshake span", |spans| {
            named(spans, "socketio.handshake")
                .find(|s| s.attr("gateway.outcome").as_deref() == Some("invalid_token"))
                .cloned()
        })
        .await;
    assert_eq!(refusal.attr("enduser.id"), None, "no user for a bad token");

    // The event, and the internal request in the caller's trace.
    let event = receiver
        .until("a socketio.event span for driver:status", |spans| {
            named(spans, "driver:status").next().cloned()
        })
        .await;
    assert_eq!(
        event.attr("socketio.event").as_deref(),
        Some("driver:status")
    );
    assert_eq!(event.attr("gateway.outcome").as_deref(), Some("ok"));
    let request = receiver
        .until("the internal API request span", |spans| {
            spans
                .iter()
                .find(|s| s.attr("http.route").as_deref() == Some(REVOKE_ROUTE))
                .cloned()
        })
        .await;
    assert_eq!(request.trace_id(), CALLER_TRACE);
    assert_eq!(request.parent_id(), CALLER_SPAN);
    assert_eq!(request.attr("http.request.method").as_deref(), Some("POST"));
    assert_eq!(
        request.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let applied = receiver
        .until("the gateway.auth_event span", |spans| {
            named(spans, "gateway.auth_event").next().cloned()
        })
        .await;
    assert_eq!(applied.trace_id(), CALLER_TRACE);
    assert_eq!(
        applied.attr("gateway.auth_event.type").as_deref(),
        Some("session.revoked")
    );
    assert_eq!(applied.attr("gateway.disconnected").as_deref(), Some("1"));

    // The counters after two handshakes, one refusal, one event and one revocation.
    let metrics = replica.metrics().await;
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&metrics, name, labels).unwrap_or_else(|| panic!("{name}{labels:?} in\n{metrics}"))
    };
    let drivers = ("namespace", "drivers");
    assert_eq!(
        value("gateway_handshakes_total", &[drivers, ("outcome", "ok")]),
        2.0
    );
    assert_eq!(
        value(
            "gateway_handshakes_total",
            &[drivers, ("outcome", "invalid_token")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "gateway_events_total",
            &[drivers, ("event", "driver:status"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "gateway_auth_events_total",
            &[("type", "session.revoked"), ("source", "http")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "gateway_session_disconnects_total",
            &[("reason", "revoked")]
        ),
        1.0
    );
    assert_eq!(value("gateway_sockets", &[drivers]), 1.0, "one socket left");
    assert_eq!(value("gateway_revocation_apply_seconds_count", &[]), 1.0);
    assert_eq!(
        value(
            "gateway_internal_requests_total",
            &[("route", REVOKE_ROUTE), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(value("gateway_ready", &[]), 1.0);
    assert!(value("process_resident_memory_bytes", &[]) > 0.0);
    assert_eq!(
        sample(&metrics, "gateway_redis_up", &[]),
        None,
        "no Redis gauge on a single replica"
    );

    replica.stop();
    db.drop_now().await;
}

/// Three replicas on Redis at `RUST_LOG=trace`: a revocation sent to B is one trace with spans on
/// A, B and C; Redis calls are children of the event; and no secret shows anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_is_one_trace_across_replicas_and_nothing_leaks() {
    let receiver = Receiver::default();
    let url = receiver.start().await;
    let db = Database::create(env!("CARGO_BIN_EXE_gateway")).await;
    let prefix = unique("tel-");
    let settings = env(
        &url,
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", support::redis_url()),
            ("REDIS_PREFIX", prefix),
            ("RUST_LOG", "trace".to_owned()),
        ],
    );
    let a = Replica::start(&unique("a-"), &settings).await;
    let b = Replica::start(&unique("b-"), &settings).await;
    let c = Replica::start(&unique("c-"), &settings).await;

    let (driver, sid) = db.identity("DRIVER").await;
    let access = token(JWT_SECRET, driver, &sid);
    let mut on_a = connected(SocketIoClient::connect(a.public, "/drivers", &access).await);
    let mut on_c = connected(SocketIoClient::connect(c.public, "/drivers", &access).await);
    let ack = on_a
        .ask("driver:status", json!({ "status": "ONLINE" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let answer = revoke(&b, &sid, driver).await;
    assert_eq!(answer.status(), 200);
    on_a.disconnected().await;
    on_c.disconnected().await;

    let nodes = [&a, &b, &c].map(|r| r.node_id.clone());
    let applied = receiver
        .until("gateway.auth_event spans from A, B and C", |spans| {
            let per_node: Vec<Exported> = nodes
                .iter()
                .filter_map(|node| {
                    named(spans, "gateway.auth_event")
                        .find(|s| s.node() == Some(node))
                        .cloned()
                })
                .collect();
            (per_node.len() == 3).then_some(per_node)
        })
        .await;
    for span in &applied {
        assert_eq!(
            span.trace_id(),
            CALLER_TRACE,
            "{:?} in the caller's trace",
            span.node()
        );
        assert_eq!(
            span.span.kind,
            opentelemetry_proto::tonic::trace::v1::span::SpanKind::Consumer as i32
        );
    }
    let disconnected = |node: &str| {
        applied
            .iter()
            .find(|s| s.node() == Some(node))
            .and_then(|s| s.attr("gateway.disconnected"))
    };
    assert_eq!(disconnected(&a.node_id).as_deref(), Some("1"));
    assert_eq!(disconnected(&b.node_id).as_deref(), Some("0"));
    assert_eq!(disconnected(&c.node_id).as_deref(), Some("1"));
    let publish = receiver
        .until("B's http.server span for the revocation", |spans| {
            spans
                .iter()
                .find(|s| {
                    s.node() == Some(&b.node_id)
                        && s.attr("http.route").as_deref() == Some(REVOKE_ROUTE)
                })
                .cloned()
        })
        .await;
    assert_eq!(publish.trace_id(), CALLER_TRACE);

    // Redis calls on the event path are its children.
    let (event, script) = receiver
        .until("a Redis span under A's driver:status event", |spans| {
            let event = named(spans, "driver:status")
                .find(|s| s.node() == Some(&a.node_id))?
                .clone();
            let script = spans
                .iter()
                .find(|s| {
                    s.parent_id() == event.span_id()
                        && s.attr("db.system.name").as_deref() == Some("redis")
                })?
                .clone();
            Some((event, script))
        })
        .await;
    assert_eq!(script.trace_id(), event.trace_id());
    assert_eq!(script.attr("db.operation.name").as_deref(), Some("EVALSHA"));

    // So are a handshake's (the per-user rate before the database, the socket's registration
    // before hello); a Redis call outside any traced operation (sweeps, lease renewal) exports
    // nothing rather than a one-span trace.
    let scripts = receiver
        .until("Redis spans under an ok handshake on A", |spans| {
            let handshake = named(spans, "socketio.handshake").find(|s| {
                s.node() == Some(&a.node_id) && s.attr("gateway.outcome").as_deref() == Some("ok")
            })?;
            let scripts: Vec<String> = spans
                .iter()
                .filter(|s| {
                    s.parent_id() == handshake.span_id()
                        && s.attr("db.system.name").as_deref() == Some("redis")
                })
                .map(|s| s.span.name.clone())
                .collect();
            (scripts.len() >= 2).then_some(scripts)
        })
        .await;
    for expected in ["handshake_rate", "user_socket_opened"] {
        assert!(
            scripts.iter().any(|s| s == expected),
            "{expected} in {scripts:?}"
        );
    }
    let orphans: Vec<String> = receiver
        .spans()
        .iter()
        .filter(|s| {
            s.attr("db.system.name").as_deref() == Some("redis") && s.span.parent_span_id.is_empty()
        })
        .map(|s| s.span.name.clone())
        .collect();
    assert!(
        orphans.is_empty(),
        "Redis spans without a parent: {orphans:?}"
    );

    let metrics = a.metrics().await;
    assert_eq!(sample(&metrics, "gateway_redis_up", &[]), Some(1.0));
    // The adapter lost nothing, and says so (the vendored socketioxide-redis counts it).
    for reason in ["lagged", "buffer_full"] {
        assert_eq!(
            sample(
                &metrics,
                "gateway_adapter_messages_lost_total",
                &[("reason", reason)]
            ),
            Some(0.0),
            "{reason}"
        );
    }
    assert_eq!(
        sample(
            &metrics,
            "gateway_auth_events_total",
            &[("type", "session.revoked"), ("source", "redis")]
        ),
        Some(1.0)
    );

    // Nothing secret in what the replicas printed or exported. Their drain flushes the last spans.
    let mut printed = Vec::new();
    for replica in [a, b, c] {
        printed.extend(replica.stop());
    }
    assert!(
        printed.iter().any(|l| l.contains("\"level\":\"TRACE\"")),
        "the run really logged at trace"
    );
    let exported: Vec<String> = receiver
        .spans()
        .iter()
        .map(|s| format!("{:?} {:?}", s.span, s.resource))
        .collect();
    let in_logs_with_span_ids = printed
        .iter()
        .filter(|l| l.contains("\"trace_id\"") && l.contains("\"span_id\""))
        .count();
    assert!(
        in_logs_with_span_ids > 0,
        "log lines inside spans carry trace_id and span_id"
    );
    for secret in [
        JWT_SECRET,
        INTERNAL_TOKEN,
        OTLP_HEADER_SECRET,
        DB_PASSWORD,
        access.as_str(),
        // The token's signature alone is enough to misuse it.
        access.rsplit('.').next().unwrap_or_default(),
    ] {
        for (what, lines) in [("log", &printed), ("span", &exported)] {
            if let Some(line) = lines.iter().find(|l| l.contains(secret)) {
                panic!("a {what} line shows a secret: {line}");
            }
        }
    }
    let bearer = format!("Bearer {INTERNAL_TOKEN}");
    assert!(!printed.iter().any(|l| l.contains(&bearer)));
    db.drop_now().await;
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: the same spans reach a gRPC receiver, with the configured
/// service name and the exporter's headers as metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_grpc_too() {
    let receiver = Receiver::default();
    let url = receiver.start_grpc().await;
    let db = Database::create(env!("CARGO_BIN_EXE_gateway")).await;
    let node = unique("grpc-");
    let replica = Replica::start(
        &node,
        &env(
            &url,
            &[
                ("DATABASE_URL", db.url.clone()),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
                ("OTEL_SERVICE_NAME", "edge-gateway".to_owned()),
            ],
        ),
    )
    .await;
    let (passenger, sid) = db.identity("PASSENGER").await;
    let _socket = connected(
        SocketIoClient::connect(
            replica.public,
            "/passengers",
            &token(JWT_SECRET, passenger, &sid),
        )
        .await,
    );
    let handshake = receiver
        .until("a socketio.handshake span over gRPC", |spans| {
            named(spans, "socketio.handshake").next().cloned()
        })
        .await;
    assert_eq!(
        handshake.attr("socketio.namespace").as_deref(),
        Some("/passengers")
    );
    assert_eq!(
        handshake.resource.get("service.name").map(String::as_str),
        Some("edge-gateway")
    );
    assert_eq!(handshake.node(), Some(&*node));
    let metadata = receiver.headers.lock().expect("lock").join("\n");
    assert!(
        metadata.contains("x-api-key"),
        "the exporter's headers are sent: {metadata}"
    );
    replica.stop();
    db.drop_now().await;
}
