//! The Flight service: `DoExchange` scores streams of batches; `ListFlights`,
//! `GetFlightInfo` and `GetSchema` describe the served models; `DoAction` offers
//! `health` and `models`. With a token configured, every call must carry
//! `authorization: Bearer <token>`.
//!
//! Every stream ends: with its answer, an error, [`Limits::stream_idle_timeout`] after
//! the client last sent or took a message, or when the server stops.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StructArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use mlfusion_udf::Scorer;
use mlfusion_udf::pyfunc::enforce::build_input;
use mlfusion_udf::python::interpreter::linked_version;
use mlfusion_udf::python::metrics::ModelLabel;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use crate::ipc::{Decoder, Encoder};
use crate::metrics::{StreamLabel, server_metrics};
use crate::models::{ServedModel, ServedModels};
use crate::protocol::{CallForm, Command};

/// Who may call the server and how it is reached.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token every call must carry (`authorization: Bearer <token>`, or a Basic
    /// header whose password is the token, as Flight's `Handshake` sends it).
    pub token: Option<String>,
    /// A PEM certificate chain and private key: serve TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
}

/// How long streams may idle and how long a stopping server waits for them.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A stream whose client neither sends nor takes a message for this long ends with
    /// `DEADLINE_EXCEEDED` (`--stream-idle-timeout`).
    pub stream_idle_timeout: Duration,
    /// On shutdown, open streams may finish for this long; then they end with
    /// `UNAVAILABLE` (`--shutdown-grace`).
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            stream_idle_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Batches of one stream scored at once: the next is decoded and scored while the last
/// answer is encoded and sent (memory: this many batches per stream).
const IN_FLIGHT: usize = 2;

/// The rows a client should send in one batch: a model call's fixed cost (frames,
/// `predict` dispatch) is spread over this many rows (`mlfusion query`'s batch size).
pub const BATCH_ROWS: usize = 65_536;

/// How long a stopping server waits for connections to close once it has ended their
/// streams.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// A Flight server set up on a listener (TLS configuration checked), not yet serving.
pub struct FlightServer {
    router: Router,
    incoming: TcpIncoming,
    location: String,
    stopping: watch::Sender<bool>,
    grace: Duration,
}

impl FlightServer {
    /// Sets up the server for `models` on `listener`; a bad TLS certificate or key fails
    /// here, before anything is announced. Messages of any size are accepted, as Arrow's
    /// own Flight servers do (gRPC's default limit is 4 MiB: a 65,536-row batch of eight
    /// float columns).
    pub fn new(
        models: impl Into<Arc<ServedModels>>,
        listener: TcpListener,
        access: Access,
        limits: Limits,
    ) -> Result<Self, tonic::transport::Error> {
        let local = listener.local_addr().ok();
        let tls = access.tls.is_some();
        let token = access.token.clone();
        let (stopping, stop) = watch::channel(false);
        let service = ModelFlightService::new(models, access.token)
            .with_limits(limits.stream_idle_timeout, stop);
        // Sending is unlimited already; receiving is limited to 4 MiB unless raised.
        let service = FlightServiceServer::new(service).max_decoding_message_size(usize::MAX);
        let check = move |request: Request<()>| authorize(token.as_deref(), request);
        // An answer's last segment is often small: without TCP_NODELAY, Nagle's algorithm
        // holds it back until the client's delayed ACK (~20 ms a batch on loopback).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let mut builder = Server::builder();
        if let Some((cert, key)) = access.tls {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
        }
        let router = builder.add_service(tonic::service::interceptor::InterceptedService::new(
            service, check,
        ));
        Ok(Self {
            router,
            incoming,
            location: local.map(|a| location(a, tls)).unwrap_or_default(),
            stopping,
            grace: limits.shutdown_grace,
        })
    }

    /// Where clients connect, e.g. `grpc://127.0.0.1:8815`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Serves until `shutdown` resolves; then accepts no new connections, lets open
    /// streams finish for the grace period, ends the rest with `UNAVAILABLE` ("the
    /// server is stopping") and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), tonic::transport::Error> {
        let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
        let server = self
            .router
            .serve_with_incoming_shutdown(self.incoming, async move {
                shutdown.await;
                let _ = signalled.send(());
            });
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => return result,
            _ = on_signal => {}
        }
        tokio::select! {
            result = &mut server => return result,
            () = tokio::time::sleep(self.grace) => {}
        }
        let _ = self.stopping.send(true);
        tokio::time::timeout(CLOSE_WAIT, server)
            .await
            .unwrap_or(Ok(()))
    }
}

