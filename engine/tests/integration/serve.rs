//! `mlfusion serve` refuses bad setups before it listens (scoring over Flight is tested
//! with real clients in flight-server/tests and python-shim/tests).

use crate::fixtures::{failure, mlfusion, test_model};

#[test]
fn serve_fails_at_start_on_bad_models_config_and_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("models.yaml");
    let empty_token = dir.path().join("token");
    std::fs::write(&empty_token, "\n").expect("write");
    let adder = format!("adder={}", test_model("adder"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![], "nothing to serve"),
        (
            vec![
                "--model".into(),
                adder.clone(),
                "--result-type".into(),
                "adder=timestamp".into(),
            ],
            "invalid 'spark_udf' result type: timestamp",
        ),
        (
            vec![
                "--model".into(),
                format!("broken={}", test_model("not-pyfunc")),
            ],
            "has no python_function flavor",
        ),
        (
            vec!["--config".into(), config.display().to_string()],
            "invalid",
        ),
        (
            vec![
                "--model".into(),
                adder.clone(),
                "--auth-token-file".into(),
                empty_token.display().to_string(),
            ],
            "the token file is empty",
        ),
        (
            vec![
                "--model".into(),
                adder,
                "--config".into(),
                config.display().to_string(),
            ],
            "also in --config",
        ),
    ];
    for (i, (args, expected)) in cases.into_iter().enumerate() {
        // The config file holds an unknown key in case 3 and a valid `adder` afterwards.
        let yaml = if i == 3 {
            "models:\n  adder:\n    path: /tmp/x\n".to_owned()
        } else {
            format!("models:\n  adder:\n    uri: '{}'\n", test_model("adder"))
        };
        std::fs::write(&config, yaml).expect("write");
        let mut argv = vec!["serve", "--port", "0"];
        argv.extend(args.iter().map(String::as_str));
        let err = failure(&mlfusion(&argv));
        assert!(
            err.contains(expected),
            "case {i}: expected {expected:?} in:\n{err}"
        );
    }
}
