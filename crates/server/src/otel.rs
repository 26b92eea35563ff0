//! OpenTelemetry export of the binary's spans (cargo feature `otel`,
//! `[tracing] otlp_endpoint`): a `tracing-opentelemetry` layer beside the
//! log, feeding an OTLP/HTTP (protobuf) exporter behind the SDK's batch
//! processor. What is exported is exactly what the log's spans carry —
//! `request` spans with `request_id`, method and path, `flow` spans with
//! the flow's name and the account's ids — so the no-secret rule of the
//! spans (see the README's Observability section) holds for traces too.
//!
//! The batch processor and the blocking HTTP client run on threads of their
//! own; building and shutting them down happens on a plain thread as well,
//! since the blocking client must not be made or dropped inside the tokio
//! runtime the binary runs in.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::registry::LookupSpan;

/// A running export: the layer to add to the subscriber, and the provider
/// to flush at exit.
pub struct OtelExport {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for OtelExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelExport").finish_non_exhaustive()
    }
}

impl OtelExport {
    /// Starts exporting to `traces_url` (from
    /// [`TracingSection::traces_url`](crate::config::TracingSection::traces_url))
    /// as `service_name`.
    pub fn start(traces_url: &str, service_name: &str) -> Result<Self, String> {
        let (url, name) = (traces_url.to_owned(), service_name.to_owned());
        std::thread::spawn(move || {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("OpenTelemetry exporter: {e}"))?;
            let provider = SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name(name)
                        .build(),
                )
                .build();
            Ok(Self { provider })
        })
        .join()
        .map_err(|_| "OpenTelemetry exporter: set-up panicked".to_owned())?
    }

    /// The layer that turns `tracing` spans into OpenTelemetry spans.
    pub fn layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    {
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("regstack"))
    }

    /// Sends the spans still queued and stops the exporter (at exit).
    pub fn shutdown(self) {
        let provider = self.provider;
        let done =
            std::thread::spawn(move || provider.shutdown_with_timeout(Duration::from_secs(5)))
                .join();
        if let Ok(Err(e)) = done {
            eprintln!("regstack: OpenTelemetry export at shutdown: {e}");
        }
    }
}
