//! Loading models by URI: the URI resolved to a directory by a [`ModelStore`], the model
//! loaded from it in the embedded interpreter or in worker processes.

use crate::error::Result;
use crate::python::model::PyModel;
use crate::python::store::ModelStore;
use crate::python::workers::WorkerLimits;

/// Loads models from paths and URIs, each in the embedded interpreter or in its own
/// worker processes.
#[derive(Debug, Clone)]
pub struct ModelLoader {
    store: ModelStore,
    workers: usize,
    limits: WorkerLimits,
}

impl ModelLoader {
    /// A loader resolving URIs through `store`, loading models in the embedded interpreter.
    pub fn new(store: ModelStore) -> Self {
        Self {
            store,
            workers: 0,
            limits: WorkerLimits::default(),
        }
    }

    /// Loads each model into `workers` Python worker processes instead (0: in process);
    /// see [`PyModel::load_with_workers`].
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers;
        self
    }

    /// Bounds each worker process (predict timeout, recycling).
    pub fn with_worker_limits(mut self, limits: WorkerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Where URIs are resolved and downloads kept.
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// Resolves `uri` and loads the model in it as `name`.
    pub fn load(&self, name: &str, uri: &str) -> Result<PyModel> {
        let resolved = self.store.resolve(name, uri)?;
        PyModel::load_in_workers(name, &resolved.dir, self.workers, self.limits)
            .map(|model| model.with_uri(uri, resolved))
    }
}
