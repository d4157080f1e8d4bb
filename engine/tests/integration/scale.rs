//! A saved scikit-learn model over a million-row Parquet file: one prediction per row, in
//! input order, and memory that does not grow with the row count (streaming).

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, Int64Type};

use crate::fixtures::{BIN, features, read_parquet, sklearn_model, write_features};

/// Runs `mlfusion query` scoring `rows` rows; returns the child's peak RSS in KiB.
fn score(dir: &Path, model: &str, rows: i64) -> i64 {
    let data = dir.join(format!("features-{rows}.parquet"));
    write_features(&data, rows);
    let out = dir.join(format!("scored-{rows}.parquet"));
    let args = [
        "query".to_owned(),
        "--model".to_owned(),
        format!("lr={model}"),
        "--result-type".to_owned(),
        "lr=double".to_owned(),
        "--table".to_owned(),
        format!("t={}", data.display()),
        "--output".to_owned(),
        out.display().to_string(),
        "SELECT id, lr(f0, f1, f2) AS p FROM t".to_owned(),
    ];
    // Reaped by wait4, which also reports the child's peak RSS.
    #[allow(clippy::zombie_processes)]
    let child = std::process::Command::new(BIN)
        .args(&args)
        .spawn()
        .expect("spawn");
    let (status, peak_kib) = wait_with_peak_rss(child.id());
    assert!(status == 0, "mlfusion exited with status {status}");

    let batches: Vec<RecordBatch> = read_parquet(&out);
    let mut next = 0i64;
    for b in &batches {
        let ids = b.column(0).as_primitive::<Int64Type>();
        let p = b.column(1).as_primitive::<Float64Type>();
        for (id, p) in ids.iter().zip(p.iter()) {
            assert_eq!(
                id,
                Some(next),
                "rows must come back once each, in input order"
            );
            let (f0, f1, f2) = features(next);
            let expected = 2.0 * f0 - 3.0 * f1 + 0.5 * f2 + 1.0;
            let p = p.expect("no NULL predictions");
            assert!((p - expected).abs() < 1e-8, "row {next}: {p} != {expected}");
            next += 1;
        }
    }
    assert_eq!(next, rows);
    peak_kib
}

#[allow(unsafe_code)]
fn wait_with_peak_rss(pid: u32) -> (i32, i64) {
    let mut status = 0;
    // SAFETY: rusage is plain data that wait4 fills; pid is our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(rc, pid as libc::pid_t, "wait4 failed");
    (libc::WEXITSTATUS(status), usage.ru_maxrss)
}

#[test]
fn million_rows_one_prediction_each_in_order_with_flat_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = sklearn_model(dir.path());
    let small = score(dir.path(), &model, 100_000);
    let large = score(dir.path(), &model, 1_000_000);
    eprintln!("peak RSS: 100k rows {small} KiB, 1M rows {large} KiB");
    // Collecting 1M rows would hold ~32 MB of input plus the predictions; streaming keeps
    // the peak within a few batches of the small run's.
    assert!(
        large < small + 24 * 1024,
        "peak memory grew with the row count: {small} KiB -> {large} KiB"
    );
}
