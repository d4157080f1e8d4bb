//! The worker pool with real worker processes of the project venv: answers equal to the
//! embedded interpreter's, errors reported the same way, and a worker that dies (SIGKILL,
//! SIGSEGV, `os._exit`) failing only its batch, with a clear error, and being replaced.

use std::path::PathBuf;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::datatypes::Float64Type;
use mlfusion_udf::pyfunc::enforce::build_input;
use mlfusion_udf::pyfunc::signature::ModelSignature;
use mlfusion_udf::{ModelMetrics, PyModel, Scorer, WorkerLimits, WorkerStart};

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
}

fn scorer(name: &str, workers: usize) -> Scorer {
    let model = PyModel::load_with_workers(name, model_dir(name), workers).expect("model loads");
    Arc::new(model).scorer(Some("double"), None).expect("binds")
}

/// A scorer of model `name` in two workers started as `start` says.
fn scorer_started(name: &str, start: WorkerStart) -> Scorer {
    let limits = WorkerLimits {
        start,
        ..WorkerLimits::default()
    };
    let model = PyModel::load_in_workers(name, model_dir(name), 2, limits).expect("model loads");
    Arc::new(model).scorer(Some("double"), None).expect("binds")
}

/// The parent process of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the worker runs");
    let after_name = &stat[stat.rfind(')').expect("stat has a name") + 2..];
    after_name
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid")
}

/// Whether the idle workers of `scorer` were forked (from the template, a child of ours)
/// rather than started by this process.
fn forked(scorer: &Scorer) -> bool {
    let pids = scorer
        .model()
        .workers()
        .expect("runs in workers")
        .idle_pids();
    let parents: Vec<u32> = pids.iter().map(|&pid| parent_of(pid)).collect();
    assert_eq!(parents.len(), 2);
    assert!(parents.windows(2).all(|p| p[0] == p[1]), "{parents:?}");
    let forked = parents[0] != std::process::id();
    if forked {
        assert_eq!(
            parent_of(parents[0]),
            std::process::id(),
            "the template is ours"
        );
    }
    forked
}

fn score(scorer: &Scorer, values: &[f64]) -> mlfusion_udf::Result<Vec<f64>> {
    let column: ArrayRef = Arc::new(Float64Array::from(values.to_vec()));
    let name = scorer.model().name();
    let frame = build_input(name, &ModelSignature::default(), &[column], values.len())?;
    let out = scorer.predict(&frame, &ModelMetrics::default())?;
    assert_eq!(out.len(), values.len());
    Ok(out.as_primitive::<Float64Type>().values().to_vec())
}

#[test]
fn workers_answer_and_fail_as_the_embedded_interpreter_does() {
    let values: Vec<f64> = (0..10_000).map(|i| i as f64 / 7.0).collect();
    let in_process = scorer("raiser", 0);
    let workers = scorer("raiser", 2);
    assert_eq!(
        score(&workers, &values).expect("scores"),
        score(&in_process, &values).expect("scores")
    );
    let bad = [1.0, -2.0, 3.0];
    let expected = score(&in_process, &bad).expect_err("raises").to_string();
    let found = score(&workers, &bad).expect_err("raises").to_string();
    assert!(
        expected.starts_with("model 'raiser': predict raised ValueError: negative input in row 1"),
        "{expected}"
    );
    assert_eq!(found, expected);
}

#[test]
fn forked_workers_score_exactly_as_started_ones() {
    let values: Vec<f64> = (0..10_000).map(|i| i as f64 / 3.0).collect();
    let started = scorer_started("raiser", WorkerStart::Spawn);
    let forked_ = scorer_started("raiser", WorkerStart::Fork);
    assert!(!forked(&started));
    assert!(
        forked(&forked_),
        "workers are forked from the model's template"
    );
    for _ in 0..3 {
        assert_eq!(
            score(&forked_, &values).expect("scores"),
            score(&started, &values).expect("scores")
        );
    }
    let bad = [1.0, -2.0, 3.0];
    assert_eq!(
        score(&forked_, &bad).expect_err("raises").to_string(),
        score(&started, &bad).expect_err("raises").to_string()
    );
}

#[test]
fn a_model_whose_load_starts_a_thread_is_never_forked() {
    // Forked, a worker would lack the thread its load started (and whatever lock that
    // thread held): the model's workers start on their own instead.
    let scorer = scorer_started("threaded", WorkerStart::Fork);
    assert!(!forked(&scorer));
    // Each worker has the running thread of its own load: +1.
    for _ in 0..4 {
        assert_eq!(score(&scorer, &[1.0, 2.5]).expect("scores"), [2.0, 3.5]);
    }
}

#[test]
fn a_dead_worker_fails_its_batch_and_is_replaced() {
    for start in [WorkerStart::Fork, WorkerStart::Spawn] {
        a_dead_worker_fails_its_batch_and_is_replaced_when(start);
    }
}

fn a_dead_worker_fails_its_batch_and_is_replaced_when(start: WorkerStart) {
    let scorer = scorer_started("crasher", start);
    assert_eq!(forked(&scorer), start == WorkerStart::Fork);
    let pool = scorer.model().workers().expect("runs in workers");
    let cases = [
        (-9.0, "was killed (signal 9, SIGKILL"),
        (-11.0, "crashed (signal 11, SIGSEGV)"),
        (-3.0, "exited with status 3"),
    ];
    for (trigger, how) in cases {
        let before = pool.idle_pids();
        assert_eq!(before.len(), 2);
        let error = score(&scorer, &[1.0, trigger, 2.0])
            .expect_err("the batch fails")
            .to_string();
        assert!(
            error.starts_with("model 'crasher': its worker process ") && error.contains(how),
            "{error}"
        );
        assert!(
            error.ends_with("while scoring a batch of 3 rows"),
            "{error}"
        );
        let after = pool.idle_pids();
        assert_eq!(after.len(), 2, "the pool is whole again");
        assert_eq!(
            after.iter().filter(|pid| !before.contains(pid)).count(),
            1,
            "exactly one new worker: {before:?} -> {after:?}"
        );
        // Both workers, old and new, score the next batches.
        for _ in 0..4 {
            assert_eq!(score(&scorer, &[1.0, 2.5]).expect("scores"), [1.0, 2.5]);
        }
    }
}
