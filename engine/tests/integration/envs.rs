//! `--env-manager uv`: models in environments of their own, built by the real uv (the
//! venv's, pinned in scripts/requirements.txt) from the package index, with the
//! machine's other CPythons. Every test has its own env cache; uv's download cache is
//! shared by the tests (and kept between runs) so each package is downloaded once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::fixtures::{BIN, failure, success};

/// uv's cache for every test run on this machine (same filesystem as the env caches
/// under the temp directory, so installs are hard links).
fn uv_cache() -> PathBuf {
    std::env::temp_dir().join("mlfusion-tests-uv-cache")
}

/// A loader-module model asking for `python` and `requirements`, whose `predict`
/// returns, per row, `body` evaluated with `x` (the row's input) in scope.
fn env_model(root: &Path, name: &str, python: &str, requirements: &str, body: &str) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("code")).expect("model dir");
    std::fs::write(
        dir.join("code").join("env_model.py"),
        format!(
            "import sys\n\n\nclass EnvModel:\n    def predict(self, model_input):\n        return [{body} for x in model_input.iloc[:, 0]]\n\n\ndef _load_pyfunc(data_path):\n    return EnvModel()\n"
        ),
    )
    .expect("code");
    std::fs::write(
        dir.join("MLmodel"),
        format!(
            "flavors:\n  python_function:\n    loader_module: env_model\n    code: code\n    env:\n      virtualenv: python_env.yaml\n    python_version: {python}\nsignature:\n  outputs: '[{{\"type\": \"string\"}}]'\n"
        ),
    )
    .expect("MLmodel");
    std::fs::write(
        dir.join("python_env.yaml"),
        format!(
            "python: {python}\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n"
        ),
    )
    .expect("python_env.yaml");
    std::fs::write(dir.join("requirements.txt"), requirements).expect("requirements.txt");
    dir.display().to_string()
}

fn query_command(cache: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["query", "--env-manager", "uv", "--env-cache"])
        .arg(cache)
        .args(args)
        .env("UV_CACHE_DIR", uv_cache());
    command
}

/// `mlfusion query --env-manager uv --format csv` of `statements` with `models` (name, dir).
fn scoring(cache: &Path, models: &[(&str, &str)], statements: &[&str]) -> Command {
    let mut command = query_command(cache, &["--format", "csv"]);
    for (name, dir) in models {
        command.arg("--model").arg(format!("{name}={dir}"));
    }
    for statement in statements {
        command.args(["-c", statement]);
    }
    command
}

fn output(mut command: Command) -> Output {
    command.output().expect("mlfusion runs")
}

/// Every file below `dir`, as strings.
fn files_under(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                files.push(path.display().to_string());
            }
        }
    }
    files
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn models_with_conflicting_requirements_score_in_their_own_envs_in_one_query() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let tag = "'%s py%d.%d' % (__import__('sklearn').__version__, *sys.version_info[:2])";
    let old = env_model(tmp.path(), "old", "3.11.7", "scikit-learn==1.5.2\n", tag);
    let new = env_model(tmp.path(), "new", "3.11.7", "scikit-learn==1.9.1\n", tag);
    let cache = tmp.path().join("envs");
    let run = || {
        output(scoring(
            &cache,
            &[("old", &old), ("new", &new)],
            &[
                "SELECT old(x) AS o, new(x) AS n FROM (VALUES (1.0), (2.0)) t(x)",
                "SELECT name, env, python FROM models() ORDER BY name",
            ],
        ))
    };
    let first = run();
    let printed = success(&first);
    assert!(
        printed.contains("o,n\n1.5.2 py3.11,1.9.1 py3.11\n1.5.2 py3.11,1.9.1 py3.11\n"),
        "{printed}"
    );
    let keys: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("new,") || l.starts_with("old,"))
        .map(|l| l.split(',').nth(1).expect("env column"))
        .collect();
    assert_eq!(keys.len(), 2, "{printed}");
    assert!(keys.iter().all(|k| k.starts_with("py3.11-")), "{keys:?}");
    assert_ne!(keys[0], keys[1], "two requirement sets, two envs");
    let log = stderr(&first);
    assert_eq!(log.matches("building env").count(), 2, "{log}");
    // The workers compiled what they imported into their env, not beside the model.
    for key in &keys {
        let pycache = cache.join("envs").join(key).join(".mlfusion-pycache");
        let compiled = files_under(&pycache);
        assert!(
            compiled
                .iter()
                .any(|p| p.ends_with(".pyc") && p.contains("/sklearn/")),
            "{key}: {} files in {}",
            compiled.len(),
            pycache.display()
        );
    }
    assert!(!Path::new(&old).join("code").join("__pycache__").exists());

    // A second process builds nothing: both envs are reused as they are.
    let second = run();
    assert_eq!(success(&second), printed);
    let log = stderr(&second);
    assert!(!log.contains("building env"), "{log}");
    assert_eq!(log.matches("reusing env").count(), 2, "{log}");
}

