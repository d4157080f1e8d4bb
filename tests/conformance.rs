//! Conformance runner: every golden case of `shared/conformance/cases` (recorded from the
//! real `mlflow.pyfunc.spark_udf`) through the `mlfusion query` binary, compared with
//! `expected.parquet` (types, NULLs, values: float64 bit-exact, float32 within 1 ulp), or,
//! for error cases, a failing run whose message conveys the case's error concept.
//!
//! Two sets run: the shared goldens (`MLFUSION_CONFORMANCE_CASES`, else
//! `../shared/conformance/cases` beside the repo), and `testdata/oracle-cases`, more cases
//! recorded from the real `spark_udf` by `tests/oracle/generate.py`. An oracle case names a
//! shared case's model to start from (`model_recipe.base`), the output recipe and input
//! signature to give it, and the shared case whose `input.parquet` it reads (`input`); or
//! it holds its own `model/` (saved by MLflow) and `input.parquet`, and may give the
//! call's `model_config`.
//!
//! Each case runs twice: with the model in the engine's own interpreter (`--workers 0`) and
//! in a worker process (`--workers 1`).
//!
//! `cargo test --test conformance [-- FILTER]`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_mlfusion");

/// What an error message must say, per error concept of the goldens.
const CONCEPTS: &[(&str, &str)] = &[
    (
        "no output column compatible",
        "did not produce any values compatible",
    ),
    (
        "scalar found where a nested array",
        "not iterable|0-d array",
    ),
    (
        "zero-argument call",
        "zero columns|without arguments|names no columns",
    ),
    ("exception raised by the model", "predict raised"),
    ("output row count differs", "number of output rows"),
    ("struct field not present", "KeyError"),
    ("param value does not match", "invalid parameters found"),
    (
        "result type outside the supported set",
        "invalid 'spark_udf' result type",
    ),
    (
        "result type string cannot be parsed",
        "cannot parse result type",
    ),
    (
        "input column type not convertible",
        "Incompatible input types",
    ),
    (
        "column named by the signature does not exist",
        "has no column",
    ),
    (
        "tensor reshape failure",
        "could not be converted to the expected shape",
    ),
    ("tensor shape incompatible", "scalar values|shape"),
    (
        "missing required",
        "missing required columns|missing inputs",
    ),
];

fn cases_dir() -> PathBuf {
    std::env::var_os("MLFUSION_CONFORMANCE_CASES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/cases")
        })
}

fn oracle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/oracle-cases")
}

/// The case directories of `dir` whose name contains `filter`.
fn list_cases(dir: &Path, filter: Option<&str>) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("conformance cases not found at {}: {e}", dir.display()))?;
    let mut cases: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").exists())
        .filter(|p| {
            filter.is_none_or(|f| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(f))
            })
        })
        .collect();
    cases.sort();
    Ok(cases)
}

