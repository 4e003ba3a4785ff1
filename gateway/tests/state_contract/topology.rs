//! Where the engines under test keep their state: in memory, on the standalone Redis the suite
//! uses (`TEST_REDIS_URL`, default 127.0.0.1:6379), or on a Redis Cluster of three masters this
//! binary starts from Debian's `redis-server` and `redis-cli --cluster create`.

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use fred::{
    clients::Client,
    interfaces::ClientLike,
    prelude::{Builder, Config},
    types::RespVersion,
};
use gateway::{
    state::{StateEngine, StateSettings, memory::MemoryState, redis::RedisState},
    tasks::Tasks,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    Memory,
    Redis,
    Cluster,
}

pub fn settings(node: &str) -> StateSettings {
    StateSettings {
        node_id: node.to_owned(),
        location_rate_per_s: 3,
        presence_grace: Duration::from_millis(300),
        node_ttl: Duration::from_millis(1_000),
        trip_ttl: Duration::from_secs(60),
        location_stream_maxlen: 1_000,
    }
}

/// One test's state store: engines made from it share state, as replicas of one cluster do.
pub struct World {
    pub topology: Topology,
    pub prefix: String,
    pub client: Option<Client>,
    memory: OnceLock<Arc<MemoryState>>,
}

impl World {
    pub async fn new(topology: Topology) -> Self {
        let prefix = format!("contract-{}", uuid::Uuid::new_v4().simple());
        let client = match topology {
            Topology::Memory => None,
            Topology::Redis => Some(
                connect(
                    &std::env::var("TEST_REDIS_URL")
                        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
                )
                .await,
            ),
            Topology::Cluster => {
                let client = connect(cluster_url()).await;
                assert!(client.is_clustered(), "a clustered client");
                Some(client)
            }
        };
        Self {
            topology,
            prefix,
            client,
            memory: OnceLock::new(),
        }
    }

    /// An engine as replica `node` holds it (with memory: the one replica there is).
    pub fn engine(&self, node: &str) -> Arc<dyn StateEngine> {
        match &self.client {
            None => self
                .memory
                .get_or_init(|| Arc::new(MemoryState::new(settings(node))))
                .clone(),
            Some(client) => Arc::new(RedisState::new(
                client.clone(),
                &self.prefix,
                settings(node),
                &Tasks::new(),
            )),
        }
    }

    pub fn shared(&self) -> bool {
        self.topology != Topology::Memory
    }
}

async fn connect(url: &str) -> Client {
    let mut config = Config::from_url(url).expect("a Redis URL");
    config.version = RespVersion::RESP3;
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(5))
        .build()
        .expect("a client");
    tokio::time::timeout(Duration::from_secs(10), client.init())
        .await
        .unwrap_or_else(|_| panic!("connecting to Redis at {url} took over 10 s"))
        .expect("Redis reachable");
    client
}

/// The cluster URL, starting the cluster the first time.
fn cluster_url() -> &'static str {
    static CLUSTER: OnceLock<(LocalCluster, String)> = OnceLock::new();
    let (_, url) = CLUSTER.get_or_init(|| {
        let cluster = LocalCluster::start(3);
        let url = cluster.url();
        (cluster, url)
    });
    url
}

/// Redis Cluster processes that end when this test binary does.
pub struct LocalCluster {
    pub ports: Vec<u16>,
    /// The servers, then their watchdog.
    _processes: Vec<Child>,
}

impl LocalCluster {
    pub fn start(masters: usize) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "gateway-contract-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let ports: Vec<u16> = (0..masters).map(|_| free_port_pair()).collect();
        let mut processes = Vec::new();
        for port in &ports {
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                    "--cluster-node-timeout",
                    "2000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                ])
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join(format!("{port}.log")))
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (Debian's redis-server package) runs");
            processes.push(child);
        }
        let pids: Vec<String> = processes.iter().map(|c| c.id().to_string()).collect();
        processes.push(watchdog(&pids));
        for port in &ports {
            wait_for(&format!("redis-server on {port} to answer PING"), || {
                cli(*port, &["PING"]).is_some_and(|out| out.trim() == "PONG")
            });
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli runs");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        for port in &ports {
            wait_for(&format!("the cluster state to be ok on {port}"), || {
                cli(*port, &["CLUSTER", "INFO"]).is_some_and(|out| out.contains("cluster_state:ok"))
            });
        }
        Self {
            ports,
            _processes: processes,
        }
    }

    pub fn url(&self) -> String {
        let mut url = format!("redis-cluster://127.0.0.1:{}", self.ports[0]);
        for (i, port) in self.ports.iter().enumerate().skip(1) {
            url.push(if i == 1 { '?' } else { '&' });
            url.push_str(&format!("node=127.0.0.1:{port}"));
        }
        url
    }
}

fn cli(port: u16, args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A port whose cluster bus port (+10000) is free too.
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("addr").port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// Kills the servers once this process is gone (tests end without running destructors of
/// statics).
fn watchdog(pids: &[String]) -> Child {
    let me = std::process::id();
    let script = format!(
        "while kill -0 {me} 2>/dev/null; do sleep 0.5; done; kill -9 {} 2>/dev/null",
        pids.join(" ")
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs")
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "waited 20 s for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
