//! `mlfusion query` / `mlfusion demo` behaviour and errors.

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};

use crate::fixtures::{
    failure, features, mlfusion, read_parquet, sklearn_model, success, test_model, write_features,
};

fn churn_table(dir: &std::path::Path) -> String {
    let path = dir.join("customers.csv");
    std::fs::write(
        &path,
        "id,tenure_months,monthly_charges,support_calls\n1,2,95.0,4\n2,60,20.5,0\n3,24,55.25,1\n",
    )
    .expect("csv");
    format!("customers={}", path.display())
}

#[test]
fn sklearn_default_result_type_is_its_output_tensor_as_array() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sklearn_model(dir.path());
    let data = dir.path().join("t.parquet");
    write_features(&data, 3);
    let out = dir.path().join("out.parquet");
    success(&mlfusion(&[
        "query",
        "--model",
        &format!("lr={model}"),
        "--table",
        &format!("t={}", data.display()),
        "--output",
        &out.display().to_string(),
        "SELECT lr(f0, f1, f2) AS p FROM t",
    ]));
    let batches = read_parquet(&out);
    // spark_udf maps a 1-D float64 output tensor spec to array<double>: one-element arrays.
    assert!(
        matches!(batches[0].column(0).data_type(), DataType::List(f) if f.data_type() == &DataType::Float64)
    );
    let first = batches[0].column(0).as_list::<i32>().value(0);
    assert_eq!(first.len(), 1);
    assert!(
        (first.as_primitive::<Float64Type>().value(0) - (2.0 * 0.0 - 3.0 * 0.0 + 0.5 * 0.0 + 1.0))
            .abs()
            < 1e-9
    );
}

#[test]
fn missing_mlmodel_names_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = failure(&mlfusion(&[
        "query",
        "--model",
        &format!("m={}", dir.path().display()),
        "SELECT 1",
    ]));
    assert!(
        err.contains("cannot read MLmodel file") && err.contains("MLmodel"),
        "{err}"
    );
}

#[test]
fn malformed_model_directories_fail_clearly() {
    let cases = [
        (
            "flavors:\n  sklearn:\n    pickled_model: model.pkl\n",
            "has no python_function flavor (flavors: sklearn)",
        ),
        ("flavors: [\n  oops: {", "malformed MLmodel file"),
        (
            "flavors:\n  python_function:\n    loader_module: x\n    code: ../elsewhere\n",
            "field 'code' = '../elsewhere' escapes the model directory",
        ),
        (
            "flavors:\n  python_function:\n    loader_module: x\nsignature:\n  inputs: '[{\"type\": \"double\"'\n",
            "field 'signature.inputs' is not valid JSON",
        ),
        (
            "flavors:\n  python_function:\n    loader_module: no_such_loader_module\n",
            "loading the model raised ModuleNotFoundError: No module named 'no_such_loader_module'",
        ),
    ];
    for (mlmodel, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("MLmodel"), mlmodel).expect("write");
        let err = failure(&mlfusion(&[
            "query",
            "--model",
            &format!("m={}", dir.path().display()),
            "SELECT 1",
        ]));
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
}

#[test]
fn result_types_are_validated_before_running() {
    let model = format!("adder={}", test_model("adder"));
    for (flag, expected) in [
        (
            "adder=timestamp",
            "invalid 'spark_udf' result type: timestamp",
        ),
        (
            "adder=array<double",
            "cannot parse result type 'array<double'",
        ),
        ("other=double", "--result-type names model 'other'"),
    ] {
        let err = failure(&mlfusion(&[
            "query",
            "--model",
            &model,
            "--result-type",
            flag,
            "SELECT 1",
        ]));
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }
}

#[test]
fn model_exception_fails_the_query_with_its_traceback_and_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("t.parquet");
    write_features(&data, 50_000);
    let out = dir.path().join("out.parquet");
    // f0 - 5 turns negative in every batch after the first rows: the model raises mid-stream.
    let err = failure(&mlfusion(&[
        "query",
        "--batch-size",
        "1000",
        "--model",
        &format!("raiser={}", test_model("raiser")),
        "--table",
        &format!("t={}", data.display()),
        "--output",
        &out.display().to_string(),
        "SELECT id, raiser(f0 - 5) FROM t",
    ]));
    assert!(
        err.contains("model 'raiser': predict raised ValueError: negative input in row 0"),
        "{err}"
    );
    assert!(
        err.contains("raiser_model.py"),
        "traceback names the model's code:\n{err}"
    );
    assert!(
        !out.exists(),
        "a failed query must not leave a partial output file"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "only the input remains: {leftovers:?}");
}

