//! What a server counts beyond its models' calls (streams, the versions it serves,
//! refreshes), and the Prometheus text endpoint of `serve --metrics-addr` that shows it
//! with the process's model metrics ([`mlfusion_udf::process_metrics`]).

use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use mlfusion_udf::python::metrics::ModelLabel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A stream that ended: its model and gRPC status code (`Ok`, `InvalidArgument`, ...).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// The model the stream called.
    pub model: String,
    /// How it ended.
    pub code: String,
}

/// The version of a model a server serves.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// The model's name.
    pub model: String,
    /// The URI it was registered with (empty for a local path).
    pub uri: String,
    /// The URI it resolved to, e.g. `models:/churn/3` for `models:/churn@champion`.
    pub version: String,
}

/// A refresh that found a new version: `switched` to it, or `failed` to load it.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabel {
    /// The model's name.
    pub model: String,
    /// `switched` or `failed`.
    pub outcome: &'static str,
}

/// The server's counters (Prometheus names in the field docs, without `mlfusion_`).
#[derive(Debug, Default)]
pub struct ServerMetrics {
    /// `streams_open`: `DoExchange` streams running.
    pub streams_open: Family<ModelLabel, Gauge>,
    /// `streams`: streams that ended, by status code.
    pub streams: Family<StreamLabel, Counter>,
    /// `serving`: 1 for each model version new streams get.
    pub serving: Family<VersionLabel, Gauge>,
    /// `refreshes`: new versions found by `--refresh-interval`, by outcome.
    pub refreshes: Family<RefreshLabel, Counter>,
}

impl ServerMetrics {
    /// Marks `new` as the version its model serves, in place of `old`.
    pub(crate) fn serving(&self, new: &VersionLabel, old: Option<&VersionLabel>) {
        mlfusion_udf::process_metrics().declare(&new.model);
        let _ = self
            .streams_open
            .get_or_create(&ModelLabel::new(&new.model));
        if let Some(old) = old {
            self.serving.remove(old);
        }
        self.serving.get_or_create(new).set(1);
    }

    /// Counts a refresh of model `name` that ended with `outcome`.
    pub fn refreshed(&self, name: &str, outcome: &'static str) {
        self.refreshes
            .get_or_create(&RefreshLabel {
                model: name.to_owned(),
                outcome,
            })
            .inc();
    }
}

/// The server's metrics.
pub fn server_metrics() -> &'static ServerMetrics {
    static METRICS: LazyLock<ServerMetrics> = LazyLock::new(ServerMetrics::default);
    &METRICS
}

/// Every metric of the process: the models' and the server's, named `mlfusion_*`.
pub fn registry() -> Registry {
    let mut registry = Registry::with_prefix("mlfusion");
    mlfusion_udf::process_metrics().register(&mut registry);
    let server = server_metrics();
    registry.register(
        "streams_open",
        "DoExchange streams running",
        server.streams_open.clone(),
    );
    registry.register(
        "streams",
        "DoExchange streams that ended, by status code",
        server.streams.clone(),
    );
    registry.register(
        "serving",
        "1 for each model version new streams get",
        server.serving.clone(),
    );
    registry.register(
        "refreshes",
        "New versions found by --refresh-interval, by outcome",
        server.refreshes.clone(),
    );
    registry
}

/// How the metrics endpoint bounds its clients (`--metrics-max-connections`,
/// `--metrics-timeout`).
#[derive(Debug, Clone, Copy)]
pub struct EndpointLimits {
    /// Connections answered at once; more are closed as they arrive.
    pub max_connections: usize,
    /// A connection ends this long after it opened, answered or not.
    pub timeout: Duration,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        Self {
            max_connections: 16,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The most a request's head may take (hyper's minimum buffer; `GET /metrics` needs
/// a few hundred bytes).
const MAX_REQUEST_HEAD: usize = 8 << 10;

/// The OpenMetrics text format, which Prometheus scrapes.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Answers `GET /metrics` on `listener`, as long as the task runs.
pub async fn serve_metrics(listener: TcpListener, limits: EndpointLimits) {
    let registry = Arc::new(registry());
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // Out of file descriptors, say: let the condition pass.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            continue; // dropped: closed
        };
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let answer = service_fn(move |request| answer(Arc::clone(&registry), request));
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.timeout)
                .max_buf_size(MAX_REQUEST_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), answer);
            let _ = tokio::time::timeout(limits.timeout, connection).await;
            drop(permit);
        });
    }
}

async fn answer(
    registry: Arc<Registry>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let respond = |status: StatusCode, content_type: &str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        if let Ok(value) = content_type.parse() {
            response.headers_mut().insert(header::CONTENT_TYPE, value);
        }
        Ok(response)
    };
    if request.uri().path() != "/metrics" {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: the metrics are at /metrics\n".into(),
        );
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET /metrics\n".into(),
        );
    }
    let mut text = String::new();
    match encode(&mut text, &registry) {
        Ok(()) => respond(StatusCode::OK, CONTENT_TYPE, text),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            format!("cannot encode the metrics: {e}\n"),
        ),
    }
}