/// Serves `models` on `listener` until `shutdown` resolves (see [`FlightServer`]).
pub async fn serve(
    models: impl Into<Arc<ServedModels>>,
    listener: TcpListener,
    access: Access,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    FlightServer::new(models, listener, access, Limits::default())?
        .run(shutdown)
        .await
}

/// `given == expected`, in time that does not depend on where they differ.
fn same_token(given: &str, expected: &str) -> bool {
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// Rejects a call without the token when one is configured.
fn authorize(token: Option<&str>, request: Request<()>) -> Result<Request<()>, Status> {
    let Some(token) = token else {
        return Ok(request);
    };
    let header = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "this server requires a token: send 'authorization: Bearer <token>'",
            )
        })?;
    if let Some(given) = header.strip_prefix("Bearer ") {
        return if same_token(given, token) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("wrong bearer token"))
        };
    }
    let basic_password = header
        .strip_prefix("Basic ")
        .and_then(|b| BASE64_STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|b| b.split_once(':').map(|(_, password)| password.to_owned()));
    match basic_password {
        Some(password) if same_token(&password, token) => Ok(request),
        Some(_) => Err(Status::unauthenticated("wrong token (basic auth password)")),
        None => Err(Status::unauthenticated(
            "unsupported authorization header: send 'Bearer <token>'",
        )),
    }
}

/// The Flight service over a fixed set of models.
#[derive(Debug, Clone)]
pub struct ModelFlightService {
    models: Arc<ServedModels>,
    token: Option<String>,
    idle_timeout: Duration,
    /// Turns true when the server ends its open streams.
    stopping: watch::Receiver<bool>,
}

impl ModelFlightService {
    /// A service for `models`; `token` is what a successful handshake hands out.
    pub fn new(models: impl Into<Arc<ServedModels>>, token: Option<String>) -> Self {
        Self {
            models: models.into(),
            token,
            idle_timeout: Limits::default().stream_idle_timeout,
            stopping: watch::channel(false).1,
        }
    }

    /// Streams idle for `idle_timeout` end; all end when `stopping` turns true.
    fn with_limits(mut self, idle_timeout: Duration, stopping: watch::Receiver<bool>) -> Self {
        self.idle_timeout = idle_timeout;
        self.stopping = stopping;
        self
    }

    /// The model and scorer a command asks for (binding runs Python: off the async workers).
    async fn bind(&self, command: &Command) -> Result<(Arc<ServedModel>, Arc<Scorer>), Status> {
        let served = self.models.get(&command.model)?;
        let (m, c) = (Arc::clone(&served), command.clone());
        let scorer = tokio::task::spawn_blocking(move || {
            m.model()
                .check_load_options(c.model_config.as_ref(), c.extra_env.as_ref())
                .map_err(|e| Status::failed_precondition(e.to_string()))?;
            m.scorer(c.result_type.as_deref(), c.params.as_ref(), c.on_error)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(bounded)?;
        Ok((served, scorer))
    }

    /// A served model as clients see it (see [`describe_model`]).
    fn describe(&self, served: &ServedModel) -> serde_json::Value {
        describe_model(served, self.models.refresh_error(served.model().name()))
    }

    /// The `FlightInfo` of a command: its result schema and descriptor.
    async fn info(&self, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let command = Command::parse(&descriptor.cmd)?;
        let (served, scorer) = self.bind(&command).await?;
        let mut metadata = self.describe(&served);
        metadata["result_type"] = json!(scorer.result_type().to_string());
        metadata["params"] = json!(scorer.params());
        metadata["on_error"] = json!(scorer.binding().on_error().as_str());
        FlightInfo::new()
            .try_with_schema(&result_schema(&scorer))
            .map_err(|e| Status::internal(e.to_string()))
            .map(|info| {
                info.with_descriptor(descriptor)
                    .with_endpoint(FlightEndpoint::new())
                    .with_app_metadata(metadata.to_string())
            })
    }
}

/// A served model as clients see it: name, URI and version, flavors and signature.
/// `input_names` (null unless every input is named) and `required_inputs` let a client
/// make a zero-argument call the way `spark_udf` does.
fn describe_model(served: &ServedModel, refresh_error: Option<String>) -> serde_json::Value {
    let model = served.model();
    let signature = &model.mlmodel().signature;
    let inputs = signature.inputs.as_ref();
    json!({
        "model": model.name(),
        "uri": served.uri(),
        "version": served.version(),
        "default_result_type_error": served.default_error(),
        "refresh_error": refresh_error,
        "flavors": model.mlmodel().flavors.keys().collect::<Vec<_>>(),
        "inputs": inputs.map(ToString::to_string),
        "outputs": signature.outputs.as_ref().map(ToString::to_string),
        "input_names": inputs.filter(|i| i.has_names()).map(|i| i.names()),
        "required_inputs": inputs.map(|i| i.required_count()),
        "input_count": inputs.map(|i| i.len()),
        "env": model.env().map_or("local", |e| e.key()),
        "batch_rows": BATCH_ROWS,
        "python": model
            .env()
            .map_or_else(linked_version, |e| e.python_version().to_owned()),
    })
}

/// The schema of every batch a scorer returns: one column, `prediction`.
fn result_schema(scorer: &Scorer) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "prediction",
        scorer.return_type().clone(),
        true,
    )]))
}

