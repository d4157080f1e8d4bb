//! Delta Lake tables: written by the `deltalake` Python package (several commits,
//! partitions, a schema change, a deleted row, column mapping) and by Databricks (a
//! deletion vector), scored by `mlfusion query`; tables written by mlfusion read back by
//! that package. Tables in a bucket are in `stores.rs`.

use std::path::Path;
use std::process::Command;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use serde_json::Value;

use crate::fixtures::{
    BIN, failure, failure_naming, features, mlfusion, python_fixture, raiser_query, read_parquet,
    repo, signal_after_calls, sklearn_model, success, test_model,
};

const ROWS: i64 = 4_000;

/// `testdata/delta_fixture.py ARGS` with `env`; its stdout.
pub(crate) fn delta_fixture(env: &[(&str, &str)], args: &[&str]) -> String {
    python_fixture("delta_fixture.py", args, env)
}

/// The table at `location` as the `deltalake` package reads it.
pub(crate) fn read_delta(env: &[(&str, &str)], location: &str) -> Value {
    serde_json::from_str(&delta_fixture(env, &["read", location])).expect("JSON")
}

/// The ids of the `features` table of `delta_fixture.py` at its last version.
pub(crate) fn feature_ids(rows: i64) -> Vec<i64> {
    (0..rows + 100).filter(|&i| i != 7).collect()
}

/// Asserts that `table` (as [`read_delta`] gives it) holds `ids` in order, with `p` the
/// scikit-learn model's prediction for each.
pub(crate) fn assert_delta_scored(table: &Value, ids: &[i64]) {
    let got: Vec<i64> = serde_json::from_value(table["columns"]["id"].clone()).expect("ids");
    assert_eq!(got, ids, "the rows, each once");
    let p: Vec<f64> = serde_json::from_value(table["columns"]["p"].clone()).expect("p");
    for (id, p) in ids.iter().zip(p) {
        let (f0, f1, f2) = features(*id);
        let want = 2.0 * f0 - 3.0 * f1 + 0.5 * f2 + 1.0;
        assert!((p - want).abs() < 1e-9, "id {id}: {p} != {want}");
    }
}

/// `mlfusion query --format csv ARGS`'s stdout, trimmed.
fn csv(args: &[&str]) -> String {
    let args = [&["query", "--format", "csv"], args].concat();
    success(&mlfusion(&args)).trim().to_owned()
}

