//! A pool of Python worker processes for one model, so GIL-bound models use every core.
//!
//! Each worker is the venv's `python` running the bridge plus `worker.py`: it loads the
//! model once, then answers predict requests (an Arrow IPC batch in, one out) over its
//! stdin and stdout. A batch goes to one idle worker and its answer comes back to the same
//! caller, so results keep their order per call. A worker that dies fails the batch it held
//! with an error naming the model, and a new one takes its place at the next checkout.
//! Workers exit when their pipe closes or the engine process is gone (they watch their
//! parent), so none outlives the engine.
//!
//! [`WorkerLimits`] bound a worker: a predict that runs too long fails its batch and the
//! worker is killed and replaced; a worker that has answered enough calls, or grown too
//! large, is replaced between batches, failing nothing.

use std::io::{BufReader, BufWriter, Cursor, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayData, ArrayRef, RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use prometheus_client::metrics::gauge::Gauge;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::pyfunc::enforce::{InputFrame, Label};
use crate::python::exception::reported_error;
use crate::python::messages::{read_message, write_message};
use crate::python::metrics::{ModelLabel, process_metrics};
use crate::python::template::{Started, Template};

/// The worker program: the bridge, then the request loop.
const WORKER_SOURCE: &str = concat!(include_str!("bridge.py"), include_str!("worker.py"));

/// Runs the worker program as `__main__` under the bridge's file name, so tracebacks read
/// as they do in the embedded interpreter. Arguments: the program, the engine's pid.
const BOOTSTRAP: &str = "import sys; exec(compile(sys.argv.pop(1), '_mlfusion_bridge.py', 'exec'))";

/// Runs the worker program in `python` as far as its imports (the bridge's numpy,
/// pandas and pyarrow): the version of that Python, or what it printed on failure.
pub(crate) fn check_python(python: &Path) -> std::result::Result<String, String> {
    let out = Command::new(python)
        .arg("-c")
        .arg(BOOTSTRAP)
        .arg(WORKER_SOURCE)
        .arg("--check")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
        Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    }
}

/// The interpreter a pool's workers run.
#[derive(Debug, Clone)]
pub(crate) struct WorkerPython {
    /// A venv's `python`.
    pub(crate) path: PathBuf,
    /// Where the workers keep the bytecode they compile (`PYTHONPYCACHEPREFIX`), if
    /// anywhere: a model env's modules are compiled by the first worker that imports
    /// them, outside the model's own directory, and reused by every later worker.
    pub(crate) pycache: Option<PathBuf>,
    /// Environment variables of the workers (a binding's `extra_env`).
    pub(crate) env: Vec<(String, String)>,
}

/// How the workers of a pool start, and bounds on each; the bounds are off by default
/// (as in `spark_udf`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerLimits {
    /// How workers start (`--worker-start`).
    pub start: WorkerStart,
    /// A predict running longer fails its batch; the worker is killed and replaced
    /// (`--predict-timeout`).
    pub predict_timeout: Option<Duration>,
    /// A worker that has answered this many calls is replaced (`--worker-max-calls`).
    pub max_calls: Option<u64>,
    /// A worker whose resident memory exceeds this many bytes after a call is replaced
    /// (`--worker-max-rss`).
    pub max_rss: Option<u64>,
}

/// How a pool's workers start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum WorkerStart {
    /// Forked from a template process that loaded the model once (see
    /// [`template`](crate::python::template)); each on its own where the template cannot
    /// fork safely (threads running after the load).
    #[default]
    Fork,
    /// Each worker starts Python and loads the model itself.
    Spawn,
}

/// Worker processes serving one model.
#[derive(Debug)]
pub struct WorkerPool {
    model: String,
    python: WorkerPython,
    /// The load message each new worker gets (the bridge's `load_model` arguments).
    load: Value,
    size: usize,
    limits: WorkerLimits,
    /// The process new workers are forked from, while it can fork them.
    template: Mutex<Option<Arc<Template>>>,
    state: Mutex<PoolState>,
    returned: Condvar,
    /// The process metric of this model's live workers.
    alive: Gauge,
}

