//! Models in worker processes (`--workers`): each row scored exactly once whatever the
//! query does with the call, batches coalesced to the batch size with every prediction on
//! its own row, and no worker outliving the engine; and in the engine's own interpreter
//! (`--workers 0`), each thread keeping its Python thread state from batch to batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};

use crate::fixtures::{
    BIN, alive, descendants, features, read_parquet, success, test_model, write_features,
};

const ROWS: i64 = 300_000;

/// `mlfusion query --workers 2` with the counter model as `c`, logging its predict calls.
fn counted_query(dir: &Path, log: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .env("MLFUSION_TEST_PREDICT_LOG", log)
        .args(["query", "--workers", "2", "--target-partitions", "2"])
        .args(["--model", &format!("c={}", test_model("counter"))])
        .args(["--result-type", "c=twice double, next double"])
        .args([
            "--table",
            &format!("t={}", dir.join("features.parquet").display()),
        ])
        .args(extra);
    command
}

/// (pid, rows) of every predict call the log holds.
fn predict_calls(log: &Path) -> Vec<(u32, usize)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|line| {
            let (pid, rows) = line.split_once(' ').expect("'<pid> <rows>'");
            (pid.parse().expect("pid"), rows.parse().expect("row count"))
        })
        .collect()
}

#[test]
fn every_row_is_scored_once_whatever_the_query_does_with_the_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), ROWS);
    let all = ROWS as usize;
    let queries = [
        ("SELECT c(f0)['twice'], c(f0)['next'] FROM t", all),
        ("SELECT c(f0)['twice'] + c(f0)['next'] FROM t", all),
        (
            "SELECT id, c(f0)['twice'] FROM t WHERE c(f0)['next'] > 5 ORDER BY c(f0)['twice'] DESC LIMIT 10",
            all,
        ),
        (
            "SELECT count(*), sum(c(f0)['twice']) FROM t WHERE c(f0)['next'] > 5",
            all,
        ),
        (
            "SELECT c(f0)['twice'] AS k, count(*) FROM t GROUP BY c(f0)['twice'] HAVING count(*) > 1",
            all,
        ),
        (
            "SELECT p['twice'] FROM (SELECT c(f0) AS p FROM t) WHERE p['next'] > 5",
            all,
        ),
        // A filter on the table's own columns runs before the model: only its rows are
        // scored (DataFusion 55 moves a struct field's call above such a filter).
        ("SELECT sum(c(f0)['twice']) FROM t WHERE id < 1000", 1000),
        (
            "SELECT count(c(f0)['next']), max(c(f0)['twice']) FROM t WHERE id % 2 = 0",
            all / 2,
        ),
        ("SELECT c(f0)['twice'] FROM t WHERE id >= 299990", 10),
    ];
    for (i, (sql, expected)) in queries.iter().enumerate() {
        let log = dir.path().join(format!("calls-{i}.log"));
        let out = counted_query(dir.path(), &log, &["--format", "csv", sql])
            .output()
            .expect("runs");
        success(&out);
        let calls = predict_calls(&log);
        let scored: usize = calls.iter().map(|(_, rows)| rows).sum();
        assert_eq!(scored, *expected, "{sql}: {calls:?}");
    }
}

#[test]
fn coalesced_batches_keep_each_prediction_on_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_features(&dir.path().join("features.parquet"), ROWS);
    let log = dir.path().join("calls.log");
    let scored = dir.path().join("scored.parquet");
    // The filter leaves batches of ~2/3 of a row group; calls get the default 65,536 rows.
    let out = counted_query(
        dir.path(),
        &log,
        &[
            "--output",
            &scored.display().to_string(),
            "SELECT id, c(f0)['twice'] AS twice FROM t WHERE id % 3 <> 1",
        ],
    )
    .output()
    .expect("runs");
    success(&out);
    let mut predictions = BTreeMap::new();
    for batch in read_parquet(&scored) {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let twice = batch.column(1).as_primitive::<Float64Type>();
        for (id, p) in ids.values().iter().zip(twice.values()) {
            assert!(predictions.insert(*id, *p).is_none(), "row {id} twice");
        }
    }
    let expected: Vec<i64> = (0..ROWS).filter(|id| id % 3 != 1).collect();
    assert_eq!(predictions.len(), expected.len(), "rows lost");
    for id in expected {
        assert_eq!(predictions[&id], 2.0 * features(id).0, "row {id}");
    }
    let calls = predict_calls(&log);
    let rows: usize = calls.iter().map(|(_, rows)| rows).sum();
    assert_eq!(rows, predictions.len());
    assert_eq!(
        calls.iter().map(|(_, rows)| *rows).max(),
        Some(65_536),
        "calls get coalesced batches: {calls:?}"
    );
}

#[test]
fn workers_end_with_the_engine_even_when_it_is_killed() {
    // Forked workers are the template's children, started ones the engine's: either way
    // they must not outlive it.
    for (start, processes) in [("spawn", 2), ("fork", 3)] {
        let dir = tempfile::tempdir().expect("tempdir");
        write_features(&dir.path().join("features.parquet"), ROWS);
        let log = dir.path().join("calls.log");
        let mut engine = counted_query(dir.path(), &log, &["SELECT sum(c(f0)['twice']) FROM t"])
            .env("MLFUSION_TEST_PREDICT_SLEEP", "60")
            .env("MLFUSION_WORKER_START", start)
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut workers = descendants(engine.id());
        while predict_calls(&log).is_empty() || workers.len() < processes {
            assert!(
                Instant::now() < deadline,
                "{start}: two workers (and their template) predicting: {workers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
            workers = descendants(engine.id());
        }
        assert_eq!(workers.len(), processes, "{start}: {workers:?}");
        engine.kill().expect("SIGKILL the engine");
        engine.wait().expect("reaped");
        let deadline = Instant::now() + Duration::from_secs(10);
        while workers.iter().any(|pid| alive(*pid)) {
            assert!(
                Instant::now() < deadline,
                "{start}: workers outlived the engine: {workers:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn in_process_threads_keep_their_python_thread_state_from_batch_to_batch() {
    // Many small batches on two partitions: the tokio workers score several each. The
    // model raises when a thread it saw before comes back with a new thread state (what
    // crashed TensorFlow and Keras 3 models in pybind11's `gil_scoped_acquire`).
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("features.parquet");
    write_features(&input, 20_000);
    let out = Command::new(BIN)
        .args(["query", "--workers", "0", "--batch-size", "500"])
        .args(["--target-partitions", "2"])
        .args(["--model", &format!("m={}", test_model("thread-state"))])
        .args(["--result-type", "m=double"])
        .args(["--table", &format!("t={}", input.display())])
        .args([
            "--format",
            "csv",
            "SELECT count(*), sum(round(m(f0) - f0)) FROM t",
        ])
        .output()
        .expect("run mlfusion");
    let stdout = success(&out);
    assert!(stdout.contains("20000,20000"), "{stdout}");
}
