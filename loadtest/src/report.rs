//! Latency histograms (HDR, microseconds) and their JSON form.

use hdrhistogram::Histogram;
use serde::Serialize;

pub struct Latency(Histogram<u64>);

impl Default for Latency {
    fn default() -> Self {
        // 1 µs .. 60 s, 3 significant digits.
        Self(
            Histogram::new_with_bounds(1, 60_000_000, 3)
                .unwrap_or_else(|_| Histogram::new(3).expect("histogram")),
        )
    }
}

#[derive(Debug, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// (percentile, ms) points for charts.
    pub curve: Vec<(f64, f64)>,
}

impl Latency {
    pub fn record(&mut self, micros: u64) {
        let _ = self.0.record(micros.max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        let curve = [
            0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
        ]
        .iter()
        .map(|p| (*p, ms(p / 100.0)))
        .collect();
        LatencySummary {
            count: self.0.len(),
            mean_ms: self.0.mean() / 1000.0,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
            curve,
        }
    }
}

/// Resident memory of a process, in KiB (Linux `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) used so far by a process, in milliseconds, from `/proc/<pid>/stat`
/// (counted in USER_HZ ticks, 100 a second on Linux).
fn cpu_ms(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) * 10.0)
}

/// CPU time of every process with this command name (all PostgreSQL backends, say).
fn cpu_ms_named(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim_end() == name).then(|| cpu_ms(&pid)).flatten()
        })
        .sum()
}

/// Where the machine's CPU went during a run, per operation, in microseconds: the servers
/// under test, PostgreSQL, Redis and this load generator (all share the same cores).
#[derive(Debug, Serialize)]
pub struct CpuPerOperation {
    pub servers_us: f64,
    pub postgres_us: f64,
    pub redis_us: f64,
    pub load_generator_us: f64,
    pub total_us: f64,
}

#[derive(Clone, Copy)]
struct CpuSample {
    servers: f64,
    postgres: f64,
    redis: f64,
    load_generator: f64,
}

/// Samples CPU time at the start of a run; [`CpuMeter::per_operation`] divides what was used since.
pub struct CpuMeter {
    server_pids: Vec<u32>,
    start: CpuSample,
}

impl CpuMeter {
    pub fn start(server_pids: &[u32]) -> Self {
        let server_pids = server_pids.to_vec();
        let start = Self::sample(&server_pids);
        Self { server_pids, start }
    }

    fn sample(server_pids: &[u32]) -> CpuSample {
        CpuSample {
            servers: server_pids
                .iter()
                .filter_map(|pid| cpu_ms(&pid.to_string()))
                .sum(),
            postgres: cpu_ms_named("postgres"),
            redis: cpu_ms_named("redis-server"),
            load_generator: cpu_ms("self").unwrap_or(0.0),
        }
    }

    pub fn per_operation(&self, operations: u64) -> CpuPerOperation {
        let end = Self::sample(&self.server_pids);
        let per = |end: f64, start: f64| (end - start).max(0.0) * 1000.0 / operations.max(1) as f64;
        let servers_us = per(end.servers, self.start.servers);
        let postgres_us = per(end.postgres, self.start.postgres);
        let redis_us = per(end.redis, self.start.redis);
        let load_generator_us = per(end.load_generator, self.start.load_generator);
        CpuPerOperation {
            servers_us,
            postgres_us,
            redis_us,
            load_generator_us,
            total_us: servers_us + postgres_us + redis_us + load_generator_us,
        }
    }
}