/// Scores one input batch; the result has exactly its rows, in order.
fn score(
    served: &ServedModel,
    scorer: &Scorer,
    schema: &SchemaRef,
    call: CallForm,
    batch: RecordBatch,
) -> Result<RecordBatch, Status> {
    let model = served.model();
    let args = match call {
        CallForm::Columns => batch.columns().to_vec(),
        CallForm::Struct => vec![Arc::new(StructArray::from(batch.clone())) as _],
    };
    let frame = build_input(
        model.name(),
        &model.mlmodel().signature,
        &args,
        batch.num_rows(),
    )
    .map_err(|e| Status::invalid_argument(e.to_string()))?;
    let prediction = scorer
        .predict(&frame, &served.metrics)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    RecordBatch::try_new(Arc::clone(schema), vec![prediction])
        .map_err(|e| Status::internal(format!("model '{}': {e}", model.name())))
}

#[tonic::async_trait]
impl FlightService for ModelFlightService {
    type HandshakeStream = BoxStream<'static, Result<HandshakeResponse, Status>>;
    type ListFlightsStream = BoxStream<'static, Result<FlightInfo, Status>>;
    type DoGetStream = BoxStream<'static, Result<FlightData, Status>>;
    type DoPutStream = BoxStream<'static, Result<PutResult, Status>>;
    type DoActionStream = BoxStream<'static, Result<arrow_flight::Result, Status>>;
    type ListActionsStream = BoxStream<'static, Result<ActionType, Status>>;
    type DoExchangeStream = BoxStream<'static, Result<FlightData, Status>>;

