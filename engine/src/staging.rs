//! Output that appears whole or not at all: `COPY ... TO` writes under a temporary
//! name beside the target, moved into place when the statement succeeds and removed
//! when it fails, is cancelled (Ctrl-C, SIGTERM) or is dropped. Local paths and object
//! stores alike: DataFusion completes the files of a `COPY` whose input fails halfway.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::CopyTo;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Error, Result};
use crate::stores::store_url;

/// A staged output: its temporary location, and where it goes on success.
#[derive(Debug)]
pub enum Staged {
    Local(LocalStaged),
    Store(StoreStaged),
}

/// A `COPY` to a local path, staged beside it.
#[derive(Debug)]
pub struct LocalStaged {
    staged: PathBuf,
    target: PathBuf,
    committed: bool,
}

/// A `COPY` to an object store, staged under a hidden key beside its target: committed
/// by renaming every object under the staged key (S3: copy, then delete).
#[derive(Debug)]
pub struct StoreStaged {
    store: Arc<dyn ObjectStore>,
    staged: ObjectPath,
    target: ObjectPath,
    url: String,
    committed: bool,
}

/// For a `COPY`, the plan writing to a staged location beside its target instead; any
/// other plan unchanged.
pub fn stage_copy(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<(LogicalPlan, Option<Staged>)> {
    let LogicalPlan::Copy(copy) = plan else {
        return Ok((plan, None));
    };
    // DataFusion writes one file or a directory by the URL's shape (a trailing '/', an
    // extension): the staged URL keeps it.
    let slash = if copy.output_url.ends_with('/') {
        "/"
    } else {
        ""
    };
    let (output_url, staged) = if let Some(mut url) = store_url(&copy.output_url) {
        let store = ctx.runtime_env().object_store_registry.get_store(&url)?;
        let target = PathBuf::from(url.path().trim_end_matches('/'));
        let staged = hidden_name(&target);
        url.set_path(&format!("{}{slash}", staged.display()));
        let staged = StoreStaged {
            store,
            staged: ObjectPath::from_url_path(staged.to_string_lossy().as_ref())
                .map_err(|e| encode_error(&copy.output_url, e))?,
            target: ObjectPath::from_url_path(target.to_string_lossy().as_ref())
                .map_err(|e| encode_error(&copy.output_url, e))?,
            url: copy.output_url.clone(),
            committed: false,
        };
        (url.to_string(), Staged::Store(staged))
    } else {
        let target = PathBuf::from(copy.output_url.trim_end_matches('/'));
        let staged = LocalStaged {
            staged: hidden_name(&target),
            target,
            committed: false,
        };
        (
            format!("{}{slash}", staged.staged.display()),
            Staged::Local(staged),
        )
    };
    Ok((
        LogicalPlan::Copy(CopyTo { output_url, ..copy }),
        Some(staged),
    ))
}

fn encode_error(url: &str, e: impl std::fmt::Display) -> Error {
    Error::Encode {
        path: url.into(),
        message: e.to_string(),
    }
}

/// A hidden, unused name in `target`'s directory, ending as the target does.
fn hidden_name(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique = format!(
        ".mlfusion-{}-{}-{name}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    target.with_file_name(unique)
}

impl Staged {
    /// Moves the output into place (see [`LocalStaged::commit`], [`StoreStaged::commit`]).
    pub async fn commit(self) -> Result<()> {
        match self {
            Staged::Local(staged) => staged.commit(),
            Staged::Store(staged) => staged.commit().await,
        }
    }
}

impl StoreStaged {
    /// Renames every object under the staged key to the same place under the target: a
    /// file replaces the target; a directory's files join the target's.
    async fn commit(mut self) -> Result<()> {
        let fail = |e: object_store::Error| encode_error(&self.url, e);
        let objects: Vec<_> = self.objects().await.map_err(fail)?;
        let prefix: Vec<_> = self.staged.parts().collect();
        for from in objects {
            let rest: Vec<_> = from.parts().skip(prefix.len()).collect();
            let to: ObjectPath = self.target.parts().chain(rest).collect();
            self.store.rename(&from, &to).await.map_err(fail)?;
        }
        self.committed = true;
        Ok(())
    }

    /// The staged object and the objects under it.
    async fn objects(&self) -> object_store::Result<Vec<ObjectPath>> {
        let mut objects: Vec<_> = self
            .store
            .list(Some(&self.staged))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await?;
        if self.store.head(&self.staged).await.is_ok() {
            objects.push(self.staged.clone());
        }
        Ok(objects)
    }
}

impl Drop for StoreStaged {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        // Deleting needs the store's client, on the runtime this runs on.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return;
        }
        tokio::task::block_in_place(|| {
            runtime.block_on(async {
                for object in self.objects().await.unwrap_or_default() {
                    let _ = self.store.delete(&object).await;
                }
            });
        });
    }
}

impl LocalStaged {
    /// Moves the output into place: a file replaces the target; a directory becomes the
    /// target, or its files join an existing one (as `COPY` into a directory adds files).
    fn commit(mut self) -> Result<()> {
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

impl Drop for LocalStaged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.staged);
            let _ = std::fs::remove_dir_all(&self.staged);
        }
    }
}