#[derive(Debug, Default)]
struct PoolState {
    idle: Vec<Worker>,
    /// Workers alive, idle or busy.
    live: usize,
}

/// One predict request's answer: the prediction and the time spent in `predict`.
pub(crate) struct Answer {
    pub(crate) data: ArrayData,
    /// Waiting for an idle worker.
    pub(crate) queued_time: Duration,
    pub(crate) predict_time: Duration,
}

impl WorkerPool {
    /// Starts `size` workers with `python`, each loading the model described by `load`
    /// (the bridge's `load_model` arguments); they load in parallel.
    pub(crate) fn start(
        model: &str,
        python: WorkerPython,
        mut load: Value,
        size: usize,
        limits: WorkerLimits,
    ) -> Result<Self> {
        load["op"] = json!("load");
        let pool = Self {
            model: model.to_owned(),
            python,
            load,
            size,
            limits,
            template: Mutex::new(None),
            state: Mutex::new(PoolState::default()),
            returned: Condvar::new(),
            alive: process_metrics()
                .workers_alive
                .get_or_create(&ModelLabel::new(model))
                .clone(),
        };
        if limits.start == WorkerStart::Fork {
            pool.start_template()?;
        }
        let mut starting = Vec::with_capacity(size);
        for _ in 0..size {
            starting.push(pool.spawn()?);
        }
        let mut state = pool.lock();
        for worker in starting {
            state.idle.push(pool.await_load(worker)?);
            state.live += 1;
        }
        drop(state);
        Ok(pool)
    }