#[test]
fn a_model_logged_under_another_python_scores_as_mlflow_does_in_that_python() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // mlflow-skinny so that the reference below loads the model with MLflow itself.
    let model = env_model(
        tmp.path(),
        "py310",
        "3.10.13",
        "mlflow-skinny==3.17.2\nnumpy==1.26.4\n",
        "'%d.%d %r' % (sys.version_info[0], sys.version_info[1], float(__import__('numpy').sin(x) * 1e6))",
    );
    let cache = tmp.path().join("envs");
    let out = output(scoring(
        &cache,
        &[("m", &model)],
        &[
            "SELECT m(x) AS p FROM (VALUES (0.5), (1.5), (2.5)) t(x)",
            "SELECT env, python FROM models()",
        ],
    ));
    let printed = success(&out);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "p");
    let ours: Vec<&str> = lines[1..4].to_vec();
    assert!(ours.iter().all(|l| l.starts_with("3.10 ")), "{printed}");
    let (key, python) = lines[5].split_once(',').expect("env, python");
    assert!(
        key.starts_with("py3.10-") && python.starts_with("3.10."),
        "{printed}"
    );

    let env_python = cache.join("envs").join(key).join("bin").join("python");
    let reference = Command::new(env_python)
        .args([
            "-c",
            "import sys, mlflow.pyfunc, pandas as pd\n\
             m = mlflow.pyfunc.load_model(sys.argv[1])\n\
             for p in m.predict(pd.DataFrame({'x': [0.5, 1.5, 2.5]})): print(p)",
            &model,
        ])
        .output()
        .expect("env python runs");
    let expected = success(&reference);
    assert_eq!(ours, expected.lines().collect::<Vec<_>>());
}

#[test]
fn a_model_pinning_mlflow_2_loads_and_scores() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = env_model(
        tmp.path(),
        "legacy",
        "3.11.7",
        "mlflow==2.17.2\n",
        "'mlflow %s pyarrow %s' % (__import__('mlflow').__version__, __import__('pyarrow').__version__)",
    );
    let cache = tmp.path().join("envs");
    let out = output(scoring(&cache, &[("m", &model)], &["SELECT m(1.0) AS v"]));
    let printed = success(&out);
    assert!(
        printed.starts_with("v\nmlflow 2.17.2 pyarrow "),
        "{printed}"
    );
}

#[test]
fn processes_started_together_on_a_cold_env_build_it_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = env_model(tmp.path(), "plain", "3.11.7", "", "str(x)");
    let cache = tmp.path().join("envs");
    let one = || scoring(&cache, &[("m", &model)], &["SELECT m(1.0) AS v"]);
    let children: Vec<_> = (0..2)
        .map(|_| {
            one()
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("mlfusion starts")
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("mlfusion ends"))
        .collect();
    for out in &outs {
        assert_eq!(success(out), "v\n1.0\n");
    }
    let builds = outs
        .iter()
        .map(|o| stderr(o).matches("building env").count())
        .sum::<usize>();
    assert_eq!(builds, 1, "{}\n{}", stderr(&outs[0]), stderr(&outs[1]));
    let envs = std::fs::read_dir(cache.join("envs")).expect("envs").count();
    assert_eq!(envs, 1);
}

