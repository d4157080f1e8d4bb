//! How a binding loads its model: `model_config` overrides (`--model-config`, a CREATE
//! FUNCTION body, `MLFLOW_PYFUNC_INFERENCE_CONFIG`), `extra_env` (`--extra-env`), and
//! what loading prints coming after the error it ends with.

use crate::fixtures::{failure, mlfusion, success, test_model};

/// `SELECT m(1.0)` on the env-echo model, with `args` before the SQL; its one value.
fn echo(args: &[&str]) -> String {
    let model = format!("m={}", test_model("env-echo"));
    let mut all = vec!["query", "--model", &model, "--result-type", "m=string"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "csv", "SELECT m(1.0) AS v"]);
    let out = success(&mlfusion(&all));
    out.lines().nth(1).unwrap_or_default().to_owned()
}

#[test]
fn model_config_overrides_the_saved_config_key_by_key() {
    assert_eq!(echo(&[]), "hello|<unset>");
    assert_eq!(
        echo(&["--model-config", r#"m={"greeting": "hi", "times": 2}"#]),
        "hihi|<unset>"
    );
    // Keys the saved config lacks are ignored with a warning, as MLflow does.
    let model = format!("m={}", test_model("env-echo"));
    let out = mlfusion(&[
        "query",
        "--model",
        &model,
        "--result-type",
        "m=string",
        "--model-config",
        r#"m={"greting": "typo"}"#,
        "--format",
        "csv",
        "SELECT m(1.0) AS v",
    ]);
    assert!(success(&out).contains("hello|<unset>"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model 'm': model_config 'greting' ignored: not keys of the model's saved config ('greeting', 'times')"),
        "{stderr}"
    );
}

#[test]
fn model_config_comes_from_a_yaml_file_or_a_create_function_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "greeting: hey\ntimes: 3\n").expect("yaml");
    assert_eq!(
        echo(&["--model-config", &format!("m={}", file.display())]),
        "heyheyhey|<unset>"
    );
    let body = format!(
        r#"CREATE FUNCTION e() LANGUAGE mlflow AS '{{"uri": "{}", "result_type": "string", "model_config": {{"times": 2}}, "extra_env": {{"MLFUSION_TEST_EXTRA": "from sql"}}}}'"#,
        test_model("env-echo")
    );
    let out = success(&mlfusion(&[
        "query",
        "--workers",
        "1",
        "-c",
        &body,
        "--format",
        "csv",
        "SELECT e(1.0) AS v",
    ]));
    assert!(out.contains("hellohello|from sql"), "{out}");
    let err = failure(&mlfusion(&[
        "query",
        "--model",
        &format!("m={}", test_model("env-echo")),
        "--model-config",
        "m=[1, 2]",
        "SELECT 1",
    ]));
    assert!(
        err.contains("--model-config") && err.contains("must be an object"),
        "{err}"
    );
}

#[test]
fn extra_env_reaches_the_model_s_workers_and_is_refused_without_them() {
    assert_eq!(
        echo(&["--workers", "1", "--extra-env", "m=MLFUSION_TEST_EXTRA=a=b"]),
        "hello|a=b"
    );
    // MLflow's own override variable, set for the model, applies before --model-config.
    assert_eq!(
        echo(&[
            "--workers",
            "2",
            "--extra-env",
            r#"m=MLFLOW_PYFUNC_INFERENCE_CONFIG={"greeting": "env", "times": 2}"#,
            "--model-config",
            r#"m={"times": 3}"#,
        ]),
        "envenvenv|<unset>"
    );
    let err = failure(&mlfusion(&[
        "query",
        "--workers",
        "0",
        "--model",
        &format!("m={}", test_model("env-echo")),
        "--extra-env",
        "m=MLFUSION_TEST_EXTRA=x",
        "SELECT m(1.0)",
    ]));
    assert!(
        err.contains("model 'm': extra_env") && err.contains("hint: run it in worker processes"),
        "{err}"
    );
}

#[test]
fn what_loading_printed_follows_the_error_it_ended_with() {
    for workers in ["0", "1"] {
        let err = failure(&mlfusion(&[
            "query",
            "--workers",
            workers,
            "--model",
            &format!("m={}", test_model("warn-then-fail")),
            "SELECT m(1.0)",
        ]));
        let cause = err
            .find("model 'm': loading the model raised ImportError: No module named 'onnxruntime_gpu'")
            .unwrap_or_else(|| panic!("no cause in:\n{err}"));
        let printed = err
            .find("printed while loading:")
            .unwrap_or_else(|| panic!("no printed text in:\n{err}"));
        let warning = err
            .find("an execution provider is not available")
            .expect("the Python warning");
        let logged = err
            .find("falling back to the CPU")
            .expect("the logged warning");
        assert!(
            cause < printed && printed < warning && printed < logged,
            "--workers {workers}:\n{err}"
        );
    }
}
