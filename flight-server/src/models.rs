//! The models a server serves: loaded at start, bound on demand to the result types and
//! params clients ask for. Bindings are shared by all streams and kept in a bounded cache
//! (least recently used first out), keyed by what the model sees: the resolved result
//! type and the validated params, so params the model ignores make no new binding.
//!
//! A model may be replaced by a new version while it serves ([`ServedModels::replace`]):
//! streams hold the version they started with, new streams get the new one, and the old
//! version is unloaded when its last stream ends.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use mlfusion_udf::python::store::has_scheme;
use mlfusion_udf::{Binding, ModelMetrics, OnError, PyModel, Scorer};
use tonic::Status;

use crate::metrics::{VersionLabel, server_metrics};

/// The default of [`ServedModels::with_max_bindings`].
pub const DEFAULT_MAX_BINDINGS: usize = 64;

/// One served model and its bindings.
#[derive(Debug)]
pub struct ServedModel {
    model: Arc<PyModel>,
    default_result_type: Option<String>,
    /// What calls that do not say do with rows that fail.
    default_on_error: OnError,
    /// Why the default binding failed, if it did: calls that rely on it fail with this.
    default_error: Option<String>,
    /// Most recently used last.
    bindings: Mutex<VecDeque<(Binding, Arc<Scorer>)>>,
    max_bindings: usize,
    /// Counters over every stream that used the model.
    pub metrics: ModelMetrics,
}

impl ServedModel {
    /// The loaded model.
    pub fn model(&self) -> &Arc<PyModel> {
        &self.model
    }

    /// The URI the model was registered with, when it is one clients may see: registry
    /// and remote URIs, never a path of the server's file system.
    pub fn uri(&self) -> Option<&str> {
        remote_uri(self.model.uri())
    }

    /// The URI this version resolved to when it loaded (`models:/churn/3` for
    /// `models:/churn@champion`), under the same rule.
    pub fn version(&self) -> Option<&str> {
        self.model.resolved().and_then(|r| remote_uri(&r.resolved))
    }

    /// The labels of this version's `serving` metric.
    fn version_label(&self) -> VersionLabel {
        VersionLabel {
            model: self.model.name().to_owned(),
            uri: self.uri().unwrap_or_default().to_owned(),
            version: self.version().unwrap_or_default().to_owned(),
        }
    }

    /// Why calls without a result type fail, when the model's default cannot be bound
    /// (e.g. a 3-D tensor output): such a model still serves calls that pass one.
    pub fn default_error(&self) -> Option<&str> {
        self.default_error.as_deref()
    }

    /// How many bindings are cached now.
    pub fn binding_count(&self) -> usize {
        self.lock().len()
    }

    /// The scorer for `result_type` (default: the server's, then the model's), `params`
    /// and `on_error` (default: the server's), created on first use (it runs Python: call
    /// from a blocking thread).
    pub fn scorer(
        &self,
        result_type: Option<&str>,
        params: Option<&serde_json::Value>,
        on_error: Option<OnError>,
    ) -> Result<Arc<Scorer>, Status> {
        let result_type = result_type.or(self.default_result_type.as_deref());
        if result_type.is_none()
            && let Some(error) = &self.default_error
        {
            return Err(Status::invalid_argument(error.clone()));
        }
        let binding = self
            .model
            .binding(result_type, params)
            .map_err(|e| self.status(&e))?
            .with_on_error(on_error.unwrap_or(self.default_on_error));
        {
            let mut bindings = self.lock();
            if let Some(i) = bindings.iter().position(|(b, _)| *b == binding) {
                let entry = bindings.remove(i).expect("found");
                let scorer = Arc::clone(&entry.1);
                bindings.push_back(entry);
                return Ok(scorer);
            }
        }
        let scorer = self
            .model
            .bind(binding.clone())
            .map(Arc::new)
            .map_err(|e| self.status(&e))?;
        let mut bindings = self.lock();
        if !bindings.iter().any(|(b, _)| *b == binding) {
            if bindings.len() >= self.max_bindings {
                bindings.pop_front();
            }
            bindings.push_back((binding, Arc::clone(&scorer)));
        }
        Ok(scorer)
    }

