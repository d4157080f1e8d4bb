//! Models from a real MLflow tracking server (sqlite backend, local artifact store) on
//! 127.0.0.1: registry URIs (`models:/name/1`, `models:/name@champion`), `runs:/` and
//! `mlflow-artifacts:/`, downloaded once into the model cache; `serve
//! --refresh-interval` following an alias that moves while a stream runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::fixtures::{
    ProcessGroup, alive, assert_scored, descendants, free_port, repo, success, write_features,
};

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

/// Runs the venv's python on `script` with `args`; its JSON, the last line of stdout
/// (MLflow prints run links first). `logs` are shown if it fails.
fn python_json(script: &str, args: &[&str], logs: &[&Path]) -> serde_json::Value {
    let out = Command::new(env!("PYO3_PYTHON"))
        .arg(repo().join("testdata").join(script))
        .args(args)
        .output()
        .expect("venv python runs");
    let logs: Vec<String> = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\nlogs:\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs.join("\n---\n")
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{script} prints JSON: {stdout}"))
}

#[test]
fn scores_registry_runs_and_artifact_uris_from_a_tracking_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = TrackingServer::start(dir.path());
    let logged = python_json(
        "registry_model.py",
        &[&server.uri, MODEL],
        &[&dir.path().join("server.log")],
    );
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

#[test]
fn serve_follows_an_alias_moved_while_a_stream_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TrackingServer::start(dir.path());
    let tracking_log = dir.path().join("server.log");
    python_json(
        "registry_model.py",
        &[&server.uri, MODEL, "--more-versions"],
        &[&tracking_log],
    );
    let serve_log = dir.path().join("serve.log");
    let champion = format!("champ=models:/{MODEL}@champion");
    let serve = ProcessGroup::spawn(
        Command::new(crate::fixtures::BIN)
            .args(["serve", "--port", "0", "--workers", "1"])
            .args(["--model", &champion, "--refresh-interval", "500ms"])
            .env("MLFLOW_TRACKING_URI", &server.uri)
            .env("MLFUSION_MODEL_CACHE", dir.path().join("cache")),
        &serve_log,
    );
    let location = wait_for_location(&serve_log);
    let processes = || {
        descendants(serve.id())
            .into_iter()
            .filter(|p| alive(*p))
            .count()
    };
    let serving_one_version = processes();
    let seen = python_json(
        "refresh_client.py",
        &[&location, &server.uri, MODEL],
        &[&serve_log, &tracking_log],
    );
    let log = std::fs::read_to_string(&serve_log).expect("serve log");
    let predictions = |key: &str| -> Vec<f64> {
        seen[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} in {seen}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("{key}: {seen}")))
            .collect()
    };
    let features: Vec<Vec<f64>> = (0..3)
        .map(|i| {
            seen["features"][i]
                .as_array()
                .expect("features")
                .iter()
                .map(|v| v.as_f64().expect("a number"))
                .collect()
        })
        .collect();
    let version = |scale: f64| -> Vec<f64> {
        (0..features[0].len())
            .map(|r| {
                scale * (2.0 * features[0][r] - 3.0 * features[1][r] + 0.5 * features[2][r] + 1.0)
            })
            .collect()
    };
    let close = |got: &[f64], want: &[f64]| {
        got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-6)
    };
    assert_eq!(
        seen["before"]["version"],
        format!("models:/{MODEL}/1"),
        "{seen}"
    );
    // The stream that started on version 1 finishes on it, across the switch.
    assert!(close(&predictions("a1"), &version(1.0)), "{seen}");
    assert_eq!(seen["switched"]["uri"], format!("models:/{MODEL}@champion"));
    assert!(close(&predictions("a2"), &version(1.0)), "{seen}\n{log}");
    // The next stream gets version 2.
    assert!(close(&predictions("b"), &version(2.0)), "{seen}\n{log}");
    assert!(
        log.contains(&format!("new streams get models:/{MODEL}/2")),
        "{log}"
    );
    // Version 3 does not load: reported, and version 2 keeps serving.
    let error = seen["failed"]["refresh_error"].as_str().expect("reported");
    assert!(
        error.contains(&format!("cannot serve models:/{MODEL}/3"))
            && error.contains("broken on purpose")
            && error.contains(&format!("still serving models:/{MODEL}/2")),
        "{error}"
    );
    assert_eq!(seen["failed"]["version"], format!("models:/{MODEL}/2"));
    assert!(close(&predictions("c"), &version(2.0)), "{seen}\n{log}");
    // Version 1 was unloaded when its stream ended, version 3 left nothing running: the
    // server runs the processes of one version again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while processes() != serving_one_version {
        assert!(
            std::time::Instant::now() < deadline,
            "{} processes, {serving_one_version} at start",
            processes()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// The Flight location `serve` announces in `log`, waiting up to 2 minutes.
fn wait_for_location(log: &Path) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("mlfusion: serving ")) {
            return line
                .split(" at ")
                .nth(1)
                .and_then(|l| l.split(' ').next())
                .expect("a location")
                .to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not start:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
