//! OpenTelemetry traces over OTLP, and W3C trace context carried across replicas.
//!
//! Export is configured only by the standard `OTEL_*` variables (the exporter and the SDK read
//! them: endpoint, headers, timeout, sampler, resource, batch settings); [`TraceSettings`]
//! decides whether to export at all and over which protocol. Without an endpoint no OpenTelemetry
//! layer is installed: spans are plain `tracing` spans, which cost next to nothing.
//!
//! Only the gateway's own spans are exported (target `gateway`): the libraries under it open
//! spans whose fields can carry raw packets.

use std::collections::HashMap;

use axum::http::HeaderMap;
use opentelemetry::{
    Context, KeyValue,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::SpanExporter;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpProtocol, TraceSettings};

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The tracer provider, with its batch exporter; flushed by [`super::Telemetry::shutdown`].
pub fn provider(settings: &TraceSettings) -> anyhow::Result<SdkTracerProvider> {
    let exporter = match settings.protocol {
        OtlpProtocol::HttpProtobuf => SpanExporter::builder().with_http().build()?,
        OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().build()?,
    };
    // `Resource::builder` reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    let mut resource = Resource::builder().with_attributes([
        KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("service.instance.id", settings.node_id.clone()),
    ]);
    if settings.default_service_name {
        resource = resource.with_service_name("gateway");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// The `tracing` layer that turns the gateway's spans into OpenTelemetry spans.
pub fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // No code location, thread, target or busy/idle attributes on every span: they are not in
    // the contract, and they cost clock reads on every poll and bytes on every export.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("gateway"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        // Nothing here reads OpenTelemetry's own current context (propagation goes through the
        // tracing span), so entering a span need not attach it: that was the layer's hottest
        // call, made on every poll of an instrumented future.
        .with_context_activation(false)
}

/// Awaits `fut` as the leaf span `span` (no span opens inside it): the span is created before
/// and closed after, but never entered. `.instrument(span)` would enter and exit it on every
/// poll, which is the exporter layer's most frequent work.
pub async fn leaf<F: Future>(span: Span, fut: F) -> F::Output {
    let output = fut.await;
    drop(span);
    output
}

/// A Redis call on a traced path: a client span named `name` (the script, or the command), a
/// child of the current span. Outside any (presence sweeps, lease renewal, bookkeeping after a
/// socket closed) there is none: a one-span trace per background call tells an operator
/// nothing and costs an export.
pub fn redis_span(operation: &'static str, name: &'static str) -> Span {
    // `current_span` only looks: no reference to the span is taken and released.
    if tracing::dispatcher::get_default(|d| d.current_span().id().is_none()) {
        return Span::none();
    }
    tracing::info_span!(
        "redis",
        otel.name = name,
        otel.kind = "client",
        db.system.name = "redis",
        db.operation.name = operation,
    )
}

/// The remote parent named by W3C headers (`traceparent`, `tracestate`), if any.
pub fn parent_from_headers(headers: &HeaderMap) -> Option<Context> {
    let field = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parent_from(field(TRACEPARENT), field(TRACESTATE))
}

/// The remote parent named by a `traceparent` (and `tracestate`) string; `None` when absent or
/// malformed.
pub fn parent_from(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<Context> {
    let traceparent = traceparent?;
    let mut carrier = HashMap::from([(TRACEPARENT.to_owned(), traceparent.to_owned())]);
    if let Some(state) = tracestate {
        carrier.insert(TRACESTATE.to_owned(), state.to_owned());
    }
    let cx = TraceContextPropagator::new().extract(&carrier);
    cx.span().span_context().is_valid().then_some(cx)
}

/// Makes `span` a child of `parent` (no effect without the OpenTelemetry layer).
pub fn set_parent(span: &Span, parent: Option<Context>) {
    if let Some(parent) = parent {
        let _ = span.set_parent(parent);
    }
}

/// The W3C context of `span`, to carry in a message: (`traceparent`, `tracestate`). `None`
/// when the span is not traced (no exporter, or not sampled).
pub fn context_of(span: &Span) -> Option<(String, Option<String>)> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    let traceparent = carrier.remove(TRACEPARENT)?;
    let tracestate = carrier.remove(TRACESTATE).filter(|s| !s.is_empty());
    Some((traceparent, tracestate))
}

/// The ids a log line inside `span` carries: (`trace_id`, `span_id`), hex as in the trace.
pub fn ids_of(span: &Span) -> Option<(String, String)> {
    let cx = span.context();
    let span_cx = cx.span().span_context().clone();
    span_cx.is_valid().then(|| {
        (
            span_cx.trace_id().to_string(),
            span_cx.span_id().to_string(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_traceparents_name_a_parent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cx = parent_from(Some(good), Some("k=v")).expect("valid");
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        for bad in [
            "",
            "junk",
            "00-0000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        ] {
            assert!(parent_from(Some(bad), None).is_none(), "{bad}");
        }
        assert!(parent_from(None, Some("k=v")).is_none());
    }
}
