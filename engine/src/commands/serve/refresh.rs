//! `serve --refresh-interval`: models served from a registry alias, stage or `latest`
//! follow it. Each interval the URI is resolved again; a new version is loaded beside
//! the one serving, then new streams get it while running streams finish on the old
//! one (see [`ServedModels::replace`]). A version that fails to load is reported once
//! and not tried again until the URI moves on; the old version keeps serving.

use std::sync::Arc;
use std::time::Duration;

use mlfusion_flight::ServedModels;
use mlfusion_flight::metrics::server_metrics;
use mlfusion_udf::{LoadOptions, ModelLoader};

use super::announce;
use crate::registration::ModelRegistration;

/// A served model whose URI moves.
#[derive(Debug)]
pub(super) struct Followed {
    name: String,
    uri: String,
    options: LoadOptions,
    /// The version that last failed to load: not tried again.
    failed: Option<String>,
    /// The last error resolving the URI, reported once.
    unresolved: Option<String>,
}

/// The registrations whose URI resolved to something else than itself: registry
/// aliases, stages and `latest` (a `models:/name/3` or a path stays as it is).
pub(super) fn followed(
    models: &ServedModels,
    registrations: &[ModelRegistration],
) -> Vec<Followed> {
    registrations
        .iter()
        .filter(|r| r.uri.starts_with("models:"))
        .filter(|r| {
            models.get(&r.name).is_ok_and(|served| {
                served
                    .model()
                    .resolved()
                    .is_some_and(|resolved| resolved.resolved != r.uri)
            })
        })
        .map(|r| Followed {
            name: r.name.clone(),
            uri: r.uri.clone(),
            options: r.options.clone(),
            failed: None,
            unresolved: None,
        })
        .collect()
}

/// Refreshes `followed` every `interval`, forever.
pub(super) async fn follow(
    models: Arc<ServedModels>,
    loader: ModelLoader,
    mut followed: Vec<Followed>,
    interval: Duration,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the first tick is now: the models were just loaded
    loop {
        ticks.tick().await;
        let (models, loader) = (Arc::clone(&models), loader.clone());
        // Resolving and loading run Python: off the async workers.
        let refreshed = tokio::task::spawn_blocking(move || {
            for model in &mut followed {
                model.refresh(&models, &loader);
            }
            followed
        })
        .await;
        match refreshed {
            Ok(f) => followed = f,
            Err(_) => return, // the runtime is shutting down
        }
    }
}

impl Followed {
    /// Resolves the URI again and serves the version it names, if it is new.
    fn refresh(&mut self, models: &ServedModels, loader: &ModelLoader) {
        let Ok(served) = models.get(&self.name) else {
            return;
        };
        let current = served
            .model()
            .resolved()
            .map(|r| r.resolved.clone())
            .unwrap_or_default();
        drop(served); // not to keep the old version alive while the new one loads
        let name = &self.name;
        let resolved = match loader.store().resolve(name, &self.uri) {
            Ok(r) => r.resolved,
            Err(e) => {
                let message = format!(
                    "{e}; still serving {current}",
                    e = e.to_string().replace('\n', " ")
                );
                if self.unresolved.as_ref() != Some(&message) {
                    announce(&format!("mlfusion: warning: refresh: {message}"));
                    models.set_refresh_error(name, Some(message.clone()));
                    self.unresolved = Some(message);
                }
                return;
            }
        };
        if self.unresolved.take().is_some() && self.failed.is_none() {
            models.set_refresh_error(name, None);
        }
        if resolved == current || self.failed.as_ref() == Some(&resolved) {
            return;
        }
        announce(&format!(
            "mlfusion: model '{name}': {} now names {resolved} (serving {current}): loading it",
            self.uri
        ));
        let switched = loader
            .load_in(name, &self.uri, &self.options)
            .map_err(|e| e.to_string())
            .and_then(|model| {
                let loaded = model.resolved().map(|r| r.resolved.clone());
                models.replace(model).map(|()| loaded.unwrap_or_default())
            });
        let metrics = server_metrics();
        match switched {
            Ok(loaded) => {
                metrics.refreshed(name, "switched");
                models.set_refresh_error(name, None);
                self.failed = None;
                announce(&format!(
                    "mlfusion: model '{name}': new streams get {loaded}; streams on {current} finish on it"
                ));
            }
            Err(e) => {
                metrics.refreshed(name, "failed");
                let message = format!(
                    "cannot serve {resolved}: {}; still serving {current}",
                    e.replace('\n', " ")
                );
                announce(&format!("mlfusion: warning: model '{name}': {message}"));
                models.set_refresh_error(name, Some(message));
                self.failed = Some(resolved);
            }
        }
    }
}
