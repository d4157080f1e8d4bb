//! Per-model Python environments, built by uv from the model's own files and cached by
//! content: every process on the machine shares one env per distinct set of
//! requirements and Python minor.
//!
//! Layout under the cache directory:
//!
//! - `envs/<key>/`: a finished env (a venv, relocatable), with `mlfusion-env.json`
//!   saying how it was built, `.mlfusion-used-by/` one file per model URI that used it
//!   (its modification time: when) and `.mlfusion-pycache/` the bytecode of what its
//!   workers imported (compiled by the first worker that imports a module: compiling
//!   every module of a typical env, ~7,000 files, took 10 s of a cold start where a
//!   model imports a third of them);
//! - `locks/<key>.lock`: held exclusively while the env is built or removed, shared by
//!   every process using the env, for its lifetime;
//! - `staging/<key>.<pid>/`: an env being built; renamed into `envs/` only once it is
//!   complete and checked, so a half-built env is never used (a killed build leaves
//!   its staging directory, which the next build of that key removes);
//! - `uv-cache/`: uv's cache (unless `UV_CACHE_DIR` says otherwise), on the same
//!   filesystem so installs are hard links.
//!
//! The key covers what gets installed, not the text that asked for it: the Python
//! minor, the requirement and constraint lines with `-r`/`-c` files expanded (sorted),
//! local files by content, what mlfusion adds, uv's index settings and the platform.

pub mod interpreters;

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use sha2::Digest;

use crate::error::{Error, Result};
use crate::pyfunc::environment::{PythonEnv, Requirements, hex, local_path};
use crate::pyfunc::mlmodel::MlModel;
use crate::python::interpreter::{engine_python, linked_python};
use crate::python::metrics::{OutcomeLabel, process_metrics};
use crate::python::workers::{WorkerPython, check_python};

/// Bumped when what an env must hold for the worker changes: old envs are then not reused.
const LAYOUT_VERSION: u32 = 1;

/// What mlfusion's worker needs in every env, as lower bounds, added only where the
/// model does not name the package: the oldest versions the bridge is tested with
/// (README "Model environments").
pub const WORKER_REQUIREMENTS: [(&str, &str); 3] = [
    ("numpy", "numpy>=1.21"),
    ("pandas", "pandas>=1.3"),
    ("pyarrow", "pyarrow>=8"),
];

/// uv's settings that change what an install resolves to.
const INDEX_SETTINGS: [&str; 8] = [
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_INDEX_STRATEGY",
    "UV_PRERELEASE",
    "UV_EXCLUDE_NEWER",
];

/// uv's settings naming files of constraints or overrides for every install.
const CONSTRAINT_SETTINGS: [&str; 3] = ["UV_CONSTRAINT", "UV_OVERRIDE", "UV_BUILD_CONSTRAINT"];

/// Where a model's Python comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EnvManager {
    /// The engine's own venv (`--venv`), for every model.
    #[default]
    Local,
    /// An env of the model's own, built by uv from its requirements.
    Uv,
}

impl FromStr for EnvManager {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(Self::Local),
            "uv" => Ok(Self::Uv),
            other => Err(format!(
                "unknown env manager '{other}' (local, uv)\nhint: MLflow's virtualenv and conda managers are not supported; uv builds the same environments"
            )),
        }
    }
}

impl std::fmt::Display for EnvManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Uv => "uv",
        })
    }
}

/// The cache of model environments (see the module docs).
#[derive(Debug, Clone)]
pub struct EnvCache {
    root: PathBuf,
    uv: Option<PathBuf>,
    python_downloads: bool,
}

/// A model's env in use: the process holds a shared lock on it until this is dropped,
/// so `gc` and `rm` leave it alone.
#[derive(Debug)]
pub struct ModelEnv {
    key: String,
    dir: PathBuf,
    python_version: String,
    reused: bool,
    _lease: File,
}

impl ModelEnv {
    /// The cache key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The env's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }

    /// The interpreter for workers, with the env's bytecode directory.
    pub(crate) fn worker_python(&self) -> WorkerPython {
        WorkerPython {
            path: self.python(),
            pycache: Some(self.dir.join(PYCACHE_DIR)),
            env: Vec::new(),
        }
    }

