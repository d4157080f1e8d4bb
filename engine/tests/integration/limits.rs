//! `mlfusion query` under hostile or unlucky input: nesting limits, models that print,
//! hang or fail halfway, runs cancelled by a signal, and worker recycling.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;

use crate::fixtures::{
    BIN, failure, mlfusion, raiser_query, read_parquet, signal_after_calls, success, test_model,
    write_features,
};

/// `array<` × n, then `double`, then `>` × n.
fn nested(n: usize) -> String {
    format!("{}double{}", "array<".repeat(n), ">".repeat(n))
}

#[test]
fn deeply_nested_types_are_refused_with_the_limit_named() {
    let adder = format!("m={}", test_model("adder"));
    let deep = nested(2_000);
    let out = mlfusion(&[
        "query",
        "--model",
        &adder,
        "--result-type",
        &format!("m={deep}"),
        "SELECT 1",
    ]);
    let err = failure(&out);
    assert!(err.contains("deeper than 64 levels"), "{err:.300}");
    assert_eq!(out.status.code(), Some(1), "an error, not an abort");

    // The limit is a flag.
    let out = mlfusion(&[
        "query",
        "--max-type-depth",
        "4",
        "--model",
        &adder,
        "--result-type",
        &format!("m={}", nested(4)),
        "SELECT 1",
    ]);
    assert!(failure(&out).contains("deeper than 4 levels"));

    // CREATE FUNCTION: a DDL result type in the JSON body, and RETURNS.
    let body = format!(
        r#"CREATE FUNCTION m() LANGUAGE mlflow AS '{{"uri": "{}", "result_type": "{deep}"}}'"#,
        test_model("adder")
    );
    let err = failure(&mlfusion(&["query", "-c", &body]));
    assert!(err.contains("deeper than 64 levels"), "{err:.300}");
    let returns = format!(
        "CREATE FUNCTION m() RETURNS DOUBLE{} LANGUAGE mlflow AS '{}'",
        "[]".repeat(2_000),
        test_model("adder")
    );
    let out = mlfusion(&["query", "-c", &returns]);
    assert_eq!(out.status.code(), Some(1), "{}", failure(&out));
    let json = format!(
        r#"CREATE FUNCTION m() LANGUAGE mlflow AS '{{"uri": "{}", "params": {}1{}}}'"#,
        test_model("adder"),
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let err = failure(&mlfusion(&["query", "-c", &json]));
    assert!(err.contains("deeper than 128 levels"), "{err:.300}");
}

#[test]
fn what_a_model_prints_goes_to_stderr_not_into_results() {
    for workers in ["0", "1"] {
        let out = mlfusion(&[
            "query",
            "--workers",
            workers,
            "--format",
            "csv",
            "--model",
            &format!("m={}", test_model("crasher")),
            "SELECT m(x) AS p FROM (VALUES (1.0), (-5.0), (2.0)) AS t(x)",
        ]);
        let stdout = success(&out);
        assert_eq!(stdout, "p\n1.0\n-5.0\n2.0\n", "workers {workers}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("model chatter 63"), "{stderr}");
        assert!(stderr.contains("raw model chatter"), "{stderr}");
    }
}

#[test]
fn a_predict_past_the_timeout_fails_and_its_worker_is_replaced() {
    let started = Instant::now();
    let out = mlfusion(&[
        "query",
        "--workers",
        "1",
        "--predict-timeout",
        "2s",
        "--model",
        &format!("m={}", test_model("crasher")),
        "SELECT m(x) FROM (VALUES (1.0), (-7.0)) AS t(x)",
    ]);
    let err = failure(&out);
    assert!(err.contains("model 'm'"), "{err}");
    assert!(
        err.contains("ran longer than 2 s (--predict-timeout)"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
    let refused = failure(&mlfusion(&[
        "query",
        "--workers",
        "0",
        "--predict-timeout",
        "2s",
        "SELECT 1",
    ]));
    assert!(refused.contains("cannot be stopped"), "{refused}");
}

#[test]
fn workers_are_recycled_after_n_calls_without_failing_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), 1_000);
    let log = dir.path().join("calls.log");
    let output = dir.path().join("out.parquet");
    let out = Command::new(BIN)
        .env("MLFUSION_TEST_PREDICT_LOG", &log)
        .args(["query", "--workers", "1", "--worker-max-calls", "2"])
        .args(["--batch-size", "100", "--target-partitions", "1"])
        .args(["--model", &format!("c={}", test_model("counter"))])
        .args(["--result-type", "c=twice double, next double"])
        .args(["--output", &output.display().to_string()])
        .arg(format!(
            "SELECT id, f0, c(f0)['twice'] AS twice FROM '{}'",
            dir.path().join("features.parquet").display()
        ))
        .output()
        .expect("runs");
    success(&out);
    let calls = std::fs::read_to_string(&log).expect("log");
    let mut per_pid = std::collections::BTreeMap::<&str, usize>::new();
    for line in calls.lines() {
        *per_pid
            .entry(line.split(' ').next().expect("pid"))
            .or_default() += 1;
    }
    assert_eq!(per_pid.values().sum::<usize>(), 10, "{calls}");
    assert!(per_pid.len() >= 5, "one worker per two calls: {per_pid:?}");
    assert!(per_pid.values().all(|&n| n <= 2), "{per_pid:?}");
    let mut rows = 0;
    for batch in read_parquet(&output) {
        let (f0, twice) = (batch.column(1), batch.column(2));
        let (f0, twice) = (
            f0.as_primitive::<Float64Type>(),
            twice.as_primitive::<Float64Type>(),
        );
        for i in 0..batch.num_rows() {
            assert_eq!(twice.value(i), 2.0 * f0.value(i));
        }
        rows += batch.num_rows();
    }
    assert_eq!(rows, 1_000);
}

/// Files in `dir` whose name starts with `.mlfusion-` (staged output).
fn staged_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".mlfusion-"))
        .collect()
}

