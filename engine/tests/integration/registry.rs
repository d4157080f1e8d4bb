//! Models from a real MLflow tracking server (sqlite backend, local artifact store) on
//! 127.0.0.1: registry URIs (`models:/name/1`, `models:/name@champion`), `runs:/` and
//! `mlflow-artifacts:/`, downloaded once into the model cache.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixtures::{ProcessGroup, assert_scored, free_port, repo, success, write_features};

const MODEL: &str = "churn-lr";

/// `mlflow server`, killed with its uvicorn workers when dropped.
struct TrackingServer {
    process: ProcessGroup,
    uri: String,
}

impl TrackingServer {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let process = ProcessGroup::spawn(
            Command::new(venv_bin("mlflow"))
                .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
                .arg("--backend-store-uri")
                .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
                .arg("--artifacts-destination")
                .arg(dir.join("artifacts"))
                .current_dir(dir)
                // No background job runner (huey consumers): this test needs none.
                .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false"),
            &dir.join("server.log"),
        );
        Self {
            process,
            uri: format!("http://127.0.0.1:{port}"),
        }
    }

    fn stop(&mut self) {
        self.process.stop();
    }
}

fn venv_bin(name: &str) -> PathBuf {
    Path::new(env!("PYO3_PYTHON")).with_file_name(name)
}

/// `mlfusion query` against the tracking server `tracking`, caching into `cache`.
fn query(tracking: &str, cache: &Path, args: &[&str]) -> Output {
    Command::new(crate::fixtures::BIN)
        .arg("query")
        .args(args)
        .env("MLFLOW_TRACKING_URI", tracking)
        .env("MLFUSION_MODEL_CACHE", cache)
        .output()
        .expect("mlfusion runs")
}

#[test]
fn scores_registry_runs_and_artifact_uris_from_a_tracking_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TrackingServer::start(dir.path());
    let logged = Command::new(env!("PYO3_PYTHON"))
        .arg(repo().join("testdata/registry_model.py"))
        .args([&server.uri, MODEL])
        .output()
        .expect("venv python runs");
    assert!(
        logged.status.success(),
        "logging the model failed:\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&logged.stderr),
        std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default()
    );
    // MLflow prints run links first; the script's JSON is the last line.
    let stdout = String::from_utf8_lossy(&logged.stdout);
    let logged: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("the script prints JSON");
    let run_id = logged["run_id"].as_str().expect("run_id");
    let artifacts = logged["artifact_location"].as_str().expect("location");
    assert!(artifacts.starts_with("mlflow-artifacts:/"), "{artifacts}");

    let rows = 1000;
    let data = dir.path().join("features.parquet");
    write_features(&data, rows);
    let cache = dir.path().join("cache");
    let out = dir.path().join("scored.parquet");
    let scoring_sql = format!(
        "SELECT id, v1(f0, f1, f2) AS a, champ(f0, f1, f2) AS b, run(f0, f1, f2) AS c, art(f0, f1, f2) AS d FROM '{}'",
        data.display()
    );
    let run_uri = format!("run=runs:/{run_id}/model");
    let artifact_uri = format!("art={artifacts}");
    let registry = [
        format!("CREATE FUNCTION v1() RETURNS DOUBLE LANGUAGE mlflow AS 'models:/{MODEL}/1'"),
        format!(
            "CREATE FUNCTION champ() RETURNS DOUBLE LANGUAGE mlflow AS 'models:/{MODEL}@champion'"
        ),
    ];
    let remote_models = [
        "--model",
        run_uri.as_str(),
        "--result-type",
        "run=double",
        "--model",
        artifact_uri.as_str(),
        "--result-type",
        "art=double",
    ];
    let mut args = remote_models.to_vec();
    args.extend(["-c", &registry[0], "-c", &registry[1]]);
    let listing = "SELECT name, resolved_uri FROM models() ORDER BY name";
    args.extend(["-c", listing, "--output"]);
    let out_arg = out.display().to_string();
    args.extend([out_arg.as_str(), scoring_sql.as_str()]);
    let stdout = success(&query(&server.uri, &cache, &args));
    assert_scored(&out, rows);
    // The alias is pinned to the version it points at.
    let champ_line = stdout
        .lines()
        .find(|l| l.contains("champ"))
        .expect("listed");
    assert!(
        champ_line.contains(&format!("models:/{MODEL}/1")),
        "{stdout}"
    );
    // One download per resolved URI: v1 and champ share a cache entry.
    let entries = std::fs::read_dir(&cache)
        .expect("cache exists")
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .count();
    assert_eq!(
        entries, 3,
        "runs:/, mlflow-artifacts:/ and models:/{MODEL}/1"
    );

    // With the server gone, pinned URIs are served from the cache; an alias needs the
    // registry and fails with a message naming the model and the URI.
    server.stop();
    std::fs::remove_file(&out).expect("output written");
    let cached = [
        format!("CREATE FUNCTION v1() RETURNS DOUBLE LANGUAGE mlflow AS 'models:/{MODEL}/1'"),
        format!("CREATE FUNCTION champ() RETURNS DOUBLE LANGUAGE mlflow AS 'models:/{MODEL}/1'"),
    ];
    let mut offline = remote_models.to_vec();
    offline.extend(["-c", &cached[0], "-c", &cached[1]]);
    offline.extend(["--output", &out_arg, &scoring_sql]);
    success(&query(&server.uri, &cache, &offline));
    assert_scored(&out, rows);
    let alias = Command::new(crate::fixtures::BIN)
        .args(["query", "-c", &registry[1]])
        .env("MLFLOW_TRACKING_URI", &server.uri)
        .env("MLFUSION_MODEL_CACHE", &cache)
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .output()
        .expect("mlfusion runs");
    assert!(!alias.status.success());
    let err = String::from_utf8_lossy(&alias.stderr);
    assert!(
        err.contains(&format!(
            "model 'champ': cannot resolve model URI 'models:/{MODEL}@champion'"
        )),
        "{err}"
    );
}
