//! A model's Python environment as its files describe it, read in MLflow's order
//! (`mlflow.utils.environment._get_python_env`): `python_env.yaml`; else
//! `requirements.txt` with the Python of `conda.yaml`; else `conda.yaml`'s pip section.
//!
//! [`PythonEnv::requirements`] expands what would be installed, `-r` and `-c` files
//! included and local files by content, so two models that install the same things
//! have the same [`Requirements`] whatever order or files they were written in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pyfunc::mlmodel::{MlModel, escapes};

/// `python_env.yaml`, MLflow's virtualenv description of a model's environment.
pub const PYTHON_ENV_FILE: &str = "python_env.yaml";
/// `requirements.txt`, the pip requirements MLflow writes beside the model.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// `conda.yaml`, the conda description (its pip section is read).
pub const CONDA_FILE: &str = "conda.yaml";

/// The largest environment file read (a real one is a few hundred bytes).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// How deeply `-r` / `-c` files may include each other.
const MAX_INCLUDE_DEPTH: usize = 8;
/// The most requirement lines, all files together.
const MAX_LINES: usize = 10_000;

/// The environment a model asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    /// The Python version (`3.10.13`, or just `3.10`), if the files name one.
    pub python: Option<String>,
    /// Installed before the dependencies (pip, setuptools, wheel pins).
    pub build_dependencies: Vec<String>,
    /// Dependency lines as written, relative to the model directory (`-r requirements.txt`).
    pub dependencies: Vec<String>,
    /// The file the description came from, for messages.
    pub source: PathBuf,
}

/// What an environment installs, normalized: requirement lines with `-r` files expanded,
/// constraint lines with `-c` files expanded, and the content hash of each local file a
/// line names, each set sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requirements {
    /// Requirement lines (`scikit-learn==1.5.2`, `--index-url ...`).
    pub lines: BTreeSet<String>,
    /// Constraint lines.
    pub constraints: BTreeSet<String>,
    /// `<line> sha256:<hex>` for lines naming a file of the model (a wheel, a project).
    pub local_files: BTreeSet<String>,
}

impl Requirements {
    /// Whether a requirement line names the distribution `name` (PEP 503 normalized).
    pub fn names(&self, name: &str) -> bool {
        let wanted = normalize_name(name);
        self.lines
            .iter()
            .any(|line| requirement_name(line).is_some_and(|n| n == wanted))
    }
}

#[derive(Deserialize)]
struct RawPythonEnv {
    #[serde(default)]
    python: Option<serde_json::Value>,
    #[serde(default)]
    build_dependencies: Option<Vec<String>>,
    #[serde(default)]
    dependencies: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct RawConda {
    #[serde(default)]
    dependencies: Option<Vec<serde_json::Value>>,
}

impl PythonEnv {
    /// The environment of `model`, from the files its `MLmodel` names (or MLflow's
    /// default names). A model without any of them gets an empty description.
    pub fn of_model(model: &MlModel) -> Result<Self> {
        let env = model.pyfunc.env.as_ref();
        let named = |key: &str, default: &str| -> String {
            match env {
                Some(serde_json::Value::Object(map)) => map
                    .get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or(default)
                    .to_owned(),
                // MLflow < 2.0: `env` is the conda file
                Some(serde_json::Value::String(conda)) if key == "conda" => conda.clone(),
                _ => default.to_owned(),
            }
        };
        let python_env = named("virtualenv", PYTHON_ENV_FILE);
        let conda = named("conda", CONDA_FILE);
        for (field, value) in [("env.virtualenv", &python_env), ("env.conda", &conda)] {
            if escapes(value) {
                return Err(Error::PathEscapes {
                    path: model.dir.join("MLmodel"),
                    field,
                    value: value.clone(),
                });
            }
        }
        let (python_env, conda) = (model.dir.join(python_env), model.dir.join(conda));
        if python_env.is_file() {
            return Self::from_python_env(&python_env);
        }
        let from_conda = if conda.is_file() {
            Some(Self::from_conda(&conda)?)
        } else {
            None
        };
        let requirements = model.dir.join(REQUIREMENTS_FILE);
        if requirements.is_file() {
            let python = from_conda.as_ref().and_then(|c| c.python.clone());
            return Ok(Self {
                python: python.or_else(|| model.pyfunc.python_version.clone()),
                build_dependencies: from_conda.map(|c| c.build_dependencies).unwrap_or_default(),
                dependencies: vec![format!("-r {REQUIREMENTS_FILE}")],
                source: requirements,
            });
        }
        Ok(from_conda.unwrap_or_else(|| Self {
            python: model.pyfunc.python_version.clone(),
            build_dependencies: vec![],
            dependencies: vec![],
            source: model.dir.join("MLmodel"),
        }))
    }

