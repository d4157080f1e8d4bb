//! The models a server serves: loaded once at start, bound on demand to the result
//! types and params clients ask for (each binding made once and shared by all streams).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use mlfusion_udf::{ModelMetrics, PyModel, Scorer};
use tonic::Status;

/// Bindings by (result type, params as JSON text).
type Scorers = HashMap<(Option<String>, Option<String>), Arc<Scorer>>;

/// One served model and its bindings.
#[derive(Debug)]
pub struct ServedModel {
    model: Arc<PyModel>,
    default_result_type: Option<String>,
    scorers: Mutex<Scorers>,
    /// Counters over every stream that used the model.
    pub metrics: ModelMetrics,
}

impl ServedModel {
    /// The loaded model.
    pub fn model(&self) -> &Arc<PyModel> {
        &self.model
    }

    /// The scorer for `result_type` (default: the server's, then the model's) and
    /// `params`, created on first use (it runs Python: call from a blocking thread).
    pub fn scorer(
        &self,
        result_type: Option<&str>,
        params: Option<&serde_json::Value>,
    ) -> Result<Arc<Scorer>, Status> {
        let result_type = result_type
            .map(str::to_owned)
            .or_else(|| self.default_result_type.clone());
        let key = (result_type.clone(), params.map(ToString::to_string));
        if let Some(s) = self.lock().get(&key) {
            return Ok(Arc::clone(s));
        }
        let scorer = self
            .model
            .scorer(result_type.as_deref(), params)
            .map(Arc::new)
            .map_err(|e| {
                let name = self.model.name();
                let message = e.to_string();
                let named = message.starts_with(&format!("model '{name}'"));
                Status::invalid_argument(if named {
                    message
                } else {
                    format!("model '{name}': {message}")
                })
            })?;
        self.lock().insert(key, Arc::clone(&scorer));
        Ok(scorer)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Scorers> {
        self.scorers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The served models by name.
#[derive(Debug, Default)]
pub struct ServedModels {
    models: BTreeMap<String, Arc<ServedModel>>,
}

impl ServedModels {
    /// Adds a loaded model under its name, with the result type clients get by default;
    /// binds that default now, so a bad result type fails here, not on a client's call.
    pub fn insert(
        &mut self,
        model: PyModel,
        default_result_type: Option<String>,
    ) -> mlfusion_udf::Result<()> {
        let model = Arc::new(model);
        let scorer = Arc::new(model.scorer(default_result_type.as_deref(), None)?);
        let scorers = HashMap::from([((default_result_type.clone(), None), scorer)]);
        self.models.insert(
            model.name().to_owned(),
            Arc::new(ServedModel {
                model,
                default_result_type,
                scorers: Mutex::new(scorers),
                metrics: ModelMetrics::default(),
            }),
        );
        Ok(())
    }

    /// The model called `name`, or a NOT_FOUND status listing the served ones.
    pub fn get(&self, name: &str) -> Result<&Arc<ServedModel>, Status> {
        self.models.get(name).ok_or_else(|| {
            Status::not_found(format!(
                "model '{name}' is not served here (served: {})",
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
