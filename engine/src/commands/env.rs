//! `mlfusion env`: the cache of models' own environments (`--env-manager uv`) — list
//! it, build envs ahead of a job, collect the unused ones, remove one.

use std::sync::Arc;
use std::time::SystemTime;

use arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use mlfusion_udf::{EnvCache, EnvEntry, MlModel, ModelStore};

use crate::args::{EnvAction, EnvCommandArgs, model_cache_dir};
use crate::error::Result;

/// Runs the action; returns what to print.
pub async fn run(args: EnvCommandArgs) -> Result<String> {
    let envs = args.cache.env_cache();
    // Building and listing touch the disk and run uv: off the async workers.
    tokio::task::spawn_blocking(move || act(&envs, args))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

fn act(envs: &EnvCache, args: EnvCommandArgs) -> Result<String> {
    match args.action {
        EnvAction::List => listing(&envs.list()?),
        EnvAction::Build { uris, model_cache } => {
            let store = ModelStore::new(model_cache_dir(model_cache.as_deref()));
            let mut built = Vec::new();
            for uri in uris {
                let resolved = store.resolve(&uri, &uri)?;
                let model = MlModel::from_path(&resolved.dir)?;
                let env = envs.prepare(&uri, &uri, &model)?;
                built.push(format!(
                    "{}  Python {}  {}  {uri}",
                    env.key(),
                    env.python_version(),
                    if env.reused() { "cached" } else { "built" }
                ));
            }
            Ok(built.join("\n"))
        }
        EnvAction::Gc {
            older_than,
            max_size,
        } => {
            let removed = envs.gc(Some(older_than), max_size)?;
            let freed: u64 = removed.iter().map(|e| e.size).sum();
            let mut lines: Vec<String> = removed
                .iter()
                .map(|e| format!("removed {}", e.key))
                .collect();
            lines.push(format!(
                "{} env(s) removed, {} freed",
                removed.len(),
                human_size(freed)
            ));
            Ok(lines.join("\n"))
        }
        EnvAction::Rm { keys } => {
            for key in &keys {
                envs.remove(key)?;
            }
            Ok(keys
                .iter()
                .map(|k| format!("removed {k}"))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// The envs as a table: key, Python, size, last used, models.
fn listing(entries: &[EnvEntry]) -> Result<String> {
    let text = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
    let schema = Arc::new(Schema::new(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("python", DataType::Utf8, false),
        Field::new("size_bytes", DataType::UInt64, false),
        Field::new("size", DataType::Utf8, false),
        Field::new("last_used", DataType::Utf8, false),
        Field::new("models", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            text(entries.iter().map(|e| e.key.clone()).collect()),
            text(entries.iter().map(|e| e.python.clone()).collect()),
            Arc::new(UInt64Array::from_iter_values(
                entries.iter().map(|e| e.size),
            )),
            text(entries.iter().map(|e| human_size(e.size)).collect()),
            text(entries.iter().map(|e| ago(e.last_used)).collect()),
            text(entries.iter().map(|e| e.models.join(", ")).collect()),
        ],
    )
    .map_err(mlfusion_udf::Error::from)?;
    let table = pretty_format_batches(&[batch]).map_err(mlfusion_udf::Error::from)?;
    Ok(format!(
        "{table}\n{} env(s), {} in all",
        entries.len(),
        human_size(entries.iter().map(|e| e.size).sum())
    ))
}

fn human_size(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// `5 min ago`, `3 h ago`, `2 days ago`.
fn ago(when: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(when)
        .unwrap_or_default()
        .as_secs();
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} days ago", secs / 86400),
    }
}