#[test]
fn a_query_cancelled_by_a_signal_leaves_no_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), 200_000);
    let log = dir.path().join("calls.log");
    for (signal, output, code_wanted) in [
        (libc::SIGINT, "out.parquet", 130),
        (libc::SIGTERM, "out.csv", 143),
        (libc::SIGTERM, "copy", 143),
    ] {
        let target = dir.path().join(output);
        let sql = format!(
            "SELECT id, c(f0)['twice'] AS p FROM '{}'",
            dir.path().join("features.parquet").display()
        );
        let mut command = Command::new(BIN);
        command
            .env("MLFUSION_TEST_PREDICT_SLEEP", "0.5")
            .args(["query", "--workers", "1", "--batch-size", "10000"])
            .args(["--model", &format!("c={}", test_model("counter"))])
            .args(["--result-type", "c=twice double, next double"]);
        if output == "copy" {
            command.arg(format!(
                "COPY ({sql}) TO '{}/' STORED AS PARQUET",
                target.display()
            ));
        } else {
            command
                .args(["--output", &target.display().to_string()])
                .arg(sql);
        }
        // Once the model has scored a few batches, output is half written.
        let code = signal_after_calls(&mut command, &log, 3, signal);
        assert_eq!(code, Some(code_wanted), "{output}");
        assert!(!target.exists(), "{output} was left behind");
        assert_eq!(staged_files(dir.path()), Vec::<String>::new(), "{output}");
    }
}

#[test]
fn a_copy_whose_model_fails_halfway_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let raiser = format!("r={}", test_model("raiser"));
    for target in ["half.parquet", "half/"] {
        let path = dir.path().join(target);
        // 200,000 rows in batches of 1,000: the last batch holds the one negative value.
        let sql = format!(
            "COPY (SELECT r(CASE WHEN value = 199999 THEN -1.0 ELSE CAST(value AS DOUBLE) END) AS p FROM generate_series(0, 199999)) TO '{}' STORED AS PARQUET",
            path.display()
        );
        let err = failure(&raiser_query(&sql));
        assert!(err.contains("model 'r'"), "{err}");
        assert!(!path.exists(), "{target} was left behind");
        assert_eq!(staged_files(dir.path()), Vec::<String>::new());
    }
    // And a COPY that succeeds appears whole, in place.
    let path = dir.path().join("whole.parquet");
    let sql = format!(
        "COPY (SELECT r(CAST(value AS DOUBLE)) AS p FROM generate_series(0, 9999)) TO '{}'",
        path.display()
    );
    success(&mlfusion(&[
        "query",
        "--workers",
        "1",
        "--model",
        &raiser,
        "-c",
        &sql,
    ]));
    let rows: usize = read_parquet(&path).iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 10_000);
    assert_eq!(staged_files(dir.path()), Vec::<String>::new());
}

#[test]
fn output_files_get_the_umask_mode_like_any_new_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("out.csv");
    // SAFETY: umask(2) of this test process, inherited by the child.
    #[allow(unsafe_code)]
    let previous = unsafe { libc::umask(0o022) };
    let out = mlfusion(&[
        "query",
        "--output",
        &path.display().to_string(),
        "SELECT 1 AS x",
    ]);
    #[allow(unsafe_code)]
    unsafe {
        libc::umask(previous);
    }
    success(&out);
    let mode = std::fs::metadata(&path)
        .expect("written")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o644);
}