    /// Its Python version (`3.10.13`).
    pub fn python_version(&self) -> &str {
        &self.python_version
    }

    /// Whether the env was found built rather than built now.
    pub fn reused(&self) -> bool {
        self.reused
    }
}

/// What a model's env would be: its key and what goes into it.
#[derive(Debug, Clone)]
pub struct EnvPlan {
    /// The cache key.
    pub key: String,
    /// The Python `major.minor`.
    pub python: (u32, u32),
    /// The model's environment description.
    pub env: PythonEnv,
    /// What it installs.
    pub requirements: Requirements,
    /// The lines mlfusion adds (its worker's needs the model does not name).
    pub added: Vec<String>,
}

/// One cached env, as `mlfusion env list` shows it.
#[derive(Debug, Clone)]
pub struct EnvEntry {
    /// The cache key.
    pub key: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its Python version.
    pub python: String,
    /// Bytes on disk (files hard-linked from uv's cache count in full).
    pub size: u64,
    /// When a model last started using it.
    pub last_used: SystemTime,
    /// The model URIs that used it.
    pub models: Vec<String>,
}

impl EnvCache {
    /// A cache in `root`; uv is `MLFUSION_UV`, else the engine venv's, else on `PATH`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            uv: None,
            python_downloads: false,
        }
    }

    /// Uses this uv executable.
    pub fn with_uv(mut self, uv: impl Into<PathBuf>) -> Self {
        self.uv = Some(uv.into());
        self
    }

    /// Lets uv download a Python the machine does not have (off by default).
    pub fn with_python_downloads(mut self, allowed: bool) -> Self {
        self.python_downloads = allowed;
        self
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The key and contents of `model`'s env, without building anything.
    pub fn plan(&self, model_name: &str, model: &MlModel) -> Result<EnvPlan> {
        let env = PythonEnv::of_model(model)?;
        let requirements = env.requirements(&model.dir)?;
        let python = match env.python.as_deref() {
            None => linked_python(),
            Some(_) => env.python_minor().ok_or_else(|| Error::Env {
                model: model_name.to_owned(),
                key: "-".into(),
                message: format!(
                    "cannot read the Python version '{}' in {}",
                    env.python.as_deref().unwrap_or_default(),
                    env.source.display()
                ),
            })?,
        };
        let added: Vec<String> = WORKER_REQUIREMENTS
            .iter()
            .filter(|(name, _)| !requirements.names(name))
            .map(|(_, line)| (*line).to_owned())
            .collect();
        let mut text = format!(
            "mlfusion-env {LAYOUT_VERSION}\nplatform {}-{}\npython {}.{}\n",
            std::env::consts::OS,
            std::env::consts::ARCH,
            python.0,
            python.1
        );
        for setting in INDEX_SETTINGS {
            if let Some(value) = std::env::var_os(setting) {
                text.push_str(&format!("{setting}={}\n", value.to_string_lossy()));
            }
        }
        // Files of constraints and overrides uv applies to every install: by content.
        for setting in CONSTRAINT_SETTINGS {
            if let Some(value) = std::env::var_os(setting) {
                for file in value.to_string_lossy().split_whitespace() {
                    let content = std::fs::read(file).unwrap_or_default();
                    let digest = hex(&sha2::Sha256::digest(&content));
                    text.push_str(&format!("{setting} {file} sha256:{digest}\n"));
                }
            }
        }
        for (kind, lines) in [
            ("require", &requirements.lines),
            ("constrain", &requirements.constraints),
            ("file", &requirements.local_files),
        ] {
            for line in lines {
                text.push_str(&format!("{kind} {line}\n"));
            }
        }
        for line in &added {
            text.push_str(&format!("add {line}\n"));
        }
        let digest = hex(&sha2::Sha256::digest(text.as_bytes()));
        Ok(EnvPlan {
            key: format!("py{}.{}-{}", python.0, python.1, &digest[..16]),
            python,
            env,
            requirements,
            added,
        })
    }

    /// The env of `model` (loaded from `uri`), built now if no process built it before;
    /// processes asking for the same key at once wait for one build.
    pub fn prepare(&self, model_name: &str, uri: &str, model: &MlModel) -> Result<ModelEnv> {
        let plan = self.plan(model_name, model)?;
        let fail = |message: String| Error::Env {
            model: model_name.to_owned(),
            key: plan.key.clone(),
            message,
        };
        for dir in ["envs", "locks", "staging"] {
            std::fs::create_dir_all(self.root.join(dir)).map_err(|e| {
                fail(format!(
                    "cannot create the env cache {}: {e}\nhint: point --env-cache at a writable directory",
                    self.root.join(dir).display()
                ))
            })?;
        }
        let (lock, lock_path) = self.lock_file(&plan.key).map_err(fail)?;
        let dir = self.root.join("envs").join(&plan.key);
        let mut built = false;
        loop {
            lock.lock_shared()
                .map_err(|e| fail(format!("cannot lock {}: {e}", lock_path.display())))?;
            if let Some(python_version) = finished(&dir) {
                self.record_use(&dir, uri);
                if !built {
                    log::info!(
                        "model '{model_name}': reusing env {} (Python {python_version})",
                        plan.key
                    );
                }
                count_env(if built { "built" } else { "reused" });
                return Ok(ModelEnv {
                    key: plan.key,
                    dir,
                    python_version,
                    reused: !built,
                    _lease: lock,
                });
            }
            lock.unlock()
                .map_err(|e| fail(format!("cannot unlock {}: {e}", lock_path.display())))?;
            if lock.try_lock().is_err() {
                log::info!(
                    "model '{model_name}': waiting for another process building env {}",
                    plan.key
                );
                lock.lock()
                    .map_err(|e| fail(format!("cannot lock {}: {e}", lock_path.display())))?;
            }
            if finished(&dir).is_none() {
                if let Err(e) = self.build(model_name, model, &plan, &dir) {
                    count_env("failed");
                    return Err(e);
                }
                built = true;
            }
            lock.unlock()
                .map_err(|e| fail(format!("cannot unlock {}: {e}", lock_path.display())))?;
        }
    }

    /// Builds `plan` into `dir`, through a staging directory (the caller holds the
    /// exclusive lock).
    fn build(&self, model_name: &str, model: &MlModel, plan: &EnvPlan, dir: &Path) -> Result<()> {
        let fail = |message: String| Error::Env {
            model: model_name.to_owned(),
            key: plan.key.clone(),
            message,
        };
        let started = Instant::now();
        let staging_root = self.root.join("staging");
        // Left by builds of this key that were killed: no one else builds it now.
        for entry in std::fs::read_dir(&staging_root)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("{}.", plan.key))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let staging = staging_root.join(format!("{}.{}", plan.key, std::process::id()));
        let uv = self.uv_binary().ok_or_else(|| {
            fail("uv is not available\nhint: run scripts/venv.sh (it installs the pinned uv into the engine's venv), or set MLFUSION_UV to a uv executable".into())
        })?;
        let (major, minor) = plan.python;
        let interpreter = match interpreters::find(major, minor, Some(&uv)) {
            Some(found) => found.path.display().to_string(),
            None if self.python_downloads => format!("{major}.{minor}"),
            None => {
                let found: Vec<String> = interpreters::all(Some(&uv))
                    .iter()
                    .map(|i| format!("{} ({})", i.version_string(), i.path.display()))
                    .collect();
                return Err(fail(format!(
                    "no Python {major}.{minor} on this machine (the model asks for {} in {}; found: {})\nhint: install Python {major}.{minor} (e.g. `pyenv install {major}.{minor}`), or let uv download it with --python-downloads",
                    plan.env.python.as_deref().unwrap_or("the engine's Python"),
                    plan.env.source.display(),
                    if found.is_empty() {
                        "none".into()
                    } else {
                        found.join(", ")
                    }
                )));
            }
        };
        log::info!(
            "model '{model_name}': building env {} (Python {major}.{minor}, {} requirements{})",
            plan.key,
            plan.requirements.lines.len(),
            if plan.added.is_empty() {
                String::new()
            } else {
                format!(", mlfusion adds {}", plan.added.join(" "))
            }
        );
        let run = |what: &str, command: &mut Command| -> Result<()> {
            let out = command
                .output()
                .map_err(|e| fail(format!("cannot run {what}: {e}")))?;
            if out.status.success() {
                return Ok(());
            }
            let _ = std::fs::remove_dir_all(&staging);
            Err(fail(uv_failure(
                what,
                &String::from_utf8_lossy(&out.stderr),
                &plan.added,
            )))
        };
        let downloads = if self.python_downloads {
            "automatic"
        } else {
            "never"
        };
        run(
            "uv venv",
            self.uv_command(&uv)
                .env("UV_PYTHON_DOWNLOADS", downloads)
                .args(["venv", "--quiet", "--relocatable", "--python"])
                .arg(&interpreter)
                .arg(&staging),
        )?;
        let python = staging.join("bin").join("python");
        let build_requirements = model_lines(&plan.env.build_dependencies, &model.dir);
        if !build_requirements.is_empty() {
            run(
                "uv pip install (build dependencies)",
                self.uv_command(&uv)
                    .args(["pip", "install", "--quiet", "--python"])
                    .arg(&python)
                    .args(&build_requirements),
            )?;
        }
        let mut lines = model_lines(&plan.env.dependencies, &model.dir);
        lines.extend(plan.added.iter().cloned());
        let requirements_file = staging.join("mlfusion-requirements.txt");
        std::fs::write(&requirements_file, lines.join("\n") + "\n")
            .map_err(|e| fail(format!("cannot write {}: {e}", requirements_file.display())))?;
        run(
            "uv pip install",
            self.uv_command(&uv)
                .args(["pip", "install", "--quiet", "--python"])
                .arg(&python)
                .arg("-r")
                .arg(&requirements_file)
                .current_dir(&model.dir),
        )?;
        let python_version = match check_python(&python) {
            Ok(version) => version,
            Err(output) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(fail(format!(
                    "the worker cannot import its modules in the new env:\n{output}\nhint: the model's requirements may pin numpy, pandas or pyarrow to versions that do not work together"
                )));
            }
        };
        let info = json!({
            "key": plan.key,
            "python": python_version,
            "interpreter": interpreter,
            "source": plan.env.source.display().to_string(),
            "requirements": plan.requirements.lines,
            "constraints": plan.requirements.constraints,
            "added": plan.added,
            "built_seconds": started.elapsed().as_secs_f64(),
        });
        std::fs::write(staging.join(INFO_FILE), info.to_string())
            .map_err(|e| fail(format!("cannot write the env's info: {e}")))?;
        std::fs::rename(&staging, dir).map_err(|e| {
            fail(format!(
                "cannot move the built env into {}: {e}",
                dir.display()
            ))
        })?;
        log::info!(
            "model '{model_name}': built env {} (Python {python_version}) in {:.1} s",
            plan.key,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    fn uv_command(&self, uv: &Path) -> Command {
        let mut command = build_command(uv);
        if std::env::var_os("UV_CACHE_DIR").is_none() {
            command.env("UV_CACHE_DIR", self.root.join("uv-cache"));
        }
        // Workers compile what they import into the env's own bytecode directory (see
        // the module doc); compiling every module here would only slow the build.
        command.env_remove("UV_COMPILE_BYTECODE");
        command.stdin(std::process::Stdio::null());
        command
    }

    /// The uv executable: the configured one, `MLFUSION_UV`, the one beside the engine's
    /// Python (in its venv), or `PATH`'s.
    fn uv_binary(&self) -> Option<PathBuf> {
        self.uv
            .clone()
            .or_else(|| std::env::var_os("MLFUSION_UV").map(PathBuf::from))
            .or_else(|| {
                engine_python()
                    .and_then(|python| Some(python.parent()?.join("uv")))
                    .filter(|p| p.is_file())
            })
            .or_else(|| {
                std::env::var_os("PATH").and_then(|path| {
                    std::env::split_paths(&path)
                        .map(|d| d.join("uv"))
                        .find(|p| p.is_file())
                })
            })
    }

    /// The lock file of env `key` (created if need be), and its path.
    fn lock_file(&self, key: &str) -> std::result::Result<(File, PathBuf), String> {
        let path = self.root.join("locks").join(format!("{key}.lock"));
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map(|file| (file, path.clone()))
            .map_err(|e| format!("cannot open {}: {e}", path.display()))
    }

    fn record_use(&self, dir: &Path, uri: &str) {
        let used_by = dir.join(USED_BY_DIR);
        let name = &hex(&sha2::Sha256::digest(uri.as_bytes()))[..16];
        let _ = std::fs::create_dir_all(&used_by);
        let _ = std::fs::write(used_by.join(name), uri);
    }

    /// Every finished env, most recently used first.
    pub fn list(&self) -> Result<Vec<EnvEntry>> {
        let envs = self.root.join("envs");
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&envs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
            Err(e) => {
                return Err(Error::Env {
                    model: "-".into(),
                    key: "-".into(),
                    message: format!("cannot read {}: {e}", envs.display()),
                });
            }
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(python) = finished(&dir) else {
                continue;
            };
            let mut models = Vec::new();
            let mut last_used = std::fs::metadata(dir.join(INFO_FILE))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            for used in std::fs::read_dir(dir.join(USED_BY_DIR))
                .into_iter()
                .flatten()
                .flatten()
            {
                if let Ok(modified) = used.metadata().and_then(|m| m.modified()) {
                    last_used = last_used.max(modified);
                }
                if let Ok(uri) = std::fs::read_to_string(used.path()) {
                    models.push(uri);
                }
            }
            models.sort();
            out.push(EnvEntry {
                key: entry.file_name().to_string_lossy().into_owned(),
                size: disk_size(&dir),
                dir,
                python,
                last_used,
                models,
            });
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(out)
    }

    /// Removes the env `key` unless a process is using it.
    pub fn remove(&self, key: &str) -> Result<()> {
        let fail = |message: String| Error::Env {
            model: "-".into(),
            key: key.to_owned(),
            message,
        };
        if key.is_empty() || key.contains(['/', '\\']) || key.starts_with('.') {
            return Err(fail("not an env key".into()));
        }
        let dir = self.root.join("envs").join(key);
        if finished(&dir).is_none() {
            return Err(fail(format!(
                "no such env in {}\nhint: `mlfusion env list` shows the cached ones",
                self.root.display()
            )));
        }
        let (lock, _) = self.lock_file(key).map_err(fail)?;
        if lock.try_lock().is_err() {
            return Err(fail("the env is in use by a running process".into()));
        }
        // Moved aside first: a half-deleted env is never taken for a finished one.
        let trash = self
            .root
            .join("staging")
            .join(format!("{key}.removed-{}", std::process::id()));
        let _ = std::fs::create_dir_all(self.root.join("staging"));
        std::fs::rename(&dir, &trash).map_err(|e| fail(format!("cannot remove it: {e}")))?;
        std::fs::remove_dir_all(&trash).map_err(|e| fail(format!("cannot remove it: {e}")))?;
        Ok(())
    }

    /// Removes envs no process uses, least recently used first: every env unused for
    /// longer than `older_than`, then more until the cache holds at most `max_size`
    /// bytes. Returns the removed envs; envs in use are skipped.
    pub fn gc(&self, older_than: Option<Duration>, max_size: Option<u64>) -> Result<Vec<EnvEntry>> {
        let mut envs = self.list()?;
        envs.reverse(); // least recently used first
        let now = SystemTime::now();
        let mut total: u64 = envs.iter().map(|e| e.size).sum();
        let mut removed = Vec::new();
        for env in envs {
            let old = older_than
                .is_some_and(|age| now.duration_since(env.last_used).unwrap_or_default() > age);
            let too_big = max_size.is_some_and(|max| total > max);
            if !(old || too_big) {
                continue;
            }
            match self.remove(&env.key) {
                Ok(()) => {
                    total = total.saturating_sub(env.size);
                    removed.push(env);
                }
                Err(Error::Env { message, .. }) if message.contains("in use") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

/// Counts an env prepared with `outcome` in the process's metrics.
fn count_env(outcome: &'static str) {
    process_metrics()
        .env_builds
        .get_or_create(&OutcomeLabel { outcome })
        .inc();
}

/// A command of a build: it ends with the process that runs it (a build cancelled by
/// Ctrl-C or killed leaves nothing running that could write into the cache).
fn build_command(program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut command = Command::new(program);
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// The env's build record.
const INFO_FILE: &str = "mlfusion-env.json";
/// One file per model URI that used the env.
const USED_BY_DIR: &str = ".mlfusion-used-by";
/// Where workers in the env keep their bytecode (see the module doc).
const PYCACHE_DIR: &str = ".mlfusion-pycache";

/// The Python version of a finished env in `dir`, `None` when there is none.
fn finished(dir: &Path) -> Option<String> {
    let info = std::fs::read_to_string(dir.join(INFO_FILE)).ok()?;
    let info: serde_json::Value = serde_json::from_str(&info).ok()?;
    dir.join("bin")
        .join("python")
        .exists()
        .then(|| info["python"].as_str().map(str::to_owned))
        .flatten()
}

/// The model's dependency lines for an install run from the staging directory: files
/// they name made absolute (they are relative to the model directory).
fn model_lines(lines: &[String], model_dir: &Path) -> Vec<String> {
    let absolute = |path: &str| model_dir.join(path).display().to_string();
    lines
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            for option in ["-r ", "-c ", "--requirement ", "--constraint "] {
                if let Some(file) = line.strip_prefix(option) {
                    let file = file.trim();
                    if Path::new(file).is_relative() && !file.contains("://") {
                        return format!("{option}{}", absolute(file));
                    }
                    return line.to_owned();
                }
            }
            match local_path(line) {
                Some(path) if Path::new(path).is_relative() => {
                    line.replacen(path, &absolute(path), 1)
                }
                _ => line.to_owned(),
            }
        })
        .collect()
}

/// A failed uv run as an error message, with a hint for the usual causes.
fn uv_failure(what: &str, stderr: &str, added: &[String]) -> String {
    let output = stderr.trim();
    let offline = [
        "network was disabled",
        "Failed to fetch",
        "dns error",
        "Could not connect",
        "error sending request",
    ];
    let hint = if offline.iter().any(|s| output.contains(s)) {
        "hint: the package index cannot be reached and uv's cache does not hold what the env needs; build the env where the index is reachable (`mlfusion env build URI`), or set UV_INDEX_URL to a reachable mirror".to_owned()
    } else if output.contains("No solution found") || output.contains("unsatisfiable") {
        if added.is_empty() {
            "hint: the model's requirements conflict with each other".to_owned()
        } else {
            format!(
                "hint: the model's requirements conflict with each other or with what mlfusion adds for its worker ({})",
                added.join(", ")
            )
        }
    } else if output.contains("No interpreter found") || output.contains("No Python") {
        "hint: install that Python, or let uv download it with --python-downloads".to_owned()
    } else {
        String::new()
    };
    let mut message = format!("{what} failed:\n{output}");
    if !hint.is_empty() {
        message.push('\n');
        message.push_str(&hint);
    }
    message
}

/// Bytes of the files under `dir`.
fn disk_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(files: &[(&str, &str)]) -> (tempfile::TempDir, MlModel) {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("MLmodel"),
            "flavors:\n  python_function:\n    loader_module: m\n",
        )
        .expect("MLmodel");
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write");
        }
        let mlmodel = MlModel::from_path(dir.path()).expect("MLmodel");
        (dir, mlmodel)
    }

    fn key(files: &[(&str, &str)]) -> String {
        let (_dir, mlmodel) = model(files);
        EnvCache::new("/unused")
            .plan("m", &mlmodel)
            .expect("plan")
            .key
    }

    /// The key of a model with `python_env.yaml` naming `python`, `requirements.txt`
    /// holding `requirements` and `base.txt` (which it may include) holding `base`.
    fn key_of(python: &str, requirements: &str, base: &str) -> String {
        let env = format!("python: {python}\ndependencies:\n- -r requirements.txt\n");
        key(&[
            ("python_env.yaml", &env),
            ("requirements.txt", requirements),
            ("base.txt", base),
        ])
    }

    #[test]
    fn install_lines_name_the_model_directory_s_files_by_absolute_path() {
        let lines: Vec<String> = [
            "-r requirements.txt",
            "-c /etc/constraints.txt",
            "wheels/x-1.0-py3-none-any.whl",
            "./pkg",
            "-e sub/pkg",
            "file:./dist/y-2.0.tar.gz ; python_version >= '3.9'",
            "https://example.org/z-1.0-py3-none-any.whl",
            "-e git+https://example.org/repo.git#egg=repo",
            "scikit-learn==1.5.2",
            "# a comment",
            "",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            model_lines(&lines, Path::new("/models/m")),
            [
                "-r /models/m/requirements.txt",
                "-c /etc/constraints.txt",
                "/models/m/wheels/x-1.0-py3-none-any.whl",
                "/models/m/./pkg",
                "-e /models/m/sub/pkg",
                "file:/models/m/./dist/y-2.0.tar.gz ; python_version >= '3.9'",
                "https://example.org/z-1.0-py3-none-any.whl",
                "-e git+https://example.org/repo.git#egg=repo",
                "scikit-learn==1.5.2",
            ]
        );
    }

    #[test]
    fn keys_follow_what_is_installed_not_how_it_is_written() {
        let (requirements, base) = (
            "-r base.txt\nscikit-learn==1.5.2\n",
            "numpy==1.26.4\npandas==2.2.3\n",
        );
        let key = key_of("3.10.4", requirements, base);
        assert!(key.starts_with("py3.10-"), "{key}");
        let reordered = key_of(
            "3.10.4",
            "scikit-learn==1.5.2  # the model's\n\n-r base.txt\n",
            "pandas==2.2.3\nnumpy==1.26.4\n",
        );
        assert_eq!(key, reordered, "order and comments change nothing");
        assert_eq!(
            key,
            key_of("3.10.13", requirements, base),
            "nor does the patch release"
        );
        let edited = key_of("3.10.4", requirements, "numpy==2.1.0\npandas==2.2.3\n");
        assert_ne!(key, edited, "a -r file's content is part of the key");
        let other = key_of("3.12.1", requirements, base);
        assert!(
            other.starts_with("py3.12-") && other[7..] != key[7..],
            "{other}"
        );
    }

    #[test]
    fn mlfusion_adds_only_what_the_model_does_not_name() {
        let (_dir, mlmodel) = model(&[("requirements.txt", "Pandas==1.5.3\nnumpy<2\n")]);
        let plan = EnvCache::new("/unused").plan("m", &mlmodel).expect("plan");
        assert_eq!(plan.added, ["pyarrow>=8"]);
        let (_dir, mlmodel) = model(&[]);
        let plan = EnvCache::new("/unused").plan("m", &mlmodel).expect("plan");
        assert_eq!(plan.added.len(), 3);
        assert_eq!(
            plan.python,
            linked_python(),
            "no Python named: the engine's"
        );
    }

    #[test]
    fn env_managers_parse_and_name_themselves() {
        assert_eq!("UV".parse::<EnvManager>(), Ok(EnvManager::Uv));
        assert_eq!(EnvManager::Local.to_string(), "local");
        let e = "conda".parse::<EnvManager>().expect_err("unsupported");
        assert!(
            e.contains("unknown env manager 'conda'") && e.contains("hint:"),
            "{e}"
        );
    }

    #[test]
    fn failures_of_uv_get_hints_by_cause() {
        let added = vec!["pyarrow>=8".to_owned()];
        let conflict = uv_failure(
            "uv pip install",
            "error: No solution found when resolving",
            &added,
        );
        assert!(
            conflict.contains("conflict") && conflict.contains("pyarrow>=8"),
            "{conflict}"
        );
        let offline = uv_failure(
            "uv pip install",
            "error: No solution found\nhint: Packages were unavailable because the network was disabled",
            &added,
        );
        assert!(offline.contains("cannot be reached"), "{offline}");
        assert!(!uv_failure("uv venv", "boom", &[]).contains("hint:"));
    }
}
