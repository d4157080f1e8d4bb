//! sqllogictest runner for SQL-visible behaviour (`tests/slt/*.slt`).
//!
//! Each file gets a fresh session with the test models of `testdata/models` registered
//! (see [`MODELS`]). `cargo test --test sqllogictests [-- FILTER] [--complete]`;
//! `--complete` rewrites the expected results in place (read the diff before committing).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use mlfusion_engine::args::SessionArgs;
use mlfusion_engine::registration::{ModelRegistration, register_models};
use mlfusion_engine::session::new_context;
use sqllogictest::{DBOutput, DefaultColumnType};

/// (SQL name, model directory under testdata/models, result type, params JSON).
const MODELS: &[(&str, &str, Option<&str>, Option<&str>)] = &[
    ("churn", "churn", None, None),
    ("churn_flag", "churn", None, Some(r#"{"threshold": 0.5}"#)),
    ("adder", "adder", None, None),
    ("adder_text", "adder", Some("string"), None),
    ("adder_arr", "adder", Some("array<double>"), None),
    (
        "labeler",
        "labeler",
        Some("label string, score double"),
        None,
    ),
    ("raiser", "raiser", None, None),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct ModelDb {
    ctx: SessionContext,
}

impl ModelDb {
    fn new(scratch: &Path) -> Result<Self, DataFusionError> {
        let settings = SessionArgs {
            batch_size: 8192,
            target_partitions: Some(2),
            quiet: true,
            model_cache: Some(scratch.join("model-cache")),
            // Models run in worker processes here (the conformance suite runs them in
            // process), so every error below also proves the workers report as the
            // embedded interpreter does.
            workers: Some(1),
            limits: Default::default(),
            envs: Default::default(),
        };
        let ctx = new_context(&settings).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let models: Vec<ModelRegistration> = MODELS
            .iter()
            .map(|(name, dir, rt, params)| ModelRegistration {
                name: (*name).to_owned(),
                uri: repo()
                    .join("testdata/models")
                    .join(dir)
                    .display()
                    .to_string(),
                result_type: rt.map(str::to_owned),
                params: params.map(|p| serde_json::from_str(p).expect("valid params JSON")),
                ..Default::default()
            })
            .collect();
        register_models(&ctx, &settings.model_loader(), &models)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(Self { ctx })
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for ModelDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() || is_statement(sql) {
            return Ok(DBOutput::StatementComplete(0));
        }
        let rows = format_rows(&batches)?;
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; schema.fields().len()],
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "mlfusion"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn is_statement(sql: &str) -> bool {
    let head = sql.trim_start().to_ascii_uppercase();
    ["CREATE", "DROP", "INSERT", "SET", "COPY"]
        .iter()
        .any(|k| head.starts_with(k))
}

fn format_rows(batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| {
                        let s = f.value(i).to_string();
                        if s.is_empty() {
                            "(empty)".to_owned()
                        } else {
                            s
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(rows)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let complete = args.iter().any(|a| a == "--complete");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    // Model URIs resolve against a tracking store of our own (an empty sqlite database),
    // never the developer's; set before Python starts, while this is the only thread.
    let scratch = tempfile::tempdir().expect("temp dir");
    let tracking = format!("sqlite:///{}", scratch.path().join("mlflow.db").display());
    #[allow(unsafe_code)]
    // SAFETY: no other thread exists yet.
    unsafe {
        std::env::set_var("MLFLOW_TRACKING_URI", tracking);
    }
    if let Err(e) = mlfusion_udf::start_python(None) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/slt"))
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter
                .as_deref()
                .is_none_or(|f| p.to_string_lossy().contains(f))
        })
        .collect();
    files.sort();
    let (mut passed, mut failed) = (0, 0);
    for file in &files {
        let name = file
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        let result = runtime.block_on(async {
            let mut runner = sqllogictest::Runner::new(|| async { ModelDb::new(scratch.path()) });
            if complete {
                runner
                    .update_test_file(
                        file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::default_column_validator,
                    )
                    .await
                    .map_err(|e| e.to_string())
            } else {
                runner
                    .run_file_async(file)
                    .await
                    .map_err(|e| e.display(true).to_string())
            }
        });
        match result {
            Ok(()) => {
                passed += 1;
                println!("slt {name} ... ok");
            }
            Err(e) => {
                failed += 1;
                println!("slt {name} ... FAILED\n{e}");
            }
        }
    }
    println!();
    println!("sqllogictests: {passed} passed, {failed} failed");
    if failed == 0 && passed > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
