//! Loading models by URI: the URI resolved to a directory by a [`ModelStore`], the
//! model's environment chosen ([`EnvManager`]), the model loaded in the embedded
//! interpreter or in worker processes.

use crate::error::{Error, Result};
use crate::pyfunc::mlmodel::MlModel;
use crate::python::environments::{EnvCache, EnvManager};
use crate::python::model::{LoadOptions, PyModel};
use crate::python::store::ModelStore;
use crate::python::workers::WorkerLimits;

/// Loads models from paths and URIs, each in the embedded interpreter, in worker
/// processes of the engine's venv, or in worker processes of its own env.
#[derive(Debug, Clone)]
pub struct ModelLoader {
    store: ModelStore,
    workers: usize,
    limits: WorkerLimits,
    env_manager: EnvManager,
    envs: Option<EnvCache>,
}

impl ModelLoader {
    /// A loader resolving URIs through `store`, loading models in the embedded interpreter.
    pub fn new(store: ModelStore) -> Self {
        Self {
            store,
            workers: 0,
            limits: WorkerLimits::default(),
            env_manager: EnvManager::Local,
            envs: None,
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

    /// Gives models their environment through `manager` unless a model asks for another;
    /// envs of their own are kept in `envs`.
    pub fn with_envs(mut self, manager: EnvManager, envs: EnvCache) -> Self {
        self.env_manager = manager;
        self.envs = Some(envs);
        self
    }

    /// Where URIs are resolved and downloads kept.
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// Where models' own envs are kept, if anywhere.
    pub fn envs(&self) -> Option<&EnvCache> {
        self.envs.as_ref()
    }

    /// Resolves `uri` and loads the model in it as `name`, in the loader's env manager.
    pub fn load(&self, name: &str, uri: &str) -> Result<PyModel> {
        self.load_in(name, uri, &LoadOptions::default())
    }

    /// Like [`ModelLoader::load`], with the binding's `options`.
    pub fn load_in(&self, name: &str, uri: &str, options: &LoadOptions) -> Result<PyModel> {
        let resolved = self.store.resolve(name, uri)?;
        let mlmodel = MlModel::from_path(&resolved.dir).map_err(|e| Error::InModel {
            model: name.to_owned(),
            source: Box::new(e),
        })?;
        let env = match options.env_manager.unwrap_or(self.env_manager) {
            EnvManager::Local => None,
            EnvManager::Uv => {
                let envs = self.envs.as_ref().ok_or_else(|| Error::Env {
                    model: name.to_owned(),
                    key: "-".into(),
                    message: "no env cache is configured for this loader".into(),
                })?;
                Some(envs.prepare(name, uri, &mlmodel)?)
            }
        };
        PyModel::from_mlmodel(name, mlmodel, self.workers, self.limits, env, options)
            .map(|model| model.with_uri(uri, resolved))
    }
}
