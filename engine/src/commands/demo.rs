//! `mlfusion demo`: the main job on an embedded default. Writes the bundled example model
//! and a generated customers table (once), scores it with SQL and reports the result.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use crate::args::DemoArgs;
use crate::error::{Error, Result};
use crate::output::{Format, display_path, render, write_stream};
use crate::progress;
use crate::registration::{ModelRegistration, load_models};
use crate::session::{execute, new_context};
use crate::tables::register_table;

/// The bundled model: (path inside the model directory, contents).
const MODEL_FILES: [(&str, &str); 4] = [
    (
        "MLmodel",
        include_str!("../../../testdata/models/churn/MLmodel"),
    ),
    (
        "code/churn_model.py",
        include_str!("../../../testdata/models/churn/code/churn_model.py"),
    ),
    (
        "data/weights.json",
        include_str!("../../../testdata/models/churn/data/weights.json"),
    ),
    (
        "requirements.txt",
        include_str!("../../../testdata/models/churn/requirements.txt"),
    ),
];

/// The scoring query the demo runs.
pub const DEMO_SQL: &str = "SELECT id, plan, churn(tenure_months, monthly_charges, support_calls) AS churn_probability FROM customers";

const ROWS_PER_BATCH: usize = 65_536;

/// Runs the demo; returns the report to print.
pub async fn run(args: DemoArgs) -> Result<String> {
    let dir = &args.dir;
    let io = |source| Error::Demo {
        path: dir.clone(),
        source,
    };
    let model_dir = dir.join("churn-model");
    for (rel, text) in MODEL_FILES {
        let path = model_dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("files are inside the model dir"))
            .map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
    }
    let input = dir.join("customers.parquet");
    if !input.exists() {
        write_customers(&input, args.rows)?;
    }
    let output = dir.join("scored.parquet");

    let ctx = new_context(&args.session)?;
    register_table(&ctx, "customers", &input.display().to_string()).await?;
    let model = ModelRegistration {
        name: "churn".into(),
        uri: model_dir.display().to_string(),
        ..Default::default()
    };
    load_models(&ctx, &args.session.model_loader(), vec![model]).await?;
    let started = std::time::Instant::now();
    let plan = ctx.state().create_logical_plan(DEMO_SQL).await?;
    let stream = execute(&ctx, plan, progress::wanted(args.session.quiet)).await?;
    let written = write_stream(stream, &output, None).await?;
    let secs = started.elapsed().as_secs_f64();

    register_table(&ctx, "scored", &output.display().to_string()).await?;
    let summary = ctx
        .sql("SELECT plan, count(*) AS customers, round(avg(churn_probability), 4) AS avg_churn_probability FROM scored GROUP BY plan ORDER BY plan")
        .await?
        .execute_stream()
        .await?;
    let summary = render(summary, Format::Table).await?;
    Ok(format!(
        "model: {}\ninput: {}\nquery: {DEMO_SQL}\nscored {} rows in {secs:.2}s ({:.0} rows/s)\noutput: {}\n{summary}",
        display_path(&model_dir).display(),
        display_path(&input).display(),
        written.rows,
        written.rows as f64 / secs.max(1e-9),
        display_path(&output).display(),
    ))
}

/// A deterministic customers table: id, plan, tenure_months, monthly_charges, support_calls.
fn write_customers(path: &Path, rows: usize) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("plan", DataType::Utf8, false),
        Field::new("tenure_months", DataType::Int64, false),
        Field::new("monthly_charges", DataType::Float64, false),
        Field::new("support_calls", DataType::Int64, false),
    ]));
    let file = std::fs::File::create(path).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let encode = |e: &dyn std::fmt::Display| Error::Encode {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut writer =
        ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(|e| encode(&e))?;
    let mut rng = SplitMix64(0x5eed);
    let plans = ["basic", "plus", "premium"];
    let mut start = 0;
    while start < rows {
        let n = ROWS_PER_BATCH.min(rows - start);
        let ids: Vec<i64> = (start..start + n).map(|i| i as i64).collect();
        let plan: Vec<&str> = (0..n).map(|_| plans[(rng.next() % 3) as usize]).collect();
        let tenure: Vec<i64> = (0..n).map(|_| (rng.next() % 73) as i64).collect();
        let charges: Vec<f64> = (0..n)
            .map(|_| 20.0 + (rng.next() % 10_000) as f64 / 100.0)
            .collect();
        let calls: Vec<i64> = (0..n).map(|_| (rng.next() % 10) as i64).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(plan)),
            Arc::new(Int64Array::from(tenure)),
            Arc::new(Float64Array::from(charges)),
            Arc::new(Int64Array::from(calls)),
        ];
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).map_err(|e| encode(&e))?;
        writer.write(&batch).map_err(|e| encode(&e))?;
        start += n;
    }
    writer.close().map_err(|e| encode(&e))?;
    Ok(())
}

/// A tiny deterministic generator (splitmix64), so the demo data is the same everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
