//! What the telemetry tests drive: real `gateway` processes, a fresh PostgreSQL database, a raw
//! Engine.IO v4 WebSocket client, and an OTLP/HTTP receiver that decodes what the gateway
//! exports. Every wait has a deadline and names what it waited for.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Bytes, extract::State, routing::post};
use futures::{SinkExt, StreamExt};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};
use prost::Message as _;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};
use uuid::Uuid;

pub const WAIT: Duration = Duration::from_secs(15);

pub fn pg_base() -> String {
    std::env::var("TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..10])
}

/// Polls `probe` until it yields a value; panics after `within`, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A fresh, migrated database; dropped at the end of the test.
pub struct Database {
    pub name: String,
    /// With a password the local trust auth ignores: it must never show anywhere.
    pub url: String,
    client: tokio_postgres::Client,
}

pub const DB_PASSWORD: &str = "db-password-must-not-leak";

impl Database {
    pub async fn create(gateway: &str) -> Self {
        let name = unique("gw_tel_");
        let base = pg_base();
        let url = format!(
            "{}/{name}",
            base.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1)
        );
        let migrated = Command::new(gateway)
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", &url)
            .output()
            .expect("run gateway migrate");
        assert!(
            migrated.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&migrated.stderr)
        );
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(connection);
        Self { name, url, client }
    }

    /// A user with one session: (user id, sid).
    pub async fn identity(&self, user_type: &str) -> (Uuid, String) {
        let user = Uuid::new_v4();
        let sid = unique("sid-");
        self.client
            .execute(
                "INSERT INTO users (id, user_type, status) VALUES ($1, $2, 'ACTIVE')",
                &[&user, &user_type],
            )
            .await
            .expect("insert user");
        self.client
            .execute(
                "INSERT INTO sessions (id, jti, user_id, session_type) VALUES ($1, $2, $3, 'mobile')",
                &[&Uuid::new_v4(), &sid, &user],
            )
            .await
            .expect("insert session");
        (user, sid)
    }

    pub async fn drop_now(self) {
        drop(self.client);
        let (admin, connection) =
            tokio_postgres::connect(&format!("{}/postgres", pg_base()), tokio_postgres::NoTls)
                .await
                .expect("connect as admin");
        tokio::spawn(connection);
        let _ = admin
            .execute(
                &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
                &[],
            )
            .await;
    }
}

pub fn token(secret: &str, user: Uuid, sid: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user.to_string(), "sid": sid, "iat": now, "exp": now + 600 }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

// ---------------------------------------------------------------------------------------------
// Gateway processes

/// One `gateway serve` process; killed when dropped. Every line it prints is kept.
pub struct Replica {
    pub node_id: String,
    pub public: SocketAddr,
    pub internal: SocketAddr,
    child: Child,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Replica {
    pub async fn start(node_id: &str, env: &[(&str, String)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("INTERNAL_BIND_ADDR", "127.0.0.1:0")
            .env("NODE_ID", node_id)
            .env("LOG_FORMAT", "json")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gateway");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect(child.stdout.take().expect("stdout"), output.clone());
        collect(child.stderr.take().expect("stderr"), output.clone());
        let bound = eventually(
            &format!("{node_id}: the 'listeners bound' log line"),
            WAIT,
            || {
                let output = output.clone();
                async move {
                    let lines = output.lock().expect("lock");
                    lines.iter().find_map(|line| {
                        let entry: Value = serde_json::from_str(line).ok()?;
                        (entry["message"] == "listeners bound").then_some(entry)
                    })
                }
            },
        )
        .await;
        let addr = |field: &str| {
            bound[field]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("{node_id}: no {field} address in {bound}"))
        };
        let replica = Self {
            node_id: node_id.to_owned(),
            public: addr("public"),
            internal: addr("internal"),
            child,
            output,
        };
        let readyz = format!("http://{}/readyz", replica.internal);
        eventually(&format!("{node_id}: /readyz 200"), WAIT, || {
            let readyz = readyz.clone();
            async move {
                let status = reqwest::get(&readyz).await.ok()?.status();
                status.is_success().then_some(())
            }
        })
        .await;
        replica
    }

    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.internal))
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Stops with SIGTERM (the drain flushes the last spans) and waits for the exit.
    pub fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + WAIT;
        while self.child.try_wait().ok().flatten().is_none() {
            assert!(
                Instant::now() < deadline,
                "{}: did not exit after SIGTERM",
                self.node_id
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The reader threads finish with the pipes.
        std::thread::sleep(Duration::from_millis(50));
        self.output.lock().expect("lock").clone()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            into.lock().expect("lock").push(line);
        }
    });
}

/// The value of the sample `name{labels}` in a Prometheus text exposition (labels in any order).
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        if metric != name {
            return None;
        }
        let rest = rest.strip_suffix('}')?;
        let found: HashMap<&str, &str> = rest
            .split(',')
            .filter(|kv| !kv.is_empty())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.trim_matches('"')))
            .collect();
        let matches =
            found.len() == labels.len() && labels.iter().all(|(k, v)| found.get(k) == Some(v));
        matches.then(|| value.parse().ok()).flatten()
    })
}

// ---------------------------------------------------------------------------------------------
// A raw Socket.IO client (Engine.IO v4 over WebSocket)

