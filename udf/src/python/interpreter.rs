//! The embedded CPython: started once, pointed at a venv, with the bridge module loaded;
//! or, when mlfusion is a Python extension module (the wheel), the Python it runs in.
//!
//! Rules (see the crate docs): the interpreter is started before any thread attaches;
//! afterwards any thread may [`attach`], but only around a Python call — never while
//! waiting on DataFusion, a channel or a future.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::error::{Error, Result};
use crate::python::exception::format_py_err;

/// The venv the binary was built against (`PYO3_PYTHON` from `.cargo/config.toml`).
const BUILD_PYTHON: Option<&str> = option_env!("PYO3_PYTHON");

static STARTED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static BRIDGE: OnceLock<Py<PyModule>> = OnceLock::new();

thread_local! {
    /// Whether this thread's Python thread state is kept (see [`attach`]).
    static THREAD_STATE_KEPT: Cell<bool> = const { Cell::new(false) };
}

/// `Python::attach`, keeping the thread's Python thread state for the rest of the thread's
/// life instead of deleting it when `f` returns.
///
/// pybind11 (TensorFlow, Keras 3, ONNX Runtime, ...) remembers the thread state of the
/// thread that first imports one of its modules, and takes the GIL with it later: with
/// `Python::attach` alone, that state is freed when the call returns, and the next call
/// on the same thread (a tokio worker scoring the next batch) crashes the process in
/// `take_gil`. One `PyGILState_Ensure` that is never released keeps the state alive: later
/// attaches reuse it (a thread that ends leaves it behind, a few hundred bytes).
pub(crate) fn attach<F, R>(f: F) -> R
where
    F: for<'py> FnOnce(Python<'py>) -> R,
{
    Python::attach(|py| {
        if !THREAD_STATE_KEPT.replace(true) {
            // SAFETY: attached, so the interpreter is running and this thread holds the
            // GIL: Ensure only counts one more holder of this thread's state, which is
            // never released, so the state outlives every later attach.
            unsafe {
                ffi::PyGILState_Ensure();
            }
        }
        f(py)
    })
}

/// Where the embedded interpreter takes its packages from, in order: an explicit venv,
/// `MLFUSION_VENV`, `VIRTUAL_ENV`, then the venv the `mlfusion` binary was built with.
pub fn default_venv() -> Option<PathBuf> {
    std::env::var_os("MLFUSION_VENV")
        .or_else(|| std::env::var_os("VIRTUAL_ENV"))
        .map(PathBuf::from)
        .or_else(|| {
            BUILD_PYTHON
                .map(Path::new)
                .and_then(|python| python.parent()?.parent().map(Path::to_path_buf))
        })
}

/// The version of the Python mlfusion is linked against (`3.11.7`).
pub fn linked_version() -> String {
    // SAFETY: Py_GetVersion returns a static string and may be called before initialisation.
    let full = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    full.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The `(major, minor)` of [`linked_version`].
pub fn linked_python() -> (u32, u32) {
    let version = linked_version();
    let mut parts = version.split('.').filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(3), parts.next().unwrap_or(0))
}

/// Starts the interpreter with `venv` (or [`default_venv`]), or adopts the one already
/// running when mlfusion is a Python extension (the wheel); later calls are no-ops that
/// return the first outcome. Returns the Python executable worker processes run.
pub fn start_python(venv: Option<&Path>) -> Result<PathBuf> {
    STARTED
        .get_or_init(|| {
            // SAFETY: Py_IsInitialized may be called at any time.
            if unsafe { ffi::Py_IsInitialized() } != 0 {
                return running_python(venv);
            }
            let venv = venv
                .map(Path::to_path_buf)
                .or_else(default_venv)
                .ok_or_else(|| "no Python venv configured\nhint: run scripts/venv.sh, or set MLFUSION_VENV to a venv with mlflow, pandas and pyarrow".to_owned())?;
            init_with_venv(&venv)?;
            Ok(venv.join("bin").join("python"))
        })
        .clone()
        .map_err(|message| Error::Interpreter { message })
}

/// The Python executable of [`start_python`] once it has run; before, the default
/// venv's. Starts nothing.
pub(crate) fn engine_python() -> Option<PathBuf> {
    match STARTED.get() {
        Some(Ok(python)) => Some(python.clone()),
        _ => default_venv().map(|venv| venv.join("bin").join("python")),
    }
}

