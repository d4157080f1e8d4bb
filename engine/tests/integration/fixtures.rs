//! Shared helpers: running the binary, the venv's python, generated tables.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mlfusion");

/// The repository root.
pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A model directory under testdata/models.
pub(crate) fn test_model(name: &str) -> String {
    repo()
        .join("testdata/models")
        .join(name)
        .display()
        .to_string()
}

/// Runs `mlfusion ARGS`.
pub(crate) fn mlfusion(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("mlfusion runs")
}

/// `mlfusion query -c SQL` with the raiser model (it raises on a negative input) as `r`,
/// in one worker, on batches of 1,000 rows.
pub(crate) fn raiser_query(sql: &str) -> Output {
    let raiser = format!("r={}", test_model("raiser"));
    let args = ["query", "--workers", "1", "--batch-size", "1000"];
    mlfusion(&[&args[..], &["--model", &raiser, "-c", sql]].concat())
}

/// stderr of a run that must fail.
pub(crate) fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// stderr of a run that must fail, naming each of `needles`.
pub(crate) fn failure_naming(out: &Output, needles: &[&str]) -> String {
    let err = failure(out);
    for needle in needles {
        assert!(err.contains(needle), "no '{needle}' in:\n{err}");
    }
    err
}

/// `python testdata/SCRIPT ARGS` (the venv's) with `env` added; its stdout.
pub(crate) fn python_fixture(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("PYO3_PYTHON"))
        .arg(repo().join("testdata").join(script))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{script} {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Starts `command` (a query of a test model that logs its calls to `log`, see
/// `MLFUSION_TEST_PREDICT_LOG`), sends it `signal` once the model was called `calls`
/// times, and returns its exit code.
pub(crate) fn signal_after_calls(
    command: &mut Command,
    log: &Path,
    calls: usize,
    signal: i32,
) -> Option<i32> {
    let _ = std::fs::remove_file(log);
    let mut child = command
        .env("MLFUSION_TEST_PREDICT_LOG", log)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let called = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .count()
    };
    while called() < calls {
        assert!(std::time::Instant::now() < deadline, "the model never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // SAFETY: kill(2) on our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    child.wait().expect("exits").code()
}

/// stdout of a run that must succeed.
pub(crate) fn success(out: &Output) -> String {
    assert!(
        out.status.success(),
        "mlfusion failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a real scikit-learn LinearRegression (y = 2 f0 - 3 f1 + 0.5 f2 + 1) with MLflow.
pub(crate) fn sklearn_model(dir: &Path) -> String {
    let python = env!("PYO3_PYTHON"); // the venv interpreter, from .cargo/config.toml
    let model = dir.join("sklearn-model");
    let out = Command::new(python)
        .arg(repo().join("testdata/make_sklearn_model.py"))
        .arg(&model)
        .output()
        .expect("venv python runs");
    assert!(
        out.status.success(),
        "saving the model failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    model.display().to_string()
}

/// The features of row `i` of [`write_features`].
pub(crate) fn features(i: i64) -> (f64, f64, f64) {
    (
        (i % 1000) as f64 / 100.0,
        ((i * 7) % 113) as f64 / 10.0,
        ((i * 13) % 97) as f64 / 5.0,
    )
}

/// A Parquet file of `rows` rows: id, f0, f1, f2, in 128k-row row groups.
pub(crate) fn write_features(path: &Path, rows: i64) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("f0", DataType::Float64, false),
        Field::new("f1", DataType::Float64, false),
        Field::new("f2", DataType::Float64, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(131_072))
        .build();
    let mut writer = ArrowWriter::try_new(
        File::create(path).expect("create"),
        Arc::clone(&schema),
        Some(props),
    )
    .expect("writer");
    let mut start = 0;
    while start < rows {
        let end = (start + 65_536).min(rows);
        let f: Vec<_> = (start..end).map(features).collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(start..end)),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|f| f.0))),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|f| f.1))),
            Arc::new(Float64Array::from_iter_values(f.iter().map(|f| f.2))),
        ];
        writer
            .write(&RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch"))
            .expect("write");
        start = end;
    }
    writer.close().expect("close");
}

/// All batches of a Parquet file.
pub(crate) fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("output exists"))
        .and_then(|b| b.build())
        .expect("reader")
        .collect::<Result<_, _>>()
        .expect("batches")
}

/// Asserts that every column after `id` of the Parquet file `out` holds the
/// [`sklearn_model`]'s formula for ids 0..rows, in order.
pub(crate) fn assert_scored(out: &Path, rows: i64) {
    let batches = read_parquet(out);
    let mut next = 0;
    for batch in &batches {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        for c in 1..batch.num_columns() {
            let p = batch.column(c).as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                let (f0, f1, f2) = features(ids.value(i));
                let want = 2.0 * f0 - 3.0 * f1 + 0.5 * f2 + 1.0;
                assert!((p.value(i) - want).abs() < 1e-9, "row {i} column {c}");
            }
        }
        for i in 0..batch.num_rows() {
            assert_eq!(ids.value(i), next, "rows keep their order");
            next += 1;
        }
    }
    assert_eq!(next, rows);
}

/// A port nobody listens on, for a server to bind on 127.0.0.1.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server in a process group of its own (servers fork workers), its stderr in `log`,
/// killed as a group when stopped or dropped.
pub(crate) struct ProcessGroup(Child);

impl ProcessGroup {
    pub(crate) fn spawn(command: &mut Command, log: &Path) -> Self {
        let log = File::create(log).expect("log file");
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
        Self(child)
    }

    pub(crate) fn id(&self) -> u32 {
        self.0.id()
    }

    pub(crate) fn stop(&mut self) {
        let group = i32::try_from(self.0.id()).expect("pid fits");
        // SAFETY: kill(2) on our child's process group; no memory is involved.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Processes descending from `pid` (children, their children, ...), from /proc.
pub(crate) fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(parent) = stat_field(child, 1).and_then(|p| p.parse().ok()) {
            parents.push((child, parent));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Running, as opposed to gone or a zombie waiting to be reaped.
pub(crate) fn alive(pid: u32) -> bool {
    stat_field(pid, 0).is_some_and(|state| state != "Z" && state != "X")
}

/// Field `n` after the command name of /proc/PID/stat (0: state, 1: parent pid).
fn stat_field(pid: u32, n: usize) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(n).map(str::to_owned)
}
