//! # mlfusion-flight
//!
//! An Arrow Flight server that scores record batches with MLflow models loaded once in
//! the embedded interpreter. Clients stream batches through `DoExchange` and receive one
//! prediction batch per input batch, same length, same order (see [`protocol`]).
//!
//! - [`models`]: the served models, by name, each bound lazily to (result type, params)
//!   and replaceable by a new version while it serves;
//! - [`ipc`]: Arrow IPC in Flight messages, read with checks against hostile input;
//! - [`metrics`]: the server's counters and the Prometheus text endpoint;
//! - [`protocol`]: the JSON command of a `DoExchange` / `GetFlightInfo` descriptor;
//! - [`service`]: the [`FlightService`](arrow_flight::flight_service_server::FlightService).

pub mod ipc;
pub mod metrics;
pub mod models;
pub mod protocol;
pub mod service;

pub use models::ServedModels;
pub use service::{Access, FlightServer, Limits, ModelFlightService, location, serve};