    /// An error of this model as an INVALID_ARGUMENT status naming it.
    fn status(&self, e: &mlfusion_udf::Error) -> Status {
        Status::invalid_argument(named(self.model.name(), &e.to_string()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Binding, Arc<Scorer>)>> {
        self.bindings.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `uri` if clients may see it: a URI with a scheme other than `file:`.
fn remote_uri(uri: &str) -> Option<&str> {
    (has_scheme(uri) && !uri.starts_with("file:")).then_some(uri)
}

/// `message`, starting with `model 'name': ` once.
fn named(name: &str, message: &str) -> String {
    if message.starts_with(&format!("model '{name}'")) {
        message.to_owned()
    } else {
        format!("model '{name}': {message}")
    }
}

/// One name's model: the version new streams get, and what the last refresh reported.
#[derive(Debug)]
struct Slot {
    current: RwLock<Arc<ServedModel>>,
    refresh_error: Mutex<Option<String>>,
}

/// The served models by name.
#[derive(Debug)]
pub struct ServedModels {
    models: BTreeMap<String, Slot>,
    max_bindings: usize,
}

impl Default for ServedModels {
    fn default() -> Self {
        Self {
            models: BTreeMap::new(),
            max_bindings: DEFAULT_MAX_BINDINGS,
        }
    }
}

impl ServedModels {
    /// Keeps at most `max` bindings (result type and params) per model (at least 1).
    pub fn with_max_bindings(mut self, max: usize) -> Self {
        self.max_bindings = max.max(1);
        self
    }

    /// Adds a loaded model under its name, with the result type and `on_error` clients
    /// get by default, and binds that default now. A result type given here that does not bind is an
    /// error; a default inferred from the model that cannot be (as `spark_udf` fails
    /// only that UDF) leaves the model served for calls that pass a result type.
    pub fn insert(
        &mut self,
        model: PyModel,
        default_result_type: Option<String>,
        default_on_error: OnError,
    ) -> mlfusion_udf::Result<()> {
        let served = self.served(
            model,
            default_result_type,
            default_on_error,
            ModelMetrics::default(),
        )?;
        server_metrics().serving(&served.version_label(), None);
        self.models.insert(
            served.model.name().to_owned(),
            Slot {
                current: RwLock::new(Arc::new(served)),
                refresh_error: Mutex::new(None),
            },
        );
        Ok(())
    }

    /// `model` bound to its defaults, counting into `metrics`.
    fn served(
        &self,
        model: PyModel,
        default_result_type: Option<String>,
        default_on_error: OnError,
        metrics: ModelMetrics,
    ) -> mlfusion_udf::Result<ServedModel> {
        let model = Arc::new(model);
        let default = model
            .binding(default_result_type.as_deref(), None)
            .map(|b| b.with_on_error(default_on_error))
            .and_then(|b| model.bind(b));
        let (bindings, default_error) = match default {
            Ok(scorer) => {
                let binding = scorer.binding().clone();
                (VecDeque::from([(binding, Arc::new(scorer))]), None)
            }
            Err(e) if default_result_type.is_some() => return Err(e),
            Err(e) => (VecDeque::new(), Some(named(model.name(), &e.to_string()))),
        };
        Ok(ServedModel {
            model,
            default_result_type,
            default_on_error,
            default_error,
            bindings: Mutex::new(bindings),
            max_bindings: self.max_bindings,
            metrics,
        })
    }

    /// Serves `model` (a new version of a served one, by name) to the streams that start
    /// from now on, with the defaults of the version it replaces; running streams finish
    /// on the old version, which is unloaded when the last of them ends. Blocking: binds
    /// the default, in Python. A new version that does not bind the default the old one
    /// did is refused, and the old one keeps serving.
    pub fn replace(&self, model: PyModel) -> Result<(), String> {
        let name = model.name().to_owned();
        let slot = self
            .models
            .get(&name)
            .ok_or_else(|| format!("model '{name}' is not served here"))?;
        let old = Arc::clone(&read(&slot.current));
        let new = self
            .served(
                model,
                old.default_result_type.clone(),
                old.default_on_error,
                old.metrics.clone(),
            )
            .map_err(|e| named(&name, &e.to_string()))?;
        if let (Some(error), None) = (&new.default_error, &old.default_error) {
            return Err(error.clone());
        }
        server_metrics().serving(&new.version_label(), Some(&old.version_label()));
        *slot.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
    }

    /// Records what the last refresh of model `name` reported (`None`: it went well).
    pub fn set_refresh_error(&self, name: &str, error: Option<String>) {
        if let Some(slot) = self.models.get(name) {
            *slot.refresh_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
        }
    }

    /// Why the last refresh of model `name` failed, if it did.
    pub fn refresh_error(&self, name: &str) -> Option<String> {
        let slot = self.models.get(name)?;
        slot.refresh_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The version of model `name` new streams get, or a NOT_FOUND status listing the
    /// served ones.
    pub fn get(&self, name: &str) -> Result<Arc<ServedModel>, Status> {
        let slot = self.models.get(name).ok_or_else(|| {
            Status::not_found(format!(
                "model '{}' is not served here (served: {})",
                mlfusion_udf::limits::abbreviate(name, 200),
                self.names().join(", ")
            ))
        })?;
        Ok(Arc::clone(&read(&slot.current)))
    }

    /// The names of the served models, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// The version of every served model that new streams get.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Arc<ServedModel>)> {
        self.models
            .iter()
            .map(|(n, slot)| (n.as_str(), Arc::clone(&read(&slot.current))))
    }
}

fn read(current: &RwLock<Arc<ServedModel>>) -> std::sync::RwLockReadGuard<'_, Arc<ServedModel>> {
    current.read().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_see_remote_uris_but_no_local_paths() {
        for remote in ["models:/churn@champion", "runs:/abc/model", "s3://b/m"] {
            assert_eq!(remote_uri(remote), Some(remote));
        }
        for local in [
            "/srv/models/churn",
            "models/churn",
            "file:///srv/m",
            "c:/m",
            "./a:b",
        ] {
            assert_eq!(remote_uri(local), None, "{local}");
        }
    }
}
