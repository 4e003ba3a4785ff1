//! Logging: one tracing subscriber, JSON (default) or pretty, filtered by `RUST_LOG`.
//! Trace export over OTLP is not built yet; `OTEL_EXPORTER_OTLP_ENDPOINT` is accepted and
//! reported at start-up (see README, "Configuration").

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, LogSettings};

/// Where log lines go: `serve` logs to stdout (containers), the one-shot subcommands to stderr
/// so their stdout carries only their result (`gateway token` prints a token).
#[derive(Debug, Clone, Copy)]
pub enum Output {
    Stdout,
    Stderr,
}

pub fn init(settings: &LogSettings, output: Output) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt().with_env_filter(filter).with_target(false);
    let result = match (settings.format, output) {
        (LogFormat::Json, Output::Stdout) => builder.json().flatten_event(true).try_init(),
        (LogFormat::Json, Output::Stderr) => builder
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .try_init(),
        (LogFormat::Pretty, Output::Stdout) => builder.try_init(),
        (LogFormat::Pretty, Output::Stderr) => builder.with_writer(std::io::stderr).try_init(),
    };
    // A second init (tests) keeps the first subscriber.
    drop(result);
}
