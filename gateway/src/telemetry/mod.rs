//! Telemetry of one process: log lines, OpenTelemetry traces and Prometheus metrics
//! (`docs/spec/telemetry.md`).
//!
//! - [`logs`]: JSON lines with `trace_id`/`span_id` (or `LOG_FORMAT=pretty`), filtered by
//!   `RUST_LOG`.
//! - [`traces`]: OTLP export when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; W3C context across
//!   replicas.
//! - [`metrics`]: the `/metrics` families.
//!
//! The libraries under the gateway log raw packets at debug and trace (socketioxide prints auth
//! payloads, that is access tokens; HTTP clients print headers): their events above `info` are
//! never shown, whatever `RUST_LOG` says, so no secret reaches a log line.

pub mod logs;
pub mod metrics;
pub mod traces;

use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Level, Metadata, level_filters::LevelFilter, subscriber::Interest};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::Targets,
    fmt::{self, writer::BoxMakeWriter},
    layer::{Context, Filter, SubscriberExt},
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, LogSettings, TraceSettings};

/// Where log lines go: `serve` logs to stdout (containers), the one-shot subcommands to stderr
/// so their stdout carries only their result (`gateway token` prints a token).
#[derive(Debug, Clone, Copy)]
pub enum Output {
    Stdout,
    Stderr,
}

/// Libraries whose debug and trace output can carry tokens, headers or credentials.
const CAPPED_AT_INFO: &[&str] = &[
    "socketioxide",
    "engineioxide",
    "tungstenite",
    "tokio_tungstenite",
    "hyper",
    "h2",
    "reqwest",
    "tonic",
    "tower",
    "fred",
    "opentelemetry",
];

fn shown(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !CAPPED_AT_INFO.iter().any(|t| meta.target().starts_with(t))
}

/// Which events become log lines: `RUST_LOG`, minus the capped libraries' debug and trace. Spans
/// are never of interest to the log layer (lines name their span through the trace ids), so
/// without an exporter no layer wants a span and every span is disabled at its call site: free.
/// (A consequence: `RUST_LOG` directives that select by span, `[span{field}]=debug`, do not apply.)
struct LogLines(EnvFilter);

impl<S> Filter<S> for LogLines
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        !meta.is_span() && shown(meta) && Filter::enabled(&self.0, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if meta.is_span() || !shown(meta) {
            return Interest::never();
        }
        Filter::<S>::callsite_enabled(&self.0, meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }
}

/// Which callsites the trace exporter sees: the gateway's own spans, and no log events (log
/// lines already name their span; an event copied into a span is work and bytes per export).
/// Decided once per callsite, so nothing is checked again on each span or event.
struct GatewaySpans(Targets);

impl Default for GatewaySpans {
    fn default() -> Self {
        Self(Targets::new().with_target("gateway", Level::INFO))
    }
}

impl<S> Filter<S> for GatewaySpans
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        meta.is_span() && Filter::enabled(&self.0, meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if !meta.is_span() {
            return Interest::never();
        }
        Filter::<S>::callsite_enabled(&self.0, meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Filter::<S>::max_level_hint(&self.0)
    }
}

/// What must outlive the subscriber: the trace exporter, flushed at shutdown.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// How long the drain waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

impl Telemetry {
    /// Exports what is still batched (part of the drain); bounded by [`FLUSH_TIMEOUT`].
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match flushed {
            Ok(Ok(())) => {}
            Ok(Err(error)) => eprintln!("trace export not flushed: {error}"),
            Err(error) => eprintln!("trace export not flushed: {error}"),
        }
    }
}

/// Installs the process' subscriber. `traces` set: spans are exported over OTLP. A second call
/// (tests) keeps the first subscriber.
pub fn init(
    settings: &LogSettings,
    traces: Option<&TraceSettings>,
    output: Output,
) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = match output {
        Output::Stdout => BoxMakeWriter::new(std::io::stdout),
        Output::Stderr => BoxMakeWriter::new(std::io::stderr),
    };
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Json => fmt::layer()
            .event_format(logs::JsonLines {
                with_trace_ids: traces.is_some(),
            })
            .with_writer(writer)
            .with_filter(LogLines(filter))
            .boxed(),
        LogFormat::Pretty => fmt::layer()
            .with_target(false)
            .with_writer(writer)
            .with_filter(LogLines(filter))
            .boxed(),
    };
    let provider = traces.map(traces::provider).transpose()?;
    let spans = provider
        .as_ref()
        .map(|p| traces::layer(p).with_filter(GatewaySpans::default()));
    let _ = tracing_subscriber::registry()
        .with(lines)
        .with(spans)
        .try_init();
    Ok(Telemetry { provider })
}