    /// The token is checked before any call; a handshake that got through (e.g.
    /// pyarrow's `authenticate_basic_token` with the token as password) answers with
    /// the bearer header the client sends from then on.
    async fn handshake(
        &self,
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        let ok = HandshakeResponse::default();
        let mut response = Response::new(stream::once(async { Ok(ok) }).boxed());
        if let Some(token) = &self.token {
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| Status::internal("the token is not a valid header value"))?;
            response.metadata_mut().insert("authorization", bearer);
        }
        Ok(response)
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let mut infos = Vec::new();
        for (name, served) in self.models.iter() {
            let descriptor = FlightDescriptor::new_cmd(json!({ "model": name }).to_string());
            infos.push(match served.default_error() {
                // Listed without a schema: calls must pass a result type.
                Some(_) => Ok(FlightInfo::new()
                    .with_descriptor(descriptor)
                    .with_app_metadata(self.describe(&served).to_string())),
                None => self.info(descriptor).await,
            });
        }
        Ok(Response::new(stream::iter(infos).boxed()))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.info(request.into_inner()).await.map(Response::new)
    }

    async fn poll_flight_info(
        &self,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        Err(Status::unimplemented("mlfusion scores through DoExchange"))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        let command = Command::parse(&request.into_inner().cmd)?;
        let (_, scorer) = self.bind(&command).await?;
        let schema = result_schema(&scorer);
        SchemaAsIpc::new(&schema, &IpcWriteOptions::default())
            .try_into()
            .map(Response::new)
            .map_err(|e: arrow::error::ArrowError| Status::internal(e.to_string()))
    }

    async fn do_get(
        &self,
        _request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        Err(Status::unimplemented("mlfusion scores through DoExchange"))
    }

    async fn do_put(
        &self,
        _request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        Err(Status::unimplemented("mlfusion scores through DoExchange"))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let body = match request.into_inner().r#type.as_str() {
            "health" => json!({ "status": "ok", "models": self.models.names() }),
            "models" => self
                .models
                .iter()
                .map(|(_, served)| {
                    let mut model = self.describe(&served);
                    model["rows_scored"] = json!(served.metrics.rows.value());
                    model["batches_scored"] = json!(served.metrics.batches.value());
                    model["bindings"] = json!(served.binding_count());
                    model
                })
                .collect(),
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown action '{other}' (actions: health, models)"
                )));
            }
        };
        let result = arrow_flight::Result::new(body.to_string());
        Ok(Response::new(stream::once(async { Ok(result) }).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let actions = [
            ("health", "server status and the served model names"),
            (
                "models",
                "the served models: uri, flavors, signature, rows scored",
            ),
        ]
        .map(|(t, d)| {
            Ok(ActionType {
                r#type: t.into(),
                description: d.into(),
            })
        });
        Ok(Response::new(stream::iter(actions).boxed()))
    }

    /// The first message carries the descriptor (and usually the schema); every input
    /// batch, of any length (none too), is answered by one prediction batch of the same
    /// length, streaming.
    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let mut input = request.into_inner();
        let first = tokio::time::timeout(self.idle_timeout, input.message())
            .await
            .map_err(|_| idle(self.idle_timeout))??
            .ok_or_else(|| Status::invalid_argument("empty exchange: send a descriptor first"))?;
        let descriptor = first.flight_descriptor.clone().ok_or_else(|| {
            Status::invalid_argument("the first message of an exchange must carry a descriptor")
        })?;
        let command = Command::parse(&descriptor.cmd)?;
        let (served, scorer) = self.bind(&command).await?;
        // One answer in the channel at a time and IN_FLIGHT batches being scored: input
        // is read only as answers are taken, so memory is bounded per stream.
        let (answers, out) = mpsc::channel(1);
        let exchange = Exchange {
            served,
            scorer,
            call: command.call,
            idle_timeout: self.idle_timeout,
            answers,
        };
        let stopping = self.stopping.clone();
        tokio::spawn(exchange.run(first, input, stopping));
        let out = stream::unfold(out, |mut out| async move {
            out.recv().await.map(|message| (message, out))
        });
        Ok(Response::new(out.boxed()))
    }
}

/// Status messages travel in HTTP/2 trailers, whose size clients limit (16 KiB by
/// default): a longer message, e.g. a model error echoing its input, is cut.
const MAX_STATUS_MESSAGE: usize = 8 << 10;

fn bounded(status: Status) -> Status {
    if status.message().len() <= MAX_STATUS_MESSAGE {
        return status;
    }
    let message = mlfusion_udf::limits::abbreviate(status.message(), MAX_STATUS_MESSAGE);
    Status::new(status.code(), message)
}

/// The status of a stream whose client went quiet.
fn idle(timeout: Duration) -> Status {
    Status::deadline_exceeded(format!(
        "the client sent or took nothing for {} s (the server's --stream-idle-timeout)",
        timeout.as_secs_f64()
    ))
}

/// One `DoExchange` stream being answered.
struct Exchange {
    served: Arc<ServedModel>,
    scorer: Arc<Scorer>,
    call: CallForm,
    idle_timeout: Duration,
    answers: mpsc::Sender<Result<FlightData, Status>>,
}