/// The files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if entry.path().is_dir() {
                stack.push(entry.path());
            } else {
                let path = entry.path();
                let relative = path.strip_prefix(dir).expect("under dir");
                found.push(relative.display().to_string());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn reads_delta_tables_of_an_independent_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let table = dir.path().join("features");
    let location = table.display().to_string();
    delta_fixture(&[], &["features", &location, &ROWS.to_string()]);
    let model = format!("m={}", sklearn_model(dir.path()));

    // Scored through --table delta:, row by row, the deleted row absent.
    let out = dir.path().join("scored.parquet");
    success(&mlfusion(&[
        "query",
        "--model",
        &model,
        "--result-type",
        "m=double",
        "--table",
        &format!("t=delta:{location}"),
        "--output",
        &out.display().to_string(),
        "SELECT id, m(f0, f1, f2) AS p FROM t ORDER BY id",
    ]));
    let mut ids = Vec::new();
    for batch in read_parquet(&out) {
        let p = batch.column(1).as_primitive::<Float64Type>();
        for (i, id) in batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .enumerate()
        {
            let (f0, f1, f2) = features(*id);
            assert!((p.value(i) - (2.0 * f0 - 3.0 * f1 + 0.5 * f2 + 1.0)).abs() < 1e-9);
            ids.push(*id);
        }
    }
    assert_eq!(ids, feature_ids(ROWS));

    // A location holding a _delta_log/ is a Delta table wherever a path is taken; the
    // schema change shows as nulls in the rows written before it.
    let want = format!("n,segments,deleted\n{},100,0", ROWS + 99);
    let count = "SELECT count(*) AS n, count(segment) AS segments, count(*) FILTER (WHERE id = 7) AS deleted FROM";
    assert_eq!(csv(&[&format!("{count} '{location}'")]), want);
    assert_eq!(
        csv(&["--table", &format!("t={location}"), &format!("{count} t")]),
        want
    );
    let create = format!("CREATE EXTERNAL TABLE t STORED AS DELTATABLE LOCATION '{location}'");
    assert_eq!(csv(&["-c", &create, &format!("{count} t")]), want);

    // Time travel: by version (the flag's @vN and the table option) and by time.
    let n = "SELECT count(*) AS n, count(*) FILTER (WHERE id = 7) AS seven FROM t";
    let at = |suffix: &str| csv(&["--table", &format!("t=delta:{location}{suffix}"), n]);
    assert_eq!(at("@v0"), format!("n,seven\n{},1", ROWS / 2));
    assert_eq!(at("@v2"), format!("n,seven\n{},1", ROWS + 100));
    let version1 = format!("{create} OPTIONS ('version' '1')");
    assert_eq!(csv(&["-c", &version1, n]), format!("n,seven\n{ROWS},1"));
    assert_eq!(
        at("@2999-01-01T00:00:00Z"),
        format!("n,seven\n{},0", ROWS + 99)
    );
    failure_naming(
        &mlfusion(&[
            "query",
            "--table",
            &format!("t=delta:{location}@v9"),
            "SELECT 1",
        ]),
        &[&location, "there is no version 9: the latest is 3"],
    );
    failure_naming(
        &mlfusion(&[
            "query",
            "--table",
            &format!("t=delta:{location}@2000-01-01T00:00:00Z"),
            "SELECT 1",
        ]),
        &["no version is as old as"],
    );

    // Partition pruning and file skipping: EXPLAIN ANALYZE names the files read and
    // their bytes; a filter on the partition column reads that partition's files alone.
    let plan = csv(&[
        "--table",
        &format!("t={location}"),
        "EXPLAIN ANALYZE SELECT sum(f0) FROM t WHERE region = 'eu' AND id >= 0",
    ]);
    assert!(plan.contains("region=eu/part-"), "{plan}");
    assert!(!plan.contains("region=us/"), "{plan}");
    assert!(
        plan.contains("bytes_scanned=") && plan.contains("files_opened="),
        "{plan}"
    );
    let plan = csv(&[
        "--table",
        &format!("t={location}"),
        &format!("EXPLAIN ANALYZE SELECT sum(f0) FROM t WHERE id >= {ROWS}"),
    ]);
    // Its files are read by two partitions at once, whole files each.
    let spread = csv(&[
        "--target-partitions",
        "2",
        "--table",
        &format!("t={location}"),
        "EXPLAIN SELECT sum(f0) FROM t",
    ]);
    assert!(spread.contains("file_groups={2 groups"), "{spread}");
    assert!(
        plan.contains("count_files_scanned=2"),
        "only the version-2 files:\n{plan}"
    );

    // Reading a Delta table's directory as Parquet files would read removed versions too.
    let as_parquet = format!("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{location}/'");
    failure_naming(
        &mlfusion(&["query", "-c", &as_parquet, "SELECT 1"]),
        &["it is a Delta table", "hint: STORED AS DELTATABLE"],
    );
    failure_naming(
        &mlfusion(&[
            "query",
            "--table",
            &format!("t=delta:{}", dir.path().display()),
            "SELECT 1",
        ]),
        &["there is no Delta table here"],
    );
}