#[test]
fn a_build_killed_half_way_is_never_used_and_the_next_run_builds_cleanly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = env_model(tmp.path(), "plain", "3.11.7", "six==1.16.0\n", "str(x)");
    let cache = tmp.path().join("envs");
    let one = || scoring(&cache, &[("m", &model)], &["SELECT m(1.0) AS v"]);
    let mut child = one()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mlfusion starts");
    let staging = cache.join("staging");
    let deadline = Instant::now() + Duration::from_secs(60);
    let building = || {
        std::fs::read_dir(&staging)
            .map(|d| d.flatten().any(|e| e.path().join("bin").exists()))
            .unwrap_or(false)
    };
    while !building() {
        assert!(Instant::now() < deadline, "no build started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    let finished = std::fs::read_dir(cache.join("envs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(finished, 0, "a killed build left a finished env");

    let out = output(one());
    assert_eq!(success(&out), "v\n1.0\n");
    assert!(stderr(&out).contains("building env"), "{}", stderr(&out));
    let left: Vec<_> = std::fs::read_dir(&staging)
        .expect("staging")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn env_failures_name_the_model_the_env_and_a_hint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("envs");
    let run = |name: &str, python: &str, requirements: &str, extra: &[(&str, &str)]| {
        let model = env_model(tmp.path(), name, python, requirements, "str(x)");
        let mut command = scoring(&cache, &[(name, &model)], &["SELECT 1"]);
        for (k, v) in extra {
            command.env(k, v);
        }
        failure(&output(command))
    };

    let e = run("ancient", "3.4.10", "", &[]);
    assert!(e.contains("model 'ancient': environment py3.4-"), "{e}");
    assert!(e.contains("no Python 3.4 on this machine"), "{e}");
    assert!(e.contains("hint: install Python 3.4"), "{e}");

    let e = run("clash", "3.11.7", "numpy==1.21.0\npandas==2.2.3\n", &[]);
    assert!(e.contains("model 'clash': environment py3.11-"), "{e}");
    assert!(e.contains("No solution found"), "{e}");
    assert!(e.contains("hint: the model's requirements conflict"), "{e}");
    assert!(e.contains("pyarrow>="), "names what mlfusion added: {e}");

    let empty = tmp.path().join("empty-uv-cache");
    let e = run(
        "offline",
        "3.11.7",
        "six==1.16.0\n",
        &[
            ("UV_OFFLINE", "1"),
            ("UV_CACHE_DIR", empty.to_str().expect("utf-8")),
        ],
    );
    assert!(e.contains("model 'offline': environment py3.11-"), "{e}");
    assert!(
        e.contains("hint: the package index cannot be reached"),
        "{e}"
    );

    // None of them left an env that a later run would take for a finished one.
    let finished = std::fs::read_dir(cache.join("envs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(finished, 0);
}

fn env_command(cache: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("env")
        .args(args)
        .arg("--env-cache")
        .arg(cache)
        .env("UV_CACHE_DIR", uv_cache())
        .output()
        .expect("mlfusion env runs")
}

#[test]
fn envs_are_built_ahead_listed_and_collected_but_never_while_in_use() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = env_model(tmp.path(), "plain", "3.11.7", "", "str(x)");
    let cache = tmp.path().join("envs");
    let built = success(&env_command(&cache, &["build", &model]));
    assert!(built.contains(" built "), "{built}");
    let key = built.split_whitespace().next().expect("key").to_owned();
    let again = success(&env_command(&cache, &["build", &model]));
    assert!(
        again.starts_with(&key) && again.contains(" cached "),
        "{again}"
    );
    let listed = success(&env_command(&cache, &["list"]));
    assert!(listed.contains(&key) && listed.contains(&model), "{listed}");
    assert!(listed.contains("1 env(s)"), "{listed}");

    // A server using the env holds it: gc skips it, rm refuses it.
    let log = tmp.path().join("serve.log");
    let arg = format!("m={model}");
    let mut server = Command::new(BIN)
        .args([
            "serve",
            "--port",
            "0",
            "--workers",
            "1",
            "--env-manager",
            "uv",
        ])
        .arg("--env-cache")
        .arg(&cache)
        .args(["--model", &arg])
        .env("UV_CACHE_DIR", uv_cache())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("mlfusion: serving ") {
            assert!(text.contains(&format!("reusing env {key}")), "{text}");
            break;
        }
        assert!(
            server.try_wait().expect("wait").is_none(),
            "serve exited:\n{text}"
        );
        assert!(Instant::now() < deadline, "serve did not start:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let gc = success(&env_command(&cache, &["gc", "--older-than", "0s"]));
    assert!(gc.contains("0 env(s) removed"), "{gc}");
    let e = failure(&env_command(&cache, &["rm", &key]));
    assert!(e.contains("in use by a running process"), "{e}");
    assert!(cache.join("envs").join(&key).exists());

    // SAFETY: kill(2) on our own child.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(server.id() as i32, libc::SIGTERM);
    }
    server.wait().expect("serve ends");
    let gc = success(&env_command(&cache, &["gc", "--older-than", "0s"]));
    assert!(gc.contains(&format!("removed {key}")), "{gc}");
    assert!(!cache.join("envs").join(&key).exists());
    let e = failure(&env_command(&cache, &["rm", &key]));
    assert!(e.contains("no such env"), "{e}");
}

/// The oldest numpy, pandas and pyarrow mlfusion adds as lower bounds (README "Model
/// environments"), on Python 3.10: every result-type path of the bridge gives what it
/// gives in the engine's own, current stack.
#[test]
fn the_bridge_works_with_the_oldest_libraries_it_asks_for() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = tmp.path().join("labeler");
    let labeler = crate::fixtures::repo().join("testdata/models/labeler");
    std::fs::create_dir_all(model.join("code")).expect("model dir");
    for file in ["MLmodel", "code/labeler_model.py"] {
        std::fs::copy(labeler.join(file), model.join(file)).expect("copy");
    }
    std::fs::write(
        model.join("python_env.yaml"),
        "python: 3.10.13\ndependencies:\n- -r requirements.txt\n",
    )
    .expect("python_env.yaml");
    std::fs::write(
        model.join("requirements.txt"),
        "numpy==1.21.6\npandas==1.3.5\npyarrow==8.0.0\n",
    )
    .expect("requirements.txt");
    let cache = tmp.path().join("envs");
    let arg = format!("m={}", model.display());
    let input = "(VALUES (1.5, 'a'), (-2.0, 'b'), (CAST(NULL AS DOUBLE), 'c')) t(x, tag)";
    let mut statements = Vec::new();
    for (result_type, select) in [
        ("struct<label: string, score: double>", "m(x, tag)"),
        (
            "struct<label: string, score: double>",
            "m(named_struct('x', x, 'tag', tag))",
        ),
        ("string", "m(x, tag)"),
        ("double", "m(x, tag)"),
        ("float", "m(x, tag)"),
        ("array<string>", "m(x, tag)"),
        ("array<double>", "m(x, tag)"),
    ] {
        statements.push(format!(
            "CREATE OR REPLACE FUNCTION m() LANGUAGE mlflow AS '{{\"uri\": \"{}\", \"result_type\": \"{result_type}\"}}'",
            model.display()
        ));
        statements.push(format!("SELECT {select} AS p FROM {input}"));
    }
    let mut args = vec!["--model", &arg, "--format", "ndjson"];
    for s in &statements {
        args.extend(["-c", s.as_str()]);
    }
    let old = success(&output(query_command(&cache, &args)));
    let local = success(
        &Command::new(BIN)
            .args(["query", "--workers", "1"])
            .args(&args)
            .output()
            .expect("mlfusion runs"),
    );
    assert_eq!(old, local);
    assert!(
        old.contains(r#"{"p":{"label":"hi-a","score":3.0}}"#),
        "{old}"
    );
}