#[test]
fn params_reach_the_model_and_are_validated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = churn_table(dir.path());
    let model = format!("churn={}", test_model("churn"));
    let sql = "SELECT id, churn(tenure_months, monthly_charges, support_calls) AS p FROM customers ORDER BY id";
    let out = success(&mlfusion(&[
        "query",
        "--model",
        &model,
        "--params",
        r#"churn={"threshold": 0.5}"#,
        "--table",
        &table,
        sql,
    ]));
    let values: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains(" p "))
        .collect();
    assert_eq!(
        values,
        ["| 1  | 1.0 |", "| 2  | 0.0 |", "| 3  | 0.0 |"],
        "{out}"
    );
    let err = failure(&mlfusion(&[
        "query",
        "--model",
        &model,
        "--params",
        r#"churn={"threshold": "high"}"#,
        "--table",
        &table,
        sql,
    ]));
    assert!(err.contains("model 'churn': invalid parameters found: 'threshold': can not safely convert str to double"), "{err}");
}

#[test]
fn output_formats_follow_the_extension() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = churn_table(dir.path());
    let model = format!("adder={}", test_model("adder"));
    let sql = "SELECT id, adder(id, support_calls) AS s FROM customers ORDER BY id";
    for (file, expected) in [
        ("out.csv", "id,s\n1,5.0\n2,2.0\n3,4.0\n"),
        (
            "out.jsonl",
            "{\"id\":1,\"s\":5.0}\n{\"id\":2,\"s\":2.0}\n{\"id\":3,\"s\":4.0}\n",
        ),
    ] {
        let path = dir.path().join(file);
        success(&mlfusion(&[
            "query",
            "--model",
            &model,
            "--table",
            &table,
            "--output",
            &path.display().to_string(),
            sql,
        ]));
        assert_eq!(std::fs::read_to_string(&path).expect("output"), expected);
    }
    let err = failure(&mlfusion(&[
        "query", "--model", &model, "--table", &table, "--output", "out.xlsx", sql,
    ]));
    assert!(err.contains("invalid --output 'out.xlsx'"), "{err}");
}

#[test]
fn demo_scores_the_bundled_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = success(&mlfusion(&[
        "demo",
        "--dir",
        &dir.path().display().to_string(),
        "--rows",
        "5000",
    ]));
    assert!(out.contains("scored 5000 rows"), "{out}");
    let batches: Vec<RecordBatch> = read_parquet(&dir.path().join("scored.parquet"));
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 5000);
    for b in &batches {
        let p = b
            .column_by_name("churn_probability")
            .expect("column")
            .as_primitive::<Float64Type>();
        assert!(
            p.iter()
                .all(|v| v.is_some_and(|v| (0.0..=1.0).contains(&v)))
        );
    }
}

#[test]
fn commands_and_files_run_in_order_like_datafusion_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("features.parquet");
    write_features(&data, 10);
    let adder = test_model("adder");
    // -c statements, repeatable; files queried by path; --format csv.
    let out = success(&mlfusion(&[
        "query",
        "--format",
        "csv",
        "-c",
        &format!("CREATE FUNCTION add() LANGUAGE mlflow AS '{adder}'"),
        "-c",
        &format!(
            "SELECT id, add(id, f0) AS s FROM '{}' ORDER BY id LIMIT 3",
            data.display()
        ),
    ]));
    assert_eq!(out.trim(), "id,s\n0,0.0\n1,1.01\n2,2.02");
    // -f: external table, model function, COPY TO, then a query of the copy.
    let copy = dir.path().join("copy.parquet");
    let script = dir.path().join("job.sql");
    std::fs::write(
        &script,
        format!(
            "CREATE EXTERNAL TABLE features STORED AS PARQUET LOCATION '{}';\n\
             CREATE FUNCTION add() LANGUAGE mlflow AS '{adder}';\n\
             COPY (SELECT id, add(f1, f2) AS s FROM features) TO '{}';\n\
             SELECT count(*) AS n, sum(s) AS total FROM '{}';\n",
            data.display(),
            copy.display(),
            copy.display()
        ),
    )
    .expect("script");
    let out = success(&mlfusion(&[
        "query",
        "--format",
        "json",
        "-f",
        &script.display().to_string(),
    ]));
    let expected: f64 = (0..10)
        .map(|i| {
            let (_, f1, f2) = features(i);
            f1 + f2
        })
        .sum();
    // COPY reports how many rows it wrote (as in datafusion-cli), then the query's result.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], r#"[{"count":10}]"#, "{out}");
    let row: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
    assert_eq!(row[0]["n"], 10);
    assert!(
        (row[0]["total"].as_f64().expect("total") - expected).abs() < 1e-9,
        "{out}"
    );
}