#[test]
fn deletion_vectors_and_column_mapping_are_read_as_their_writers_meant() {
    // Databricks deleted values 0 and 9 with a deletion vector.
    let dv = repo().join("testdata/delta/table-with-dv-small");
    let dv = dv.display().to_string();
    let values = csv(&[&format!("SELECT value FROM '{dv}' ORDER BY value")]);
    assert_eq!(values, "value\n1\n2\n3\n4\n5\n6\n7\n8");
    let theirs = read_delta(&[], &dv);
    assert_eq!(
        theirs["columns"]["value"],
        serde_json::json!([1, 2, 3, 4, 5, 6, 7, 8])
    );

    // Column mapping: the Parquet files name the columns col-<uuid>.
    let dir = tempfile::tempdir().expect("tempdir");
    let location = dir.path().join("mapped").display().to_string();
    delta_fixture(&[], &["column-mapping", &location, "100"]);
    let out = dir.path().join("mapped.parquet");
    success(&mlfusion(&[
        "query",
        "--output",
        &out.display().to_string(),
        &format!("SELECT id, f0, f1, f2 FROM '{location}' ORDER BY id"),
    ]));
    let mut rows = 0;
    for batch in read_parquet(&out) {
        let column = |i: usize| batch.column(i).as_primitive::<Float64Type>().clone();
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let (f0, f1, f2) = (column(1), column(2), column(3));
        for i in 0..batch.num_rows() {
            assert_eq!(ids.value(i), rows);
            let want = features(rows);
            assert_eq!((f0.value(i), f1.value(i), f2.value(i)), want, "row {rows}");
            rows += 1;
        }
    }
    assert_eq!(rows, 100);
}

#[test]
fn writes_delta_tables_that_the_deltalake_package_reads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("features").display().to_string();
    delta_fixture(&[], &["features", &source, &ROWS.to_string()]);
    let model = format!("m={}", sklearn_model(dir.path()));
    let target = dir.path().join("scored").display().to_string();
    let score = |extra: &[&str], sql: &str| {
        let base = ["query", "--model", &model, "--result-type", "m=double"];
        mlfusion(&[&base[..], extra, &[sql]].concat())
    };
    let select = "SELECT id, m(f0, f1, f2) AS p FROM t";
    let table = format!("t=delta:{source}");

    // Created by --output.
    let out = score(
        &["--table", &table, "--output", &format!("delta:{target}")],
        select,
    );
    let printed = success(&out);
    assert!(
        printed.contains(&format!(
            "wrote {} row(s) to delta:{target} (version 0)",
            ROWS + 99
        )),
        "{printed}"
    );
    let theirs = read_delta(&[], &target);
    assert_eq!(
        theirs["schema"],
        serde_json::json!([["id", "int64"], ["p", "double"]])
    );
    assert_delta_scored(&theirs, &feature_ids(ROWS));

    // The table exists: an error by default, then append and overwrite.
    failure_naming(
        &score(
            &["--table", &table, "--output", &format!("delta:{target}")],
            select,
        ),
        &[&target, "hint: --output-mode append"],
    );
    let append = ["--table", &table, "--output", &format!("delta:{target}")];
    success(&score(
        &[&append[..], &["--output-mode", "append"]].concat(),
        select,
    ));
    let theirs = read_delta(&[], &target);
    assert_eq!(theirs["version"], 1);
    assert_eq!(theirs["rows"], 2 * (ROWS + 99));
    success(&score(
        &[&append[..], &["--output-mode", "overwrite"]].concat(),
        &format!("{select} WHERE id < 100"),
    ));
    let theirs = read_delta(&[], &target);
    assert_eq!(
        theirs["operations"],
        serde_json::json!(["WRITE", "WRITE", "WRITE"])
    );
    let ids: Vec<i64> = (0..100).filter(|&i| i != 7).collect();
    assert_delta_scored(&theirs, &ids);

    // COPY: partitioned, then appended to with a new column merged into the schema.
    let copied = dir.path().join("copied").display().to_string();
    let copy = format!(
        "COPY (SELECT id, m(f0, f1, f2) AS p, region FROM t) TO '{copied}' STORED AS DELTATABLE PARTITIONED BY (region)"
    );
    let printed = success(&score(&["--table", &table, "-c", &copy], ""));
    assert!(printed.contains(&(ROWS + 99).to_string()), "{printed}");
    let copy = format!(
        "COPY (SELECT id, m(f0, f1, f2) AS p, region, 'late' AS batch FROM t WHERE id < 10) TO '{copied}' STORED AS DELTATABLE OPTIONS ('mode' 'append', 'schema_mode' 'merge')"
    );
    success(&score(&["--table", &table, "-c", &copy], ""));
    let theirs = read_delta(&[], &copied);
    assert_eq!(theirs["partition_columns"], serde_json::json!(["region"]));
    assert_eq!(theirs["version"], 1);
    assert_eq!(theirs["rows"], ROWS + 99 + 9);
    let batch: Vec<Option<String>> =
        serde_json::from_value(theirs["columns"]["batch"].clone()).expect("batch");
    assert_eq!(batch.iter().filter(|b| b.is_some()).count(), 9);
    assert!(
        files(Path::new(&copied))
            .iter()
            .any(|f| f.starts_with("region=eu/")),
        "partitioned by region"
    );
    failure_naming(
        &score(
            &[
                "--table",
                &table,
                "-c",
                &format!(
                    "COPY (SELECT 1 AS x) TO '{copied}' STORED AS DELTATABLE OPTIONS ('mode' 'sometimes')"
                ),
            ],
            "",
        ),
        &["hint: error, append or overwrite"],
    );
}

