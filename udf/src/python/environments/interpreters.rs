//! The machine's Python interpreters: on `PATH`, under pyenv's versions directory and
//! among uv's managed installs. The highest patch of a `major.minor` wins.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// One interpreter and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable.
    pub path: PathBuf,
    /// `(major, minor, patch)`.
    pub version: (u32, u32, u32),
}

impl Interpreter {
    /// `3.10.13`.
    pub fn version_string(&self) -> String {
        let (major, minor, patch) = self.version;
        format!("{major}.{minor}.{patch}")
    }
}

/// Every interpreter found, highest version first (found once per process).
pub fn all(uv: Option<&Path>) -> &'static [Interpreter] {
    static FOUND: OnceLock<Vec<Interpreter>> = OnceLock::new();
    FOUND.get_or_init(|| discover(uv))
}

/// The interpreter of `major.minor` with the highest patch, if there is one.
pub fn find(major: u32, minor: u32, uv: Option<&Path>) -> Option<&'static Interpreter> {
    all(uv)
        .iter()
        .find(|i| (i.version.0, i.version.1) == (major, minor))
}

fn discover(uv: Option<&Path>) -> Vec<Interpreter> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    // pyenv's versions and uv's managed Pythons hold one interpreter per directory.
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    let mut roots: Vec<PathBuf> = pyenv.into_iter().map(|p| p.join("versions")).collect();
    if let Some(dir) = uv.and_then(uv_python_dir) {
        roots.push(dir);
    }
    for root in roots {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            candidates.push(entry.path().join("bin").join("python3"));
        }
    }
    // On PATH, versioned names only: `python3` is one of them under another name.
    for dir in std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        if dir.ends_with("shims") {
            continue; // pyenv's shims stand for the versions found above
        }
        for minor in 6..=20 {
            candidates.push(dir.join(format!("python3.{minor}")));
        }
    }
    let mut found: Vec<Interpreter> = Vec::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    for path in candidates.into_iter().filter(|p| p.is_file()) {
        // One interpreter under several names (symlinks) is asked once.
        if !path.canonicalize().is_ok_and(|real| seen.insert(real)) {
            continue;
        }
        if let Some(version) = version_of(&path) {
            found.push(Interpreter { path, version });
        }
    }
    found.sort_by_key(|i| std::cmp::Reverse(i.version));
    found
}

/// What `python` says its version is.
fn version_of(python: &Path) -> Option<(u32, u32, u32)> {
    let out = Command::new(python)
        .args([
            "-I",
            "-c",
            "import sys; print('%d.%d.%d' % sys.version_info[:3])",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    parse_version(String::from_utf8_lossy(&out.stdout).trim())
}

/// `3.10.13` as numbers.
pub fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Where uv keeps the Pythons it manages.
fn uv_python_dir(uv: &Path) -> Option<PathBuf> {
    let out = Command::new(uv)
        .args(["python", "dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
