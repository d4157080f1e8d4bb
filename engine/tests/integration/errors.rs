//! `--on-error`: rows whose prediction fails become NULL (`null`) or carry their error
//! (`struct`), every other row keeps its prediction, found by re-scoring halves of a
//! failing batch within O(failing rows x log batch size) extra calls. Params per call.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};

use crate::fixtures::{features, mlfusion, read_parquet, success, test_model, write_features};

const ROWS: i64 = 50_000;
/// Rows the raiser model fails on (it raises on a batch holding a negative value).
const FAILING: [i64; 3] = [7, 31_000, ROWS - 1];
const CALL: &str = "r(CASE WHEN id IN (7, 31000, 49999) THEN -1.0 ELSE f0 END)";

/// `mlfusion query` with the raiser model as `r` in `mode` on the features table.
fn query(dir: &std::path::Path, workers: &str, mode: &str, extra: &[&str]) -> String {
    success(&mlfusion(
        &[
            &[
                "query",
                "--workers",
                workers,
                "--model",
                &format!("r={}", test_model("raiser")),
                "--result-type",
                "r=double",
                "--on-error",
                &format!("r={mode}"),
                "--table",
                &format!("t={}", dir.join("features.parquet").display()),
            ],
            extra,
        ]
        .concat(),
    ))
}

#[test]
fn failing_rows_become_null_or_carry_their_error_and_the_others_keep_their_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), ROWS);
    for workers in ["0", "1"] {
        let out = dir.path().join(format!("null-{workers}.parquet"));
        let sql = format!("SELECT id, {CALL} AS p FROM t");
        query(
            dir.path(),
            workers,
            "null",
            &["--output", &out.display().to_string(), &sql],
        );
        let mut seen = 0;
        for batch in read_parquet(&out) {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let p = batch.column(1).as_primitive::<Float64Type>();
            for (i, id) in ids.values().iter().enumerate() {
                assert_eq!(
                    p.is_null(i),
                    FAILING.contains(id),
                    "row {id}, {workers} workers"
                );
                if !FAILING.contains(id) {
                    assert_eq!(p.value(i), features(*id).0, "row {id}");
                }
                assert_eq!(*id, seen, "rows in order");
                seen += 1;
            }
        }
        assert_eq!(seen, ROWS);

        let out = dir.path().join(format!("struct-{workers}.parquet"));
        query(
            dir.path(),
            workers,
            "struct",
            &["--output", &out.display().to_string(), &sql],
        );
        let mut failed = Vec::new();
        for batch in read_parquet(&out) {
            let ids = batch.column(0).as_primitive::<Int64Type>();
            let p = batch.column(1).as_struct();
            let (values, errors) = (
                p.column(0).as_primitive::<Float64Type>(),
                p.column(1).as_string::<i32>(),
            );
            for (i, id) in ids.values().iter().enumerate() {
                if errors.is_null(i) {
                    assert_eq!(values.value(i), features(*id).0, "row {id}");
                } else {
                    assert!(values.is_null(i), "row {id}: a value beside its error");
                    assert!(
                        errors
                            .value(i)
                            .contains("model 'r': predict raised ValueError: negative input"),
                        "row {id}: {}",
                        errors.value(i)
                    );
                    failed.push(*id);
                }
            }
        }
        assert_eq!(failed, FAILING, "{workers} workers");
    }
}

#[test]
fn finding_the_failing_rows_takes_a_logarithmic_number_of_calls() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), ROWS);
    let plan = query(
        dir.path(),
        "1",
        "null",
        &[
            "--format",
            "csv",
            &format!("EXPLAIN ANALYZE SELECT sum({CALL}) FROM t"),
        ],
    );
    let metric = |name: &str| -> u64 {
        let key = format!("{name}[r]=");
        let at = plan
            .find(&key)
            .unwrap_or_else(|| panic!("no {key} in:\n{plan}"))
            + key.len();
        let digits: String = plan[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().expect("a count")
    };
    assert_eq!(metric("failed_rows"), 3, "{plan}");
    let calls = metric("batches_scored") + metric("failed_calls");
    // At most one call per input batch (two here: ROWS < 65,536 on two partitions), plus
    // two per level of halving (log2 65,536 = 16) for each failing row.
    assert!(calls <= 2 + 2 * 3 * 16, "{calls} calls:\n{plan}");
    assert!(
        metric("failed_calls") >= 3 * 10,
        "each failing row was narrowed down:\n{plan}"
    );
}

