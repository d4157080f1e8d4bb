//! Output that appears whole or not at all: `COPY ... TO` a local path writes under a
//! temporary name beside the target, moved into place when the statement succeeds and
//! removed when it fails, is cancelled (Ctrl-C, SIGTERM) or is dropped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::CopyTo;

use crate::error::{Error, Result};

/// A staged output: its temporary path, and where it goes on success.
#[derive(Debug)]
pub struct Staged {
    staged: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// For a `COPY` to a local path, the plan writing to a staged path beside it instead;
/// any other plan unchanged.
pub fn stage_copy(plan: LogicalPlan) -> (LogicalPlan, Option<Staged>) {
    let LogicalPlan::Copy(copy) = plan else {
        return (plan, None);
    };
    if copy.output_url.contains("://") {
        return (LogicalPlan::Copy(copy), None); // object stores write atomically themselves
    }
    let staged = Staged::beside(&copy.output_url);
    // DataFusion writes one file or a directory by the URL's shape (a trailing '/', an
    // extension): the staged URL keeps it.
    let slash = if copy.output_url.ends_with('/') {
        "/"
    } else {
        ""
    };
    let output_url = format!("{}{slash}", staged.staged.display());
    let plan = LogicalPlan::Copy(CopyTo {
        input: Arc::clone(&copy.input),
        output_url,
        partition_by: copy.partition_by.clone(),
        file_type: Arc::clone(&copy.file_type),
        options: copy.options.clone(),
        output_schema: Arc::clone(&copy.output_schema),
    });
    (plan, Some(staged))
}

impl Staged {
    /// A hidden, unused name in the target's directory, ending as the target does.
    fn beside(target: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let target = PathBuf::from(target.trim_end_matches('/'));
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let unique = format!(
            ".mlfusion-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Self {
            staged: target.with_file_name(unique),
            target,
            committed: false,
        }
    }

    /// Moves the output into place: a file replaces the target; a directory becomes the
    /// target, or its files join an existing one (as `COPY` into a directory adds files).
    pub fn commit(mut self) -> Result<()> {
        let moved = if self.staged.is_dir() && self.target.is_dir() {
            merge(&self.staged, &self.target)
        } else if self.staged.exists() {
            std::fs::rename(&self.staged, &self.target)
        } else {
            Ok(()) // nothing was written (no rows, no partitions)
        };
        moved.map_err(|source| Error::Write {
            path: self.target.clone(),
            source,
        })?;
        self.committed = true;
        let _ = std::fs::remove_dir_all(&self.staged);
        Ok(())
    }
}

/// Moves every file under `from` to the same place under `to`.
fn merge(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&dest)?;
            merge(&entry.path(), &dest)?;
        } else {
            std::fs::rename(entry.path(), dest)?;
        }
    }
    Ok(())
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staged);
            let _ = std::fs::remove_dir_all(&self.staged);
        }
    }
}