#[test]
fn a_delta_write_that_fails_or_is_cancelled_leaves_no_version_and_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("scores");
    let location = target.display().to_string();
    // 20,000 rows in batches of 1,000, the last holding the one negative value; 1 KB
    // files, so that many are written before it fails.
    let copy = |mode: &str, failing: bool| {
        let value = if failing {
            "CASE WHEN value = 19999 THEN -1.0 ELSE CAST(value AS DOUBLE) END"
        } else {
            "CAST(value AS DOUBLE)"
        };
        format!(
            "COPY (SELECT value AS id, r({value}) AS p FROM generate_series(0, 19999)) TO '{location}' STORED AS DELTATABLE OPTIONS ('mode' '{mode}', 'target_file_size' '1KB')"
        )
    };
    let run = raiser_query;
    // A new table: nothing is left at its location.
    let err = failure(&run(&copy("error", true)));
    assert!(
        err.starts_with("error: model 'r': predict raised ValueError"),
        "{err}"
    );
    assert!(!target.exists(), "a failed write left {:?}", files(&target));
    // An existing table keeps its version and files.
    success(&run(&copy("error", false)));
    let before = files(&target);
    assert!(before.len() > 2, "1 KB files: {before:?}");
    failure_naming(&run(&copy("append", true)), &["model 'r'"]);
    assert_eq!(files(&target), before, "a failed append left files behind");
    assert_eq!(read_delta(&[], &location)["version"], 0);

    // Cancelled by SIGTERM while it writes.
    let log = dir.path().join("calls.log");
    let sql = format!(
        "COPY (SELECT value AS id, c(CAST(value AS DOUBLE))['twice'] AS p FROM generate_series(0, 199999)) TO '{location}' STORED AS DELTATABLE OPTIONS ('mode' 'append', 'target_file_size' '1KB')"
    );
    let mut command = Command::new(BIN);
    command
        .env("MLFUSION_TEST_PREDICT_SLEEP", "0.3")
        .args(["query", "--workers", "1", "--batch-size", "2000"])
        .args(["--model", &format!("c={}", test_model("counter"))])
        .args(["--result-type", "c=twice double, next double", "-c", &sql]);
    let code = signal_after_calls(&mut command, &log, 6, libc::SIGTERM);
    assert_eq!(code, Some(143));
    assert_eq!(
        files(&target),
        before,
        "a cancelled append left files behind"
    );
    assert_eq!(read_delta(&[], &location)["version"], 0);
}