#[test]
fn an_unknown_mode_is_refused_naming_the_flag() {
    let out = mlfusion(&[
        "query",
        "--model",
        &format!("r={}", test_model("raiser")),
        "--on-error",
        "r=skip",
        "SELECT 1",
    ]);
    let err = crate::fixtures::failure_naming(&out, &["--on-error", "raise, null or struct"]);
    assert!(err.contains("r=skip"), "{err}");
}

#[test]
fn one_query_scores_a_model_with_two_params_and_bad_params_fail_at_planning() {
    // The churn model's params schema: threshold, a double (default 0.0); with a
    // threshold it answers 1.0 or 0.0, the probability at or over the threshold or not.
    let churn = format!("churn={}", test_model("churn"));
    let sql = "SELECT churn(t, c, s) AS plain, \
        churn(t, c, s, params('{\"threshold\": 0.5}')) AS half, \
        churn(t, c, s, params('{\"threshold\": 0.99}')) AS high \
        FROM (VALUES (1, 99.0, 5), (60, 20.0, 0), (24, 50.0, 1)) v(t, c, s) ORDER BY t";
    for workers in ["0", "1"] {
        let out = success(&mlfusion(&[
            "query",
            "--workers",
            workers,
            "--model",
            &churn,
            "--format",
            "csv",
            sql,
        ]));
        let rows: Vec<Vec<f64>> = out
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(|v| v.parse().expect("a number")).collect())
            .collect();
        assert_eq!(rows.len(), 3, "{out}");
        for row in &rows {
            let [plain, half, high] = row[..] else {
                panic!("{out}")
            };
            assert!(plain > 0.0 && plain < 1.0, "{out}");
            assert_eq!(half, f64::from(u8::from(plain >= 0.5)), "{out}");
            assert_eq!(high, f64::from(u8::from(plain >= 0.99)), "{out}");
        }
        let halves: Vec<f64> = rows.iter().map(|r| r[1]).collect();
        assert!(halves.contains(&0.0) && halves.contains(&1.0), "{out}");
    }
    let bad = mlfusion(&[
        "query",
        "--model",
        &churn,
        "SELECT churn(1, 2.0, 3, params('{\"threshold\": \"high\"}'))",
    ]);
    crate::fixtures::failure_naming(&bad, &["churn", "threshold"]);
    let misplaced = mlfusion(&["query", "SELECT params('{}')"]);
    crate::fixtures::failure_naming(&misplaced, &["only the last argument of a model call"]);
}

#[test]
fn timing_shows_the_counters_a_server_exposes() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), ROWS);
    let out = mlfusion(&[
        "query",
        "--timing",
        "--workers",
        "1",
        "--model",
        &format!("r={}", test_model("raiser")),
        "--result-type",
        "r=double",
        "--on-error",
        "r=null",
        "--table",
        &format!("t={}", dir.path().join("features.parquet").display()),
        &format!("SELECT count({CALL}) FROM t"),
    ]);
    success(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("mlfusion: model 'r': "))
        .unwrap_or_else(|| panic!("no counters of model 'r' in:\n{stderr}"));
    assert!(
        line.contains(&format!("{ROWS} rows in "))
            && line.contains(" 3 rows failed in ")
            && line.ends_with("workers alive 1, restarted 0"),
        "{line}"
    );
    assert!(
        stderr.contains("mlfusion: environments built 0, reused 0, failed 0"),
        "{stderr}"
    );
}
