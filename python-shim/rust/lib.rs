//! `mlfusion._engine`: the mlfusion engine inside the Python that imports it (the wheel).
//!
//! - [`run_cli`]: the `mlfusion` command line (the wheel's console command);
//! - [`session::Session`]: SQL sessions with models and tables, whose results stream as
//!   pyarrow record batches (`mlfusion/_session.py` is the Python API over them).
//!
//! Models run in this interpreter (`workers=0`) or in worker processes started from its
//! `sys.executable`. Every wait on the engine releases the GIL.

mod session;

use std::future::Future;
use std::time::Duration;

use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a wait on the engine wakes to let Python handle signals (Ctrl-C) and draw
/// progress.
const TICK: Duration = Duration::from_millis(100);

/// Runs the `mlfusion` command line with `argv` (the program name first); returns its
/// exit code.
#[pyfunction]
fn run_cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(|| mlfusion_engine::main(argv))
}

/// An engine error as the Python exception `mlfusion.MlfusionError`, its message as the
/// command line prints it; a run stopped by a signal as `KeyboardInterrupt`.
fn to_py(py: Python<'_>, error: mlfusion_engine::error::Error) -> PyErr {
    if error.signal().is_some() {
        return PyKeyboardInterrupt::new_err(error.report());
    }
    match py
        .import("mlfusion._errors")
        .and_then(|m| m.getattr("MlfusionError"))
    {
        Ok(class) => PyErr::from_type(class.cast_into().expect("a class"), error.report()),
        Err(e) => e,
    }
}

/// Runs `future` on `runtime` to its end with the GIL released, waking every [`TICK`] to
/// run Python's signal handlers and `tick` (progress). An exception there (Ctrl-C raises
/// `KeyboardInterrupt`) drops the future, which cancels the work: a write leaves nothing.
fn wait<F>(
    py: Python<'_>,
    runtime: &Runtime,
    future: F,
    mut tick: impl FnMut(Python<'_>) -> PyResult<()>,
) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = std::pin::pin!(future);
    loop {
        let done = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(TICK, future.as_mut()).await.ok() })
        });
        if let Some(out) = done {
            return Ok(out);
        }
        py.check_signals()?;
        tick(py)?;
    }
}

/// [`wait`] with nothing to do between ticks but Python's signal handlers.
fn block<F>(py: Python<'_>, runtime: &Runtime, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    wait(py, runtime, future, |_| Ok(()))
}

/// A session's tokio runtime, shut down without waiting for its threads when the last
/// reference goes: one of them may be waiting for the GIL that the dropping thread holds
/// (a model called in this interpreter).
pub(crate) struct Threads(Option<Runtime>);

impl Threads {
    fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }
}

impl std::ops::Deref for Threads {
    type Target = Runtime;

    fn deref(&self) -> &Runtime {
        self.0.as_ref().expect("set until dropped")
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

#[pymodule]
fn _engine(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(run_cli, m)?)?;
    m.add_class::<session::Session>()?;
    m.add_class::<session::Frame>()?;
    m.add_class::<session::Batches>()?;
    Ok(())
}