fn main() -> ExitCode {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let mut cases = Vec::new();
    for dir in [cases_dir(), oracle_dir()] {
        match list_cases(&dir, filter.as_deref()) {
            Ok(found) => cases.extend(found),
            Err(e) => {
                eprintln!("{e}\nhint: set MLFUSION_CONFORMANCE_CASES to shared/conformance/cases");
                return ExitCode::FAILURE;
            }
        }
    }
    if cases.is_empty() {
        eprintln!("no conformance cases match {filter:?}");
        return ExitCode::FAILURE;
    }
    // Every case twice: models in the engine's interpreter, and in a worker process.
    let runs: Vec<(PathBuf, usize)> = cases
        .iter()
        .flat_map(|case| [(case.clone(), 0), (case.clone(), 1)])
        .collect();
    let queue = Mutex::new(runs);
    let results = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(4);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let Some((case, model_workers)) = queue.lock().expect("queue").pop() else {
                        break;
                    };
                    let outcome = run_case(&case, model_workers);
                    let set = if case.starts_with(oracle_dir()) {
                        "oracle/"
                    } else {
                        ""
                    };
                    let name = case.file_name().expect("case dir").to_string_lossy();
                    let id = format!("{set}{name} (--workers {model_workers})");
                    results.lock().expect("results").push((id, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let failed: Vec<_> = results.iter().filter(|(_, r)| r.is_err()).collect();
    for (id, result) in &results {
        match result {
            Ok(()) => println!("case {id} ... ok"),
            Err(e) => println!("case {id} ... FAILED\n{}", indent(e)),
        }
    }
    println!();
    println!(
        "conformance: {} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_case(dir: &Path, workers: usize) -> Result<(), String> {
    let case: Value =
        serde_json::from_reader(File::open(dir.join("case.json")).map_err(|e| e.to_string())?)
            .map_err(|e| format!("bad case.json: {e}"))?;
    let columns: Vec<String> = case["call"]["columns"]
        .as_array()
        .ok_or("call.columns missing")?
        .iter()
        .map(|c| {
            c.as_str()
                .map(str::to_owned)
                .ok_or("column is not a string")
        })
        .collect::<Result<_, _>>()?;
    let quoted: Vec<String> = columns.iter().map(|c| format!("\"{c}\"")).collect();
    let call = match case["call"]["form"].as_str() {
        Some("args") => format!("m({})", quoted.join(", ")),
        // As in Spark: struct fields take the column names (see ModelCallRewrites).
        Some("struct") => format!("m(struct({}))", quoted.join(", ")),
        Some("none") => "m()".to_owned(),
        other => return Err(format!("unknown call form {other:?}")),
    };
    let out_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = out_dir.path().join("out.parquet");
    let (model, input) = match case.get("model_recipe") {
        Some(recipe) => {
            let shared = cases_dir();
            let input = case["input"]
                .as_str()
                .ok_or("oracle case without 'input'")?;
            let input = shared.join(input).join("input.parquet");
            (build_recipe_model(recipe, &shared, out_dir.path())?, input)
        }
        None => (
            dir.join(case["model"].as_str().unwrap_or("model")),
            dir.join("input.parquet"),
        ),
    };
    let mut cmd = Command::new(BIN);
    cmd.arg("query")
        .arg("--workers")
        .arg(workers.to_string())
        .arg("--model")
        .arg(format!("m={}", model.display()))
        .arg("--table")
        .arg(format!("input={}", input.display()))
        .arg("--output")
        .arg(&out);
    if let Some(rt) = case["result_type"].as_str() {
        cmd.arg("--result-type").arg(format!("m={rt}"));
    }
    if !case["params"].is_null() {
        cmd.arg("--params").arg(format!("m={}", case["params"]));
    }
    if let Some(config) = case.get("model_config").filter(|c| !c.is_null()) {
        cmd.arg("--model-config").arg(format!("m={config}"));
    }
    cmd.arg(format!(
        "SELECT {call} AS prediction FROM input ORDER BY idx"
    ));
    let output = cmd.output().map_err(|e| format!("cannot run {BIN}: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if case["expect"] == "error" {
        if output.status.success() {
            return Err(format!(
                "expected an error ({}), but the query succeeded",
                case["error_concept"]
            ));
        }
        let concept = case["error_concept"].as_str().unwrap_or("");
        if let Some((_, pattern)) = CONCEPTS.iter().find(|(c, _)| concept.starts_with(c)) {
            let found = pattern.split('|').any(|p| stderr.contains(p));
            if !found {
                return Err(format!(
                    "error does not convey '{concept}' (looked for {pattern:?}):\n{stderr}"
                ));
            }
        }
        return Ok(());
    }
    if !output.status.success() {
        return Err(format!("query failed:\n{stderr}"));
    }
    let expected = read_column(&dir.join("expected.parquet"))?;
    let actual = read_column(&out)?;
    compare(&expected, &actual)
}

/// An oracle case's model: a copy of a shared loader-module model with its recipe and,
/// when given, an input signature.
fn build_recipe_model(recipe: &Value, shared: &Path, into: &Path) -> Result<PathBuf, String> {
    let base = recipe["base"]
        .as_str()
        .ok_or("model_recipe without 'base'")?;
    let base = shared.join(base).join("model");
    let model = into.join("model");
    copy_dir(&base, &model).map_err(|e| format!("copying {}: {e}", base.display()))?;
    let config = serde_json::json!({"kind": recipe["kind"], "accepts_params": true});
    std::fs::write(model.join("data/recipe/config.json"), config.to_string())
        .map_err(|e| e.to_string())?;
    if let Some(inputs) = recipe.get("inputs").filter(|i| !i.is_null()) {
        // A YAML single-quoted scalar: quotes are doubled.
        let json = inputs.to_string().replace('\'', "''");
        let path = model.join("MLmodel");
        let mut mlmodel = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        mlmodel.push_str(&format!(
            "signature:\n  inputs: '{json}'\n  outputs: null\n  params: null\n"
        ));
        std::fs::write(path, mlmodel).map_err(|e| e.to_string())?;
    }
    Ok(model)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn read_column(path: &Path) -> Result<ArrayRef, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let schema = batches.first().map(|b| b.schema()).ok_or("no batches")?;
    let batch = arrow::compute::concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    Ok(batch
        .column_by_name("prediction")
        .ok_or("no 'prediction' column")?
        .clone())
}

fn compare(expected: &ArrayRef, actual: &ArrayRef) -> Result<(), String> {
    if !same_type(expected.data_type(), actual.data_type()) {
        return Err(format!(
            "type: expected {}, got {}",
            expected.data_type(),
            actual.data_type()
        ));
    }
    if expected.len() != actual.len() {
        return Err(format!(
            "rows: expected {}, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for row in 0..expected.len() {
        compare_value(expected, actual, row).map_err(|e| format!("row {row}: {e}"))?;
    }
    Ok(())
}

/// Types match, ignoring list item names and nullability flags.
fn same_type(e: &DataType, a: &DataType) -> bool {
    match (e, a) {
        (DataType::List(fe), DataType::List(fa)) => same_type(fe.data_type(), fa.data_type()),
        (DataType::Struct(fe), DataType::Struct(fa)) => {
            fe.len() == fa.len()
                && fe
                    .iter()
                    .zip(fa.iter())
                    .all(|(x, y)| x.name() == y.name() && same_type(x.data_type(), y.data_type()))
        }
        (DataType::Map(fe, _), DataType::Map(fa, _)) => same_type(fe.data_type(), fa.data_type()),
        _ => e == a,
    }
}

fn compare_value(e: &ArrayRef, a: &ArrayRef, i: usize) -> Result<(), String> {
    match (e.is_null(i), a.is_null(i)) {
        (true, true) => return Ok(()),
        (true, false) => return Err(format!("expected NULL, got {}", render(a, i))),
        (false, true) => return Err(format!("expected {}, got NULL", render(e, i))),
        _ => {}
    }
    match e.data_type() {
        DataType::Float64 => {
            let (x, y) = (
                e.as_primitive::<Float64Type>().value(i),
                a.as_primitive::<Float64Type>().value(i),
            );
            if x.to_bits() != y.to_bits() {
                return Err(format!("expected {x:?}, got {y:?}"));
            }
        }
        DataType::Float32 => {
            let (x, y) = (
                e.as_primitive::<Float32Type>().value(i),
                a.as_primitive::<Float32Type>().value(i),
            );
            let ulps = (x.to_bits() as i64 - y.to_bits() as i64).abs();
            if !(x == y || (x.is_nan() && y.is_nan()) || ulps <= 1) {
                return Err(format!("expected {x:?}, got {y:?}"));
            }
        }
        DataType::List(_) => {
            let (x, y) = (e.as_list::<i32>().value(i), a.as_list::<i32>().value(i));
            if x.len() != y.len() {
                return Err(format!(
                    "list length: expected {}, got {}",
                    x.len(),
                    y.len()
                ));
            }
            for j in 0..x.len() {
                compare_value(&x, &y, j).map_err(|m| format!("[{j}] {m}"))?;
            }
        }
        DataType::Struct(fields) => {
            let (x, y) = (e.as_struct(), a.as_struct());
            for (k, f) in fields.iter().enumerate() {
                compare_value(x.column(k), y.column(k), i)
                    .map_err(|m| format!(".{} {m}", f.name()))?;
            }
        }
        _ => {
            let (x, y) = (render(e, i), render(a, i));
            if x != y {
                return Err(format!("expected {x:?}, got {y:?}"));
            }
        }
    }
    Ok(())
}

fn render(array: &ArrayRef, i: usize) -> String {
    let options = FormatOptions::default().with_null("NULL");
    ArrayFormatter::try_new(array.as_ref(), &options)
        .map(|f| f.value(i).to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}
