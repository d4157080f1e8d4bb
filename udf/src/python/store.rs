//! Where models come from: local directories, or any URI MLflow resolves (`runs:/`,
//! `models:/name/1`, `models:/name@alias`, `mlflow-artifacts:/`, `s3://`, ...), downloaded
//! once through MLflow into a local cache keyed by the resolved URI.

use std::path::{Path, PathBuf};

use pyo3::prelude::*;

use crate::error::{Error, Result};
use crate::python::exception::format_py_err;
use crate::python::interpreter::{attach, bridge, start_python};

/// Resolves model URIs to local directories, downloading into a cache.
#[derive(Debug, Clone)]
pub struct ModelStore {
    cache_dir: PathBuf,
}

/// A model URI resolved to a local directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUri {
    /// The model directory.
    pub dir: PathBuf,
    /// The URI with registry aliases, stages and `latest` pinned to a version.
    pub resolved: String,
    /// Whether the directory came from the cache (no download).
    pub cached: bool,
}

impl ModelStore {
    /// A store downloading into `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            cache_dir: cache_dir.into(),
        }
    }

    /// Where downloaded models are kept.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The local directory of `uri`: a path (or `file:` URI) as it is, anything else
    /// through MLflow (`MLFLOW_TRACKING_URI` and the other MLflow settings apply).
    /// `model` is how errors refer to the model.
    pub fn resolve(&self, model: &str, uri: &str) -> Result<ResolvedUri> {
        if !has_scheme(uri) {
            return Ok(ResolvedUri {
                dir: PathBuf::from(uri),
                resolved: uri.to_owned(),
                cached: false,
            });
        }
        start_python(None)?;
        attach(|py| {
            let resolved = bridge(py)?
                .getattr("resolve_model_uri")
                .and_then(|f| f.call1((uri, self.cache_dir.display().to_string())))
                .and_then(|r| r.extract::<(String, String, bool)>());
            resolved.map_err(|e| Error::ModelUri {
                model: model.to_owned(),
                uri: uri.to_owned(),
                message: format_py_err(py, &e).0,
            })
        })
        .map(|(dir, resolved, cached)| ResolvedUri {
            dir: dir.into(),
            resolved,
            cached,
        })
    }
}

/// `scheme:...` with a scheme of two or more characters (RFC 3986), as opposed to a path.
pub fn has_scheme(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_uris() {
        for uri in [
            "models:/churn@champion",
            "runs:/abc/model",
            "s3://bucket/m",
            "file:///tmp/m",
            "mlflow-artifacts:/1/x",
        ] {
            assert!(has_scheme(uri), "{uri}");
        }
        for path in [
            "testdata/models/churn",
            "/abs/m",
            "./a:b",
            "c:/x",
            "my model",
        ] {
            assert!(!has_scheme(path), "{path}");
        }
    }

    #[test]
    fn local_paths_resolve_without_python() {
        let store = ModelStore::new("/nonexistent-cache");
        let r = store.resolve("m", "testdata/models/churn").unwrap();
        assert_eq!(r.dir, PathBuf::from("testdata/models/churn"));
        assert!(!r.cached);
    }
}
