//! The Flight service: `DoExchange` scores streams of batches; `ListFlights`,
//! `GetFlightInfo` and `GetSchema` describe the served models; `DoAction` offers
//! `health` and `models`. With a token configured, every call must carry
//! `authorization: Bearer <token>`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arrow::array::{RecordBatch, StructArray};
use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
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
use mlfusion_udf::enforce::build_input;
use serde_json::json;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

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

/// Serves `models` on `listener` until `shutdown` resolves. Messages of any size are
/// accepted, as Arrow's own Flight servers do (gRPC's default limit is 4 MiB: a
/// 65,536-row batch of eight float columns).
pub async fn serve(
    models: ServedModels,
    listener: TcpListener,
    access: Access,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let token = access.token.clone();
    // Sending is unlimited already; receiving is limited to 4 MiB unless raised.
    let service = FlightServiceServer::new(ModelFlightService::new(models, access.token))
        .max_decoding_message_size(usize::MAX);
    let check = move |request: Request<()>| authorize(token.as_deref(), request);
    // An answer's last segment is often small: without TCP_NODELAY, Nagle's algorithm
    // holds it back until the client's delayed ACK (~20 ms a batch on loopback).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = Server::builder();
    if let Some((cert, key)) = access.tls {
        builder =
            builder.tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))?;
    }
    builder
        .add_service(tonic::service::interceptor::InterceptedService::new(
            service, check,
        ))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
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
        return if given == token {
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
        Some(password) if password == token => Ok(request),
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
}

impl ModelFlightService {
    /// A service for `models`; `token` is what a successful handshake hands out.
    pub fn new(models: ServedModels, token: Option<String>) -> Self {
        Self {
            models: Arc::new(models),
            token,
        }
    }

    /// The model and scorer a command asks for (binding runs Python: off the async workers).
    async fn bind(&self, command: &Command) -> Result<(Arc<ServedModel>, Arc<Scorer>), Status> {
        let served = Arc::clone(self.models.get(&command.model)?);
        let (m, c) = (Arc::clone(&served), command.clone());
        let scorer = tokio::task::spawn_blocking(move || {
            m.scorer(c.result_type.as_deref(), c.params.as_ref())
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))??;
        Ok((served, scorer))
    }

    /// The `FlightInfo` of a command: its result schema and descriptor.
    async fn info(&self, descriptor: FlightDescriptor) -> Result<FlightInfo, Status> {
        let command = Command::parse(&descriptor.cmd)?;
        let (served, scorer) = self.bind(&command).await?;
        let mut metadata = describe(&served);
        metadata["result_type"] = json!(scorer.result_type().to_string());
        metadata["params"] = json!(scorer.params());
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

/// A served model as clients see it: name, URI, flavors and signature. `input_names`
/// (null unless every input is named) and `required_inputs` let a client make a
/// zero-argument call the way `spark_udf` does.
fn describe(served: &ServedModel) -> serde_json::Value {
    let model = served.model();
    let signature = &model.mlmodel().signature;
    let inputs = signature.inputs.as_ref();
    json!({
        "model": model.name(),
        "uri": model.uri(),
        "flavors": model.mlmodel().flavors.keys().collect::<Vec<_>>(),
        "inputs": inputs.map(ToString::to_string),
        "outputs": signature.outputs.as_ref().map(ToString::to_string),
        "input_names": inputs.filter(|i| i.has_names()).map(|i| i.names()),
        "required_inputs": inputs.map(|i| i.required_count()),
        "input_count": inputs.map(|i| i.len()),
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
    let inputs = model.mlmodel().signature.inputs.as_ref();
    let frame = build_input(model.name(), inputs, &args, batch.num_rows())
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
        for name in self.models.names() {
            let descriptor = FlightDescriptor::new_cmd(json!({ "model": name }).to_string());
            infos.push(self.info(descriptor).await);
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
                    let mut model = describe(served);
                    model["rows_scored"] = json!(served.metrics.rows.value());
                    model["batches_scored"] = json!(served.metrics.batches.value());
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
    /// batch is answered by one prediction batch of the same length, streaming.
    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let mut input = request.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("empty exchange: send a descriptor first"))?;
        let descriptor = first.flight_descriptor.clone().ok_or_else(|| {
            Status::invalid_argument("the first message of an exchange must carry a descriptor")
        })?;
        let command = Command::parse(&descriptor.cmd)?;
        let (served, scorer) = self.bind(&command).await?;
        let schema = result_schema(&scorer);
        // pyarrow sends the descriptor alone, then the schema; metadata-only messages
        // (empty header) carry no data either way.
        let flight_data = stream::once(async { Ok(first) })
            .chain(input)
            .try_filter(|data| std::future::ready(!data.data_header.is_empty()))
            .map_err(|status| FlightError::Tonic(Box::new(status)));
        let call = command.call;
        let out_schema = Arc::clone(&schema);
        let predictions =
            FlightRecordBatchStream::new_from_flight_data(flight_data).then(move |batch| {
                let (served, scorer, schema) = (
                    Arc::clone(&served),
                    Arc::clone(&scorer),
                    Arc::clone(&out_schema),
                );
                async move {
                    let batch = batch?;
                    tokio::task::spawn_blocking(move || {
                        score(&served, &scorer, &schema, call, batch)
                    })
                    .await
                    .map_err(|e| FlightError::ExternalError(Box::new(e)))?
                    .map_err(|status| FlightError::Tonic(Box::new(status)))
                }
            });
        // One answer message per input batch, however large (the encoder would otherwise
        // split answers over 2 MiB, and clients pair answers with requests).
        let output = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_max_flight_data_size(usize::MAX)
            .build(predictions)
            .map_err(Status::from);
        Ok(Response::new(output.boxed()))
    }
}

/// The location clients connect to, e.g. `grpc://127.0.0.1:8815`.
pub fn location(addr: SocketAddr, tls: bool) -> String {
    format!("{}://{addr}", if tls { "grpc+tls" } else { "grpc" })
}