    /// Reads a `python_env.yaml`.
    pub fn from_python_env(path: &Path) -> Result<Self> {
        let text = read_limited(path)?;
        let raw: RawPythonEnv = serde_saphyr::from_str(&text).map_err(|e| malformed(path, e))?;
        Ok(Self {
            python: raw.python.map(|v| match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            build_dependencies: raw.build_dependencies.unwrap_or_default(),
            dependencies: raw.dependencies.unwrap_or_default(),
            source: path.to_owned(),
        })
    }

    /// Reads a `conda.yaml`: its `python` and its pip section (pip, setuptools and
    /// wheel pins as build dependencies, as MLflow converts them). Other conda
    /// packages cannot be installed by pip, as MLflow refuses them too.
    pub fn from_conda(path: &Path) -> Result<Self> {
        let text = read_limited(path)?;
        let raw: RawConda = serde_saphyr::from_str(&text).map_err(|e| malformed(path, e))?;
        let mut env = Self {
            python: None,
            build_dependencies: vec![],
            dependencies: vec![],
            source: path.to_owned(),
        };
        for dependency in raw.dependencies.unwrap_or_default() {
            match dependency {
                serde_json::Value::String(spec) => {
                    let name = conda_name(&spec);
                    match name.as_str() {
                        "python" => {
                            let version = spec[name.len()..].trim_start_matches(['=', ' ']);
                            env.python = Some(version.to_owned()).filter(|v| !v.is_empty());
                        }
                        "pip" | "setuptools" | "wheel" => {
                            // conda's `pip=23.3` is pip's `pip==23.3`
                            let version = spec[name.len()..].trim();
                            let version = match version.strip_prefix('=') {
                                Some(v) if !v.starts_with('=') => format!("=={v}"),
                                _ => version.to_owned(),
                            };
                            env.build_dependencies.push(format!("{name}{version}"));
                        }
                        _ => {
                            return Err(Error::MalformedEnv {
                                path: path.to_owned(),
                                message: format!(
                                    "the conda package '{spec}' cannot be installed with pip\nhint: give the model a requirements.txt or python_env.yaml"
                                ),
                            });
                        }
                    }
                }
                serde_json::Value::Object(map) => {
                    if let Some(serde_json::Value::Array(pip)) = map.get("pip") {
                        env.dependencies
                            .extend(pip.iter().filter_map(|v| v.as_str()).map(str::to_owned));
                    }
                }
                _ => {}
            }
        }
        Ok(env)
    }

    /// The Python `major.minor` asked for (`3.10.13` -> `(3, 10)`).
    pub fn python_minor(&self) -> Option<(u32, u32)> {
        let version = self.python.as_deref()?;
        let mut parts = version.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts
            .next()?
            .trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()?;
        Some((major, minor))
    }

    /// Expands the dependencies against the model directory `dir`: what gets installed.
    pub fn requirements(&self, dir: &Path) -> Result<Requirements> {
        let mut out = Requirements::default();
        let mut count = 0;
        let lines: Vec<String> = self
            .build_dependencies
            .iter()
            .chain(&self.dependencies)
            .cloned()
            .collect();
        expand(
            &lines,
            dir,
            dir,
            &self.source,
            0,
            false,
            &mut out,
            &mut count,
        )?;
        Ok(out)
    }
}

/// Expands requirement-file lines: `-r` / `-c` files (relative to `base`, inside
/// `root`) recursively, comments and blank lines dropped.
#[allow(clippy::too_many_arguments)]
fn expand(
    lines: &[String],
    base: &Path,
    root: &Path,
    source: &Path,
    depth: usize,
    constraint: bool,
    out: &mut Requirements,
    count: &mut usize,
) -> Result<()> {
    for line in logical_lines(lines) {
        *count += 1;
        if *count > MAX_LINES {
            return Err(Error::MalformedEnv {
                path: source.to_owned(),
                message: format!("more than {MAX_LINES} requirement lines"),
            });
        }
        let include = option_value(&line, &["-r", "--requirement"])
            .map(|f| (f, constraint))
            .or_else(|| option_value(&line, &["-c", "--constraint"]).map(|f| (f, true)));
        if let Some((file, as_constraint)) = include {
            if depth >= MAX_INCLUDE_DEPTH {
                return Err(Error::MalformedEnv {
                    path: source.to_owned(),
                    message: format!(
                        "'{line}': requirement files include each other more than {MAX_INCLUDE_DEPTH} deep"
                    ),
                });
            }
            let path = inside(root, base, &file, source)?;
            let text = read_limited(&path)?;
            let nested: Vec<String> = text.lines().map(str::to_owned).collect();
            let nested_base = path.parent().unwrap_or(base).to_path_buf();
            expand(
                &nested,
                &nested_base,
                root,
                &path,
                depth + 1,
                as_constraint,
                out,
                count,
            )?;
            continue;
        }
        let line = normalize_requirement(line);
        if let Some(file) = local_path(&line) {
            let path = inside(root, base, file, source)?;
            if path.is_file() {
                let digest = sha256_file(&path)?;
                out.local_files.insert(format!("{line} sha256:{digest}"));
            }
        }
        if constraint {
            out.constraints.insert(line);
        } else {
            out.lines.insert(line);
        }
    }
    Ok(())
}

/// A requirement written without the spaces pip ignores (`pandas >= 2` is `pandas>=2`);
/// options, paths and environment markers as they are.
fn normalize_requirement(line: String) -> String {
    if line.starts_with('-') || local_path(&line).is_some() || line.contains("://") {
        return line;
    }
    match line.split_once(';') {
        Some((spec, marker)) => format!("{};{}", spec.replace(' ', ""), marker.trim_start()),
        None => line.replace(' ', ""),
    }
}

/// Lines without comments, continuations joined, whitespace collapsed.
fn logical_lines(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for raw in lines {
        let line = match raw.find(" #").or_else(|| raw.starts_with('#').then_some(0)) {
            Some(i) => &raw[..i],
            None => raw.as_str(),
        };
        if let Some(continued) = line.trim_end().strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let joined = pending.split_whitespace().collect::<Vec<_>>().join(" ");
        pending.clear();
        if !joined.is_empty() {
            out.push(joined);
        }
    }
    let rest = pending.split_whitespace().collect::<Vec<_>>().join(" ");
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

/// The value of `-r FILE`, `-rFILE`, `--requirement FILE` or `--requirement=FILE`.
fn option_value(line: &str, names: &[&str]) -> Option<String> {
    for name in names {
        if let Some(rest) = line.strip_prefix(name) {
            let value = if name.starts_with("--") {
                rest.strip_prefix('=').or_else(|| rest.strip_prefix(' '))?
            } else {
                rest.strip_prefix(' ').unwrap_or(rest)
            };
            let value = value.trim();
            if !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// The path a line installs from, when it names a local file or directory
/// (`./wheels/x.whl`, `wheels/x.whl`, `-e pkg`, `file:./pkg`).
pub(crate) fn local_path(line: &str) -> Option<&str> {
    let editable = line
        .strip_prefix("-e ")
        .or_else(|| line.strip_prefix("--editable "));
    let target = editable.unwrap_or(line).trim();
    let target = target.strip_prefix("file:").unwrap_or(target);
    let path = target.split([' ', ';']).next().unwrap_or(target);
    let archive = [".whl", ".tar.gz", ".zip"]
        .iter()
        .any(|e| path.ends_with(e));
    let is_path =
        path.starts_with("./") || path.starts_with("../") || archive || editable.is_some();
    (is_path && !path.is_empty() && !path.contains("://")).then_some(path)
}

/// `file` relative to `base`, refused when it leaves the model directory `root`.
fn inside(root: &Path, base: &Path, file: &str, source: &Path) -> Result<PathBuf> {
    let relative_to_root = base.strip_prefix(root).unwrap_or(Path::new(""));
    let joined = relative_to_root.join(file);
    if escapes(&joined.to_string_lossy()) {
        return Err(Error::MalformedEnv {
            path: source.to_owned(),
            message: format!("'{file}' is outside the model directory"),
        });
    }
    Ok(root.join(joined))
}

fn read_limited(path: &Path) -> Result<String> {
    let unreadable = |message: String| Error::MalformedEnv {
        path: path.to_owned(),
        message,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(unreadable(format!(
            "{size} bytes, more than an environment file may have ({MAX_FILE_BYTES})"
        )));
    }
    std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))
}

fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| Error::MalformedEnv {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(hex(&sha2::Sha256::digest(&bytes)))
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn malformed(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::MalformedEnv {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// The package name of a conda spec (`python=3.10`, `pip<=23.3.1`).
fn conda_name(spec: &str) -> String {
    spec.trim()
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The distribution a requirement line names, normalized; `None` for options and paths.
pub fn requirement_name(line: &str) -> Option<String> {
    if line.starts_with('-') || local_path(line).is_some() || line.contains("://") {
        return None;
    }
    let name: String = line
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    (!name.is_empty()).then(|| normalize_name(&name))
}

/// PEP 503: lowercase, runs of `-`, `_`, `.` as one `-`.
fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let mlmodel = files
            .iter()
            .find(|(n, _)| *n == "MLmodel")
            .map(|(_, t)| *t)
            .unwrap_or(
                "flavors:\n  python_function:\n    loader_module: m\n    python_version: 3.11.7\n",
            );
        std::fs::write(dir.path().join("MLmodel"), mlmodel).expect("write");
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    fn env_of(dir: &tempfile::TempDir) -> Result<PythonEnv> {
        PythonEnv::of_model(&MlModel::from_path(dir.path()).expect("MLmodel"))
    }

    #[test]
    fn python_env_yaml_comes_first() {
        let dir = model_dir(&[
            (
                "python_env.yaml",
                "python: 3.10.13\nbuild_dependencies:\n- pip==23.3.1\ndependencies:\n- -r requirements.txt\n",
            ),
            ("requirements.txt", "scikit-learn==1.5.2\nnumpy<2\n"),
            ("conda.yaml", "dependencies:\n- python=3.12.1\n"),
        ]);
        let env = env_of(&dir).expect("env");
        assert_eq!(env.python.as_deref(), Some("3.10.13"));
        assert_eq!(env.python_minor(), Some((3, 10)));
        let reqs = env.requirements(dir.path()).expect("requirements");
        let lines: Vec<_> = reqs.lines.iter().map(String::as_str).collect();
        assert_eq!(lines, ["numpy<2", "pip==23.3.1", "scikit-learn==1.5.2"]);
        assert!(reqs.names("Scikit_Learn") && reqs.names("numpy") && !reqs.names("pandas"));
    }

    #[test]
    fn requirements_take_the_python_of_conda_yaml() {
        let dir = model_dir(&[
            ("requirements.txt", "pandas\n"),
            (
                "conda.yaml",
                "channels: [conda-forge]\ndependencies:\n- python=3.12.1\n- pip<=23.3.1\n- pip:\n  - mlflow==3.17.2\n",
            ),
        ]);
        let env = env_of(&dir).expect("env");
        assert_eq!(env.python.as_deref(), Some("3.12.1"));
        assert_eq!(env.build_dependencies, ["pip<=23.3.1"]);
        assert_eq!(env.dependencies, ["-r requirements.txt"]);
    }

    #[test]
    fn conda_yaml_alone_gives_its_pip_section() {
        let dir = model_dir(&[(
            "conda.yaml",
            "dependencies:\n- python=3.10\n- pip=23.3\n- pip:\n  - mlflow==2.17.2\n  - scikit-learn\n",
        )]);
        let env = env_of(&dir).expect("env");
        assert_eq!(env.python_minor(), Some((3, 10)));
        assert_eq!(env.build_dependencies, ["pip==23.3"]);
        assert_eq!(env.dependencies, ["mlflow==2.17.2", "scikit-learn"]);
        let dir = model_dir(&[(
            "conda.yaml",
            "dependencies:\n- python=3.10\n- cudatoolkit=11\n",
        )]);
        let e = env_of(&dir).expect_err("conda-only package");
        assert!(e.to_string().contains("cudatoolkit"), "{e}");
    }

    #[test]
    fn no_files_means_no_requirements_and_the_logged_python() {
        let dir = model_dir(&[]);
        let env = env_of(&dir).expect("env");
        assert_eq!(env.python.as_deref(), Some("3.11.7"));
        assert!(env.requirements(dir.path()).expect("reqs").lines.is_empty());
    }

    #[test]
    fn included_files_count_by_content_not_order() {
        let a = model_dir(&[
            (
                "requirements.txt",
                "-r more/base.txt\n# pinned\nscikit-learn==1.5.2  # why\n-c constraints.txt\n",
            ),
            ("more/base.txt", "numpy==1.26.4\npandas \\\n  ==2.2.3\n"),
            ("constraints.txt", "scipy<1.15\n"),
        ]);
        let b = model_dir(&[
            (
                "requirements.txt",
                "pandas==2.2.3\nscikit-learn==1.5.2\nnumpy==1.26.4\n--constraint=constraints.txt\n",
            ),
            ("constraints.txt", "scipy<1.15\n"),
        ]);
        let reqs = |d: &tempfile::TempDir| {
            env_of(d)
                .and_then(|e| e.requirements(d.path()))
                .expect("reqs")
        };
        assert_eq!(reqs(&a), reqs(&b));
        assert_eq!(
            reqs(&a).constraints.iter().collect::<Vec<_>>(),
            ["scipy<1.15"]
        );
        std::fs::write(
            a.path().join("more/base.txt"),
            "numpy==2.1.0\npandas==2.2.3\n",
        )
        .expect("edit");
        assert_ne!(reqs(&a), reqs(&b));
    }

    #[test]
    fn local_files_count_by_content() {
        let dir = model_dir(&[
            ("requirements.txt", "./wheels/tool-1.0-py3-none-any.whl\n"),
            ("wheels/tool-1.0-py3-none-any.whl", "one"),
        ]);
        let reqs = |d: &tempfile::TempDir| {
            env_of(d)
                .and_then(|e| e.requirements(d.path()))
                .expect("reqs")
        };
        let before = reqs(&dir);
        assert_eq!(before.local_files.len(), 1);
        std::fs::write(dir.path().join("wheels/tool-1.0-py3-none-any.whl"), "two").expect("edit");
        assert_ne!(before, reqs(&dir));
        assert_eq!(requirement_name("./wheels/tool-1.0-py3-none-any.whl"), None);
    }

    #[test]
    fn hostile_files_are_refused() {
        let dir = model_dir(&[("requirements.txt", "-r ../../etc/passwd\n")]);
        let e = env_of(&dir)
            .and_then(|e| e.requirements(dir.path()))
            .expect_err("escape");
        assert!(e.to_string().contains("outside the model directory"), "{e}");
        let dir = model_dir(&[("requirements.txt", "-r requirements.txt\n")]);
        let e = env_of(&dir)
            .and_then(|e| e.requirements(dir.path()))
            .expect_err("loop");
        assert!(e.to_string().contains("more than 8 deep"), "{e}");
        let dir = model_dir(&[("requirements.txt", &"x\n".repeat(600_000))]);
        let e = env_of(&dir)
            .and_then(|e| e.requirements(dir.path()))
            .expect_err("size");
        assert!(
            e.to_string()
                .contains("more than an environment file may have"),
            "{e}"
        );
        let dir = model_dir(&[(
            "MLmodel",
            "flavors:\n  python_function:\n    loader_module: m\n    env:\n      virtualenv: ../x.yaml\n",
        )]);
        let e = env_of(&dir).expect_err("escape");
        assert!(e.to_string().contains("escapes the model directory"), "{e}");
    }
}