    /// Starts the template process; a model that cannot load fails here, as it would in
    /// a worker. A template that cannot fork leaves the workers to start on their own.
    fn start_template(&self) -> Result<()> {
        let mut command = self.command(&["--template"]);
        // pyarrow's allocator keeps a purging thread unless told not to; without it the
        // template is one thread and may fork.
        if std::env::var_os("JE_ARROW_MALLOC_CONF").is_none() {
            command.env("JE_ARROW_MALLOC_CONF", "background_thread:false");
        }
        if std::env::var_os("ARROW_DEFAULT_MEMORY_POOL").is_none() {
            command.env("ARROW_DEFAULT_MEMORY_POOL", "jemalloc");
        }
        let started = Template::start(command, &self.load).map_err(|e| {
            self.error(format!(
                "cannot start its template process with {}: {e}",
                self.python.path.display()
            ))
        })?;
        match started {
            Ok(Started::Ready(template)) => {
                *self.template.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(template));
            }
            Ok(Started::Threaded(threads)) => log::info!(
                "model '{}': its template process runs {} threads once the model is loaded, so it cannot fork workers safely; each worker loads the model itself",
                self.model,
                threads.map_or_else(|| "uncounted".into(), |n| n.to_string())
            ),
            Err(header) => {
                return Err(python_error(&self.model, &header).unwrap_or_else(|| {
                    self.error("its template process failed to load it".into())
                }));
            }
        }
        Ok(())
    }

    /// Process ids of the live idle workers (for tests and diagnostics).
    pub fn idle_pids(&self) -> Vec<u32> {
        self.lock().idle.iter().map(|w| w.process.id()).collect()
    }

    /// Scores `frame` on an idle worker with the scorer configuration `config` (the
    /// bridge's `Scorer` arguments). Waits for a worker when all are busy.
    pub(crate) fn predict(
        &self,
        predict_fn: &str,
        config: &str,
        frame: &InputFrame,
    ) -> Result<Answer> {
        let (header, body) = self.encode(predict_fn, config, frame)?;
        let waiting = Instant::now();
        let mut worker = self.checkout()?;
        let queued_time = waiting.elapsed();
        let watchdog = self
            .limits
            .predict_timeout
            .map(|timeout| Watchdog::start(worker.process.id(), timeout));
        let exchanged = worker.exchange(&header, &body);
        let timed_out = watchdog.is_some_and(Watchdog::stop);
        match exchanged {
            Ok((header, body)) if !timed_out => {
                worker.calls += 1;
                self.checkin(worker);
                self.decode(header, &body, queued_time)
            }
            Ok((header, body)) => {
                // Answered as the watchdog fired: the answer stands, the worker is gone.
                worker.end();
                self.replace();
                self.decode(header, &body, queued_time)
            }
            Err(_) => {
                let exit = worker.end();
                let error = if timed_out {
                    let limit = self.limits.predict_timeout.unwrap_or_default();
                    self.error(format!(
                        "predict on a batch of {} rows ran longer than {} s (--predict-timeout); its worker process {} was killed and is replaced",
                        frame.num_rows,
                        limit.as_secs_f64(),
                        worker.process.id(),
                    ))
                } else {
                    self.error(format!(
                        "its worker process {} {exit} while scoring a batch of {} rows",
                        worker.process.id(),
                        frame.num_rows
                    ))
                };
                self.replace();
                Err(error)
            }
        }
    }

    /// Starts a worker in the slot of one that ended, so the pool is whole again for
    /// the next batch; if that fails, the next checkout tries again.
    fn replace(&self) {
        if let Ok(replacement) = self.start_in_slot() {
            self.checkin(replacement);
        }
    }

    fn encode(
        &self,
        predict_fn: &str,
        config: &str,
        frame: &InputFrame,
    ) -> Result<(Value, Vec<u8>)> {
        let labels: Vec<Value> = frame
            .labels
            .iter()
            .map(|label| match label {
                Label::Name(n) => json!(n),
                Label::Index(i) => json!(i),
            })
            .collect();
        let present: Vec<bool> = frame.arrays.iter().map(Option::is_some).collect();
        let arrays: Vec<ArrayRef> = frame.arrays.iter().flatten().cloned().collect();
        let fields: Vec<Field> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(i.to_string(), a.data_type().clone(), true))
            .collect();
        let options = RecordBatchOptions::new().with_row_count(Some(frame.num_rows));
        let batch =
            RecordBatch::try_new_with_options(Schema::new(fields).into(), arrays, &options)?;
        let mut body = Vec::new();
        let mut writer = StreamWriter::try_new(&mut body, &batch.schema())?;
        writer.write(&batch)?;
        writer.finish()?;
        drop(writer);
        let header = json!({
            "op": "predict",
            "predict_fn": predict_fn,
            "config": config,
            "labels": labels,
            "present": present,
            "mode": frame.mode.as_str(),
        });
        Ok((header, body))
    }

    fn decode(&self, header: Value, body: &[u8], queued_time: Duration) -> Result<Answer> {
        if let Some(error) = python_error(&self.model, &header) {
            return Err(error);
        }
        let mut reader = StreamReader::try_new(Cursor::new(body), None)?;
        let batch = reader
            .next()
            .transpose()?
            .ok_or_else(|| self.error("its worker answered without a prediction".into()))?;
        let predict_ns = header["predict_ns"].as_u64().unwrap_or_default();
        Ok(Answer {
            data: batch.column(0).to_data(),
            queued_time,
            predict_time: Duration::from_nanos(predict_ns),
        })
    }

    fn checkout(&self) -> Result<Worker> {
        let mut state = self.lock();
        loop {
            if let Some(worker) = state.idle.pop() {
                return Ok(worker);
            }
            if state.live < self.size {
                state.live += 1;
                drop(state);
                return self.start_in_slot();
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Starts a worker in a slot already counted in `live`; gives the slot back if the
    /// worker cannot start.
    fn start_in_slot(&self) -> Result<Worker> {
        process_metrics()
            .worker_restarts
            .get_or_create(&ModelLabel::new(&self.model))
            .inc();
        let started = self.spawn().and_then(|w| self.await_load(w));
        if started.is_err() {
            self.lock().live -= 1;
            self.returned.notify_one();
        }
        started
    }

    /// Returns a worker to the idle ones, or retires it when it has reached a limit:
    /// its slot is then free for a new worker, started by the next checkout.
    fn checkin(&self, mut worker: Worker) {
        let limits = &self.limits;
        let retire = limits.max_calls.is_some_and(|max| worker.calls >= max)
            || limits.max_rss.is_some_and(|max| {
                resident_bytes(worker.process.id()).is_some_and(|rss| rss > max)
            });
        let mut state = self.lock();
        if retire {
            state.live -= 1;
            drop(state);
            worker.end();
        } else {
            state.idle.push(worker);
        }
        self.returned.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The worker program's command in the pool's Python and environment, with `args`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(&self.python.path);
        if let Some(prefix) = &self.python.pycache {
            command
                .env("PYTHONPYCACHEPREFIX", prefix)
                .env_remove("PYTHONDONTWRITEBYTECODE");
        }
        if std::env::var_os("OMP_NUM_THREADS").is_none() {
            // One worker per core already: native thread pools (OpenMP in scikit-learn's
            // trees, BLAS) get one thread each, as PySpark does for its Python workers.
            command.env("OMP_NUM_THREADS", "1");
        }
        command.envs(self.python.env.iter().map(|(k, v)| (k, v)));
        command
            .arg("-c")
            .arg(BOOTSTRAP)
            .arg(WORKER_SOURCE)
            .args(args)
            .arg(std::process::id().to_string());
        command
    }

    /// A new worker: forked from the template when there is one, else started (and
    /// loading the model itself; its load is awaited by [`WorkerPool::await_load`]).
    fn spawn(&self) -> Result<Worker> {
        let template = self
            .template
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(template) = template {
            match template.fork() {
                Ok((pid, stream)) => return self.forked(pid, stream, template),
                Err(why) => {
                    log::warn!(
                        "model '{}': cannot fork a worker ({why}); workers start on their own from now on",
                        self.model
                    );
                    *self.template.lock().unwrap_or_else(|p| p.into_inner()) = None;
                }
            }
        }
        let mut child = self
            .command(&[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                self.error(format!(
                    "cannot start a worker process with {}: {e}",
                    self.python.path.display()
                ))
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            unreachable!("stdin and stdout are piped");
        };
        let mut worker = Worker::new(
            Process::Started(child),
            Box::new(stdin),
            Box::new(stdout),
            &self.alive,
        );
        if write_message(&mut worker.requests, &self.load, &[]).is_err() {
            let exit = worker.end();
            return Err(self.error(format!("its worker process {exit} before loading")));
        }
        Ok(worker)
    }

    /// A worker forked from `template` (the model loaded already), answering on `stream`.
    fn forked(&self, pid: u32, stream: UnixStream, template: Arc<Template>) -> Result<Worker> {
        let reader = stream
            .try_clone()
            .map_err(|e| self.error(format!("cannot use the socket of worker {pid}: {e}")))?;
        Ok(Worker::new(
            Process::Forked(pid, template),
            Box::new(stream),
            Box::new(reader),
            &self.alive,
        ))
    }

    fn await_load(&self, mut worker: Worker) -> Result<Worker> {
        if matches!(worker.process, Process::Forked(..)) {
            return Ok(worker); // loaded by its template
        }
        match read_message(&mut worker.answers) {
            Ok((header, _)) => match python_error(&self.model, &header) {
                None => Ok(worker),
                Some(error) => Err(error),
            },
            Err(_) => {
                let exit = worker.end();
                Err(self.error(format!("its worker process {exit} while loading the model")))
            }
        }
    }

    fn error(&self, message: String) -> Error {
        Error::Call {
            model: self.model.clone(),
            message,
        }
    }
}

/// A model error reported by a worker, as the in-process path reports it.
fn python_error(model: &str, header: &Value) -> Option<Error> {
    if header["ok"].as_bool() == Some(true) {
        return None;
    }
    let error = &header["error"];
    let text = |key: &str| error[key].as_str().unwrap_or_default();
    let notes: Vec<String> = error["notes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .collect();
    Some(reported_error(
        model,
        text("stage"),
        text("exception"),
        text("traceback"),
        &notes,
    ))
}

/// A running worker and its channel (pipes to a started worker, a socket to a forked one).
struct Worker {
    /// Calls answered.
    calls: u64,
    process: Process,
    requests: BufWriter<Box<dyn Write + Send>>,
    answers: BufReader<Box<dyn Read + Send>>,
    /// Counts the worker while it lives.
    alive: Gauge,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("pid", &self.process.id())
            .finish()
    }
}

/// A worker's process: a child of the engine, or of the pool's template.
enum Process {
    Started(Child),
    Forked(u32, Arc<Template>),
}

impl Process {
    fn id(&self) -> u32 {
        match self {
            Process::Started(child) => child.id(),
            Process::Forked(pid, _) => *pid,
        }
    }

    /// Kills the process if it still runs and says how it ended.
    fn end(&mut self) -> String {
        match self {
            Process::Started(child) => {
                let _ = child.kill();
                match child.wait() {
                    Ok(status) => describe_exit(status.code(), status.signal()),
                    Err(e) => format!("ended (cannot wait for it: {e})"),
                }
            }
            Process::Forked(pid, template) => {
                // Not once it has ended: its pid may be another process's by now.
                if template.exit_code(*pid, Duration::ZERO).is_none() {
                    kill(*pid);
                }
                match template.exit_code(*pid, REAP_TIMEOUT) {
                    Some(code) if code < 0 => describe_exit(None, Some(-code)),
                    Some(code) => describe_exit(Some(code), None),
                    None => "ended (its template process did not say how)".into(),
                }
            }
        }
    }
}

impl Worker {
    fn new(
        process: Process,
        requests: Box<dyn Write + Send>,
        answers: Box<dyn Read + Send>,
        alive: &Gauge,
    ) -> Self {
        alive.inc();
        Self {
            calls: 0,
            process,
            requests: BufWriter::with_capacity(1 << 20, requests),
            answers: BufReader::with_capacity(1 << 20, answers),
            alive: alive.clone(),
        }
    }

    fn exchange(&mut self, header: &Value, body: &[u8]) -> std::io::Result<(Value, Vec<u8>)> {
        write_message(&mut self.requests, header, body)?;
        read_message(&mut self.answers)
    }

    /// Kills the process if it still runs and says how it ended.
    fn end(&mut self) -> String {
        self.process.end()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.alive.dec();
        match &mut self.process {
            Process::Started(child) => {
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Process::Forked(pid, template) => {
                if template.exit_code(*pid, Duration::ZERO).is_none() {
                    kill(*pid);
                }
            }
        }
    }
}

/// Kills a worker whose predict runs past its deadline.
struct Watchdog {
    done: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn start(pid: u32, timeout: Duration) -> Self {
        let (done, finished) = mpsc::channel();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&fired);
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(timeout) {
                flag.store(true, Ordering::SeqCst);
                kill(pid);
            }
        });
        Self {
            done,
            thread,
            fired,
        }
    }

    /// Stops watching (once the watchdog has either fired or stood down); true when the
    /// deadline had passed and the worker was killed.
    fn stop(self) -> bool {
        let _ = self.done.send(());
        let _ = self.thread.join();
        self.fired.load(Ordering::SeqCst)
    }
}

/// SIGKILL to a worker process (its `Child` is busy in the exchange that is late).
#[allow(unsafe_code)]
fn kill(pid: u32) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory effects; the pid is our own child, not yet reaped.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// The resident memory of process `pid`, from `/proc/<pid>/status` (Linux).
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// How long the end of a killed forked worker may take to be reported by its template.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);

/// How a process ended, from its exit code or the signal that ended it.
fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(9)) => {
            "was killed (signal 9, SIGKILL, as the out-of-memory killer does)".into()
        }
        (None, Some(11)) => "crashed (signal 11, SIGSEGV)".into(),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => "ended".into(),
    }
}
