//! After SIGTERM's drain, nothing of the replica is left: no background task runs, and nothing
//! reaches Redis. A replica is started in this process (`Application::run` with a shutdown
//! future, as `main` gives it SIGTERM), and Redis' own `MONITOR` shows what it receives.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use gateway::{
    app::Application,
    config::{ServeSettings, Source},
    tasks::Tasks,
};
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn pg_url() -> String {
    let base = std::env::var("TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    format!("{base}/postgres")
}

fn settings(redis: Option<&str>, prefix: &str) -> ServeSettings {
    let pg = pg_url();
    let mut pairs = vec![
        ("BIND_ADDR", "127.0.0.1:0"),
        ("INTERNAL_BIND_ADDR", "127.0.0.1:0"),
        ("DATABASE_URL", pg.as_str()),
        ("JWT_SECRET", "drain-test-secret"),
        ("INTERNAL_API_TOKEN", "drain-test-internal"),
        ("REDIS_PREFIX", prefix),
        ("DRAIN_SPREAD_MS", "0"),
    ];
    if let Some(redis) = redis {
        pairs.push(("REDIS_URL", redis));
    }
    ServeSettings::load(&Source::from_pairs(pairs)).expect("valid settings")
}

/// `redis-cli MONITOR`: every command Redis runs, one line each, in the order it runs them.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Monitor {
    fn start() -> Self {
        let mut child = Command::new("redis-cli")
            .args(["-u", &redis_url(), "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli runs");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    /// The next line containing `needle`; panics after `within`, naming `what`.
    fn wait_for(&self, needle: &str, within: Duration, what: &str) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("timed out after {within:?} waiting for {what} in MONITOR"),
            }
        }
    }

    /// Every line in the next `window` that contains `needle`.
    fn during(&self, window: Duration, needle: &str) -> Vec<String> {
        let until = Instant::now() + window;
        let mut seen = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            if line.contains(needle) {
                seen.push(line);
            }
        }
        seen
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica running in this process, as `main` runs it, until [`Running::drain`].
struct Running {
    tasks: Tasks,
    stop: tokio::sync::oneshot::Sender<()>,
    run: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn start(app: Application) -> Self {
        let tasks = app.tasks();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(app.run(async {
            let _ = stopped.await;
        }));
        Self { tasks, stop, run }
    }

    /// SIGTERM's drain: it ends within 30 s, and no background task is left.
    async fn drain(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.run)
            .await
            .expect("the drain ends within 30 s")
            .expect("the replica task")
            .expect("the replica ran");
        assert_eq!(
            self.tasks.running(),
            0,
            "background tasks left after the drain"
        );
    }
}

/// Runs a command on Redis: the marker a MONITOR reader orders lines by.
fn redis_cli(args: &[&str]) {
    let status = Command::new("redis-cli")
        .args(["-u", &redis_url()])
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli runs");
    assert!(status.success(), "redis-cli {args:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_drain_no_task_runs_and_nothing_reaches_redis() {
    let prefix = format!("drain{}", &Uuid::new_v4().simple().to_string()[..8]);
    let monitor = Monitor::start();
    let app = Application::bind(settings(Some(&redis_url()), &prefix))
        .await
        .expect("listeners bound");
    let replica = Running::start(app);
    // Serving: it renews its lease (and sweeps presence) under its prefix every second.
    monitor.wait_for(
        &prefix,
        Duration::from_secs(20),
        "the replica's first write",
    );
    assert!(
        replica.tasks.running() > 0,
        "a serving replica has background tasks"
    );

    replica.drain().await;

    // Redis runs commands one at a time: what MONITOR shows after this marker came after the
    // drain. Three lease periods (renewal and sweeps are every second) of silence.
    let marker = format!("{prefix}-drained");
    redis_cli(&["echo", &marker]);
    monitor.wait_for(&marker, Duration::from_secs(10), "the after-drain marker");
    let after = monitor.during(Duration::from_secs(3), &prefix);
    assert!(
        after.is_empty(),
        "written to Redis after the drain: {after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_leaves_no_task_either() {
    let app = Application::bind(settings(None, "unused"))
        .await
        .expect("listeners bound");
    let internal = app.internal_addr().expect("internal address");
    let replica = Running::start(app);
    // Started: the internal API answers its endpoints (503 "starting" before).
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .post(format!("http://{internal}/internal/v1/emit"))
            .bearer_auth("drain-test-internal")
            .json(&serde_json::json!({"namespace": "/admin", "rooms": ["admin:all"], "event": "x", "data": {}}))
            .send()
            .await;
        if answer.is_ok_and(|a| a.status() != reqwest::StatusCode::SERVICE_UNAVAILABLE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the single replica did not start within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        replica.tasks.running() > 0,
        "a serving replica has background tasks"
    );
    replica.drain().await;
}