pub struct SocketIoClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    nsp: String,
    next_ack: u64,
}

/// How a CONNECT to a namespace ended.
#[derive(Debug)]
pub enum Connect {
    Hello(Box<SocketIoClient>),
    Refused(String),
}

impl SocketIoClient {
    pub async fn connect(addr: SocketAddr, nsp: &str, token: &str) -> Connect {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
            .await
            .expect("timed out opening the WebSocket")
            .expect("WebSocket");
        let mut client = Self {
            ws,
            nsp: nsp.to_owned(),
            next_ack: 1,
        };
        let open = client.next_text("the Engine.IO open packet").await;
        assert!(open.starts_with('0'), "open packet: {open}");
        let auth = json!({ "token": token });
        client.send(format!("40{nsp},{auth}")).await;
        let answer = client.next_text("the CONNECT answer").await;
        if let Some(error) = answer.strip_prefix(&format!("44{nsp},")) {
            let error: Value = serde_json::from_str(error).expect("connect_error json");
            return Connect::Refused(error["message"].as_str().unwrap_or_default().into());
        }
        assert!(
            answer.starts_with(&format!("40{nsp},")),
            "CONNECT: {answer}"
        );
        let hello = client.next_text("hello").await;
        assert!(hello.contains("\"hello\""), "hello: {hello}");
        Connect::Hello(Box::new(client))
    }

    async fn send(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send a packet");
    }

    /// The next Socket.IO text packet (answering Engine.IO pings on the way).
    async fn next_text(&mut self, what: &str) -> String {
        loop {
            let message = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .unwrap_or_else(|| panic!("connection closed waiting for {what}"))
                .unwrap_or_else(|e| panic!("WebSocket error waiting for {what}: {e}"));
            match message {
                Message::Text(text) if text.as_str() == "2" => self.send("3".into()).await,
                Message::Text(text) => return text.as_str().to_owned(),
                Message::Close(_) => panic!("closed waiting for {what}"),
                _ => {}
            }
        }
    }

    /// Emits `event` with an ack and returns the ack's first argument.
    pub async fn ask(&mut self, event: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = json!([event, payload]);
        self.send(format!("42{},{id}{packet}", self.nsp)).await;
        let prefix = format!("43{},{id}", self.nsp);
        loop {
            let text = self.next_text(&format!("the ack of {event}")).await;
            if let Some(args) = text.strip_prefix(&prefix) {
                let args: Value = serde_json::from_str(args).expect("ack json");
                return args[0].clone();
            }
        }
    }

    /// Waits for the server to disconnect this namespace (`41{nsp},`), skipping other packets.
    pub async fn disconnected(&mut self) {
        let packet = format!("41{},", self.nsp);
        loop {
            let text = self.next_text("the server's DISCONNECT").await;
            if text.starts_with(&packet) || text == format!("41{}", self.nsp) {
                return;
            }
        }
    }
}

impl std::fmt::Debug for SocketIoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SocketIoClient({})", self.nsp)
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP receiver

/// One exported span with its resource's attributes.
#[derive(Debug, Clone)]
pub struct Exported {
    pub resource: HashMap<String, String>,
    pub span: Span,
}

impl Exported {
    pub fn attr(&self, key: &str) -> Option<String> {
        attrs(&self.span.attributes).remove(key)
    }
    pub fn node(&self) -> Option<&str> {
        self.resource.get("service.instance.id").map(String::as_str)
    }
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }
    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }
    pub fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text_of(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text_of(&kv.value)))
        .collect()
}

/// An OTLP/HTTP endpoint (`POST /v1/traces`, protobuf) in the test process.
#[derive(Clone, Default)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Exported>>>,
    /// Every request's headers, to check what the exporter sends.
    pub headers: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    /// Serves on a free port; returns the base URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    pub fn spans(&self) -> Vec<Exported> {
        self.spans.lock().expect("lock").clone()
    }

    /// Waits until `pick` finds what it looks for among the spans received so far.
    pub async fn until<T>(&self, what: &str, pick: impl Fn(&[Exported]) -> Option<T>) -> T {
        eventually(what, WAIT, || {
            let found = pick(&self.spans());
            async move { found }
        })
        .await
    }
}

impl Receiver {
    /// Serves OTLP over gRPC on a free port; returns the endpoint URL.
    pub async fn start_grpc(&self) -> String {
        use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the gRPC receiver");
        let addr = listener.local_addr().expect("addr");
        let service = TraceServiceServer::new(self.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
        });
        format!("http://{addr}")
    }

    fn keep(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().expect("lock");
        for resource_spans in request.resource_spans {
            let resource = resource_spans
                .resource
                .map(|r| attrs(&r.attributes))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Exported {
                        resource: resource.clone(),
                        span,
                    });
                }
            }
        }
    }
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Receiver
{
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.headers
            .lock()
            .expect("lock")
            .push(format!("{:?}", request.metadata()));
        self.keep(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Vec<u8> {
    receiver
        .headers
        .lock()
        .expect("lock")
        .push(format!("{headers:?}"));
    let request = ExportTraceServiceRequest::decode(body).expect("an ExportTraceServiceRequest");
    receiver.keep(request);
    ExportTraceServiceResponse::default().encode_to_vec()
}