/// The executable of the Python this process already runs (mlfusion imported as an
/// extension module): models run in it and in workers of its `sys.executable`.
fn running_python(venv: Option<&Path>) -> Result<PathBuf, String> {
    let executable = Python::attach(|py| -> PyResult<PathBuf> {
        py.import("sys")?.getattr("executable")?.extract()
    })
    .map_err(|e| format!("cannot read sys.executable: {e}"))?;
    if let Some(venv) = venv
        && !executable.starts_with(venv)
    {
        return Err(format!(
            "mlfusion runs in the Python it is installed in ({}), not in the venv {}\nhint: install mlfusion into that venv and run its mlfusion",
            executable.display(),
            venv.display()
        ));
    }
    Ok(executable)
}

fn init_with_venv(venv: &Path) -> Result<(), String> {
    let python = venv.join("bin").join("python");
    if !python.exists() {
        return Err(format!(
            "venv {} has no bin/python\nhint: run scripts/venv.sh, or set MLFUSION_VENV to a Python 3.11 venv",
            venv.display()
        ));
    }
    // SAFETY: Py_GetVersion returns a static string and may be called before initialisation.
    let full = unsafe { std::ffi::CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    let linked: String = full.split('.').take(2).collect::<Vec<_>>().join(".");
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).unwrap_or_default();
    let version = cfg
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| matches!(k.trim(), "version" | "version_info"))
        .map(|(_, v)| v.trim().to_owned());
    if let Some(version) = &version
        && !(version == &linked || version.starts_with(&format!("{linked}.")))
    {
        return Err(format!(
            "venv {} is Python {version}, but mlfusion is linked against Python {linked}",
            venv.display()
        ));
    }
    let program = CString::new(python.as_os_str().as_encoded_bytes())
        .map_err(|_| "venv path contains a NUL byte".to_owned())?;
    // SAFETY: runs once (OnceLock) before any other use of Python in the process; the
    // config is initialised by PyConfig_InitPythonConfig and cleared after use.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        let mut cfg = MaybeUninit::<ffi::PyConfig>::zeroed();
        let c = cfg.as_mut_ptr();
        ffi::PyConfig_InitPythonConfig(c);
        // Ctrl-C belongs to the Rust program, not to Python.
        (*c).install_signal_handlers = 0;
        // The program name makes CPython read <venv>/pyvenv.cfg, exactly as running the
        // venv's python does: right sys.prefix, sys.executable and site-packages.
        let status = ffi::PyConfig_SetBytesString(c, &raw mut (*c).program_name, program.as_ptr());
        if ffi::PyStatus_Exception(status) != 0 {
            ffi::PyConfig_Clear(c);
            return Err(status_message(status));
        }
        let status = ffi::Py_InitializeFromConfig(c);
        ffi::PyConfig_Clear(c);
        if ffi::PyStatus_Exception(status) != 0 {
            return Err(status_message(status));
        }
        // Release the GIL taken by initialisation so any thread can attach.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

fn status_message(status: ffi::PyStatus) -> String {
    if status.err_msg.is_null() {
        return "Python initialisation failed".into();
    }
    // SAFETY: err_msg is a static NUL-terminated C string set by CPython.
    let msg = unsafe { std::ffi::CStr::from_ptr(status.err_msg) };
    format!("Python initialisation failed: {}", msg.to_string_lossy())
}

/// The bridge module (`bridge.py`), imported on first use.
pub(crate) fn bridge(py: Python<'_>) -> Result<&Bound<'_, PyModule>> {
    if let Some(module) = BRIDGE.get() {
        return Ok(module.bind(py));
    }
    let code = CString::new(include_str!("bridge.py")).expect("bridge.py has no NUL bytes");
    let module = PyModule::from_code(py, &code, c"_mlfusion_bridge.py", c"_mlfusion_bridge")
        .map_err(|e| Error::Interpreter {
            message: format!(
                "cannot import the mlfusion bridge (numpy, pandas and pyarrow are required): {}",
                format_py_err(py, &e).0
            ),
        })?;
    let _ = BRIDGE.set(module.unbind());
    Ok(BRIDGE.get().expect("just set").bind(py))
}