impl Exchange {
    /// Answers the stream until the client finishes it, goes away or idles, an error,
    /// or the server stops; an error is the stream's last message.
    async fn run(
        self,
        first: FlightData,
        input: Streaming<FlightData>,
        mut stopping: watch::Receiver<bool>,
    ) {
        let metrics = server_metrics();
        let model = self.served.model().name().to_owned();
        let open = metrics
            .streams_open
            .get_or_create(&ModelLabel::new(&model))
            .clone();
        open.inc();
        let answered = tokio::select! {
            result = self.answer(first, input) => result,
            _ = stopping.wait_for(|stop| *stop) => {
                Err(Status::unavailable("the server is stopping: this stream was cancelled"))
            }
        };
        open.dec();
        let code = answered
            .as_ref()
            .err()
            .map_or(tonic::Code::Ok, Status::code);
        metrics
            .streams
            .get_or_create(&StreamLabel {
                model,
                code: format!("{code:?}"),
            })
            .inc();
        if let Err(status) = answered {
            let status = bounded(status);
            let _ = self
                .answers
                .send_timeout(Err(status), self.idle_timeout)
                .await;
        }
    }

    async fn answer(&self, first: FlightData, input: Streaming<FlightData>) -> Result<(), Status> {
        let schema = result_schema(&self.scorer);
        let (mut encoder, schema_message) = Encoder::new(&schema);
        self.send(schema_message).await?;
        let idle_timeout = self.idle_timeout;
        let batches = stream::try_unfold(
            (Some(first), input, Decoder::default()),
            move |(mut next, mut input, mut decoder)| async move {
                loop {
                    let data = match next.take() {
                        Some(data) => data,
                        None => match tokio::time::timeout(idle_timeout, input.message()).await {
                            Err(_) => return Err(idle(idle_timeout)),
                            Ok(Ok(Some(data))) => data,
                            Ok(Ok(None)) => return Ok(None),
                            Ok(Err(status)) => return Err(status),
                        },
                    };
                    // pyarrow sends the descriptor alone, then the schema; metadata-only
                    // messages (empty header) carry no data either way.
                    if data.data_header.is_empty() {
                        continue;
                    }
                    if let Some(batch) = decoder.decode(&data)? {
                        return Ok(Some((batch, (None, input, decoder))));
                    }
                }
            },
        );
        // Batches are scored IN_FLIGHT at a time (the next is decoded and scored while
        // the last answer is encoded and sent), and answered in their order.
        let (served, scorer, call) = (&self.served, &self.scorer, self.call);
        let predictions = batches
            .map_ok(|batch| {
                let (served, scorer, out) =
                    (Arc::clone(served), Arc::clone(scorer), Arc::clone(&schema));
                tokio::task::spawn_blocking(move || score(&served, &scorer, &out, call, batch))
            })
            .map(|scoring| async move {
                scoring?
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
            })
            .buffered(IN_FLIGHT);
        let mut predictions = std::pin::pin!(predictions);
        while let Some(prediction) = predictions.next().await {
            for message in encoder.encode(&prediction?)? {
                self.send(message).await?;
            }
        }
        Ok(())
    }

    /// Hands one message to the client, waiting at most the idle timeout for it to
    /// make room; a client that has gone ends the stream.
    async fn send(&self, message: FlightData) -> Result<(), Status> {
        match self
            .answers
            .send_timeout(Ok(message), self.idle_timeout)
            .await
        {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(idle(self.idle_timeout)),
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                Err(Status::cancelled("the client went away"))
            }
        }
    }
}

/// The location clients connect to, e.g. `grpc://127.0.0.1:8815`.
pub fn location(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "grpc+tls" } else { "grpc" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole_in_constant_time() {
        assert!(same_token("s3cret", "s3cret"));
        for wrong in ["", "s3cre", "s3cret!", "S3cret", "x3cret"] {
            assert!(!same_token(wrong, "s3cret"), "{wrong}");
        }
    }

    #[test]
    fn long_status_messages_are_cut() {
        let long = Status::invalid_argument("x".repeat(100_000));
        let cut = bounded(long);
        assert_eq!(cut.code(), tonic::Code::InvalidArgument);
        assert!(cut.message().len() < MAX_STATUS_MESSAGE + 64);
        assert!(cut.message().ends_with("more bytes)"));
    }
}
