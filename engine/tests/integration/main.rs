//! Integration tests of the `mlfusion` binary: real models (scikit-learn saved by MLflow,
//! loader-module models), real Parquet files, the real embedded interpreter.

mod cli;
mod delta;
mod envs;
mod errors;
mod fixtures;
mod hostile;
mod limits;
mod loading;
mod registry;
mod scale;
mod serve;
mod stores;
mod terminal;
mod workers;
