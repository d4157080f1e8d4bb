//! The models a server serves: loaded once at start, bound on demand to the result
//! types and params clients ask for. Bindings are shared by all streams and kept in a
//! bounded cache (least recently used first out), keyed by what the model sees: the
//! resolved result type and the validated params, so params the model ignores make no
//! new binding.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use mlfusion_udf::{Binding, ModelMetrics, OnError, PyModel, Scorer};
use tonic::Status;

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

/// `message`, starting with `model 'name': ` once.
fn named(name: &str, message: &str) -> String {
    if message.starts_with(&format!("model '{name}'")) {
        message.to_owned()
    } else {
        format!("model '{name}': {message}")
    }
}

/// The served models by name.
#[derive(Debug)]
pub struct ServedModels {
    models: BTreeMap<String, Arc<ServedModel>>,
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
        self.models.insert(
            model.name().to_owned(),
            Arc::new(ServedModel {
                model,
                default_result_type,
                default_on_error,
                default_error,
                bindings: Mutex::new(bindings),
                max_bindings: self.max_bindings,
                metrics: ModelMetrics::default(),
            }),
        );
        Ok(())
    }

    /// The model called `name`, or a NOT_FOUND status listing the served ones.
    pub fn get(&self, name: &str) -> Result<&Arc<ServedModel>, Status> {
        self.models.get(name).ok_or_else(|| {
            Status::not_found(format!(
                "model '{}' is not served here (served: {})",
                mlfusion_udf::limits::abbreviate(name, 200),
                self.names().join(", ")
            ))
        })
    }

    /// The names of the served models, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.models.keys().map(String::as_str).collect()
    }

    /// Every served model.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<ServedModel>)> {
        self.models.iter().map(|(n, m)| (n.as_str(), m))
    }
}
