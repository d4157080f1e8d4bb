//! Tables and outputs in an S3 bucket: a real S3-compatible server (moto, authentication
//! on) on 127.0.0.1, Parquet written there by pyarrow's S3 filesystem, scored by
//! `mlfusion query` into the bucket and read back by pyarrow.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::delta::{assert_delta_scored, delta_fixture, feature_ids, read_delta};
use crate::fixtures::{
    BIN, ProcessGroup, assert_scored, failure, failure_naming, free_port, python_fixture,
    sklearn_model, success, test_model,
};

const ROWS: i64 = 20_000;

/// `moto_server`, killed when dropped.
struct S3Server {
    _process: ProcessGroup,
    endpoint: String,
}

impl S3Server {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let process = ProcessGroup::spawn(
            Command::new(Path::new(env!("PYO3_PYTHON")).with_file_name("moto_server"))
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                // Requests after the first three (the fixture's IAM setup) must be
                // signed with a key the server issued.
                .env("INITIAL_NO_AUTH_ACTION_COUNT", "3"),
            &dir.join("moto.log"),
        );
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto_server did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _process: process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// `testdata/s3_fixture.py COMMAND ENDPOINT ARGS`; its stdout.
    fn fixture(&self, args: &[&str]) -> String {
        let args = [&args[..1], &[self.endpoint.as_str()], &args[1..]].concat();
        python_fixture("s3_fixture.py", &args, &[])
    }
}

/// `mlfusion query ARGS` with no AWS settings but `env` (no variables, no profile files).
fn query(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        command.env_remove(name);
    }
    command
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.join("no-credentials"))
        .env("AWS_CONFIG_FILE", dir.join("no-config"))
        .envs(env.iter().copied())
        .arg("query")
        .args(args)
        .output()
        .expect("mlfusion runs")
}

#[test]
fn scores_parquet_in_a_bucket_into_the_bucket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    let keys = server.fixture(&["setup", &ROWS.to_string()]);
    let (key, secret) = keys.trim().split_once(' ').expect("key and secret");
    let env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
    ];
    let model = format!("m={}", sklearn_model(dir.path()));
    let read_back = |object: &str| {
        let local = dir.path().join(object.replace('/', "_"));
        server.fixture(&["get", key, secret, object, &local.display().to_string()]);
        local
    };
    let listed = |prefix: &str| server.fixture(&["list", key, secret, prefix]);

    // --table and --output in the bucket.
    let out = query(
        dir.path(),
        &env,
        &[
            "--model",
            &model,
            "--result-type",
            "m=double",
            "--table",
            "t=s3://scoring/features/",
            "--output",
            "s3://scoring/scored/out.parquet",
            "SELECT id, m(f0, f1, f2) AS p FROM t ORDER BY id",
        ],
    );
    let printed = success(&out);
    assert!(
        printed.contains(&format!(
            "wrote {ROWS} row(s) to s3://scoring/scored/out.parquet"
        )),
        "{printed}"
    );
    assert_scored(&read_back("scoring/scored/out.parquet"), ROWS);

    // A URL table and COPY into the bucket.
    let copy = "COPY (SELECT id, m(f0, f1, f2) AS p FROM 's3://scoring/features/' ORDER BY id) TO 's3://scoring/copied/out.parquet'";
    let args = ["--model", &model, "--result-type", "m=double", "-c", copy];
    success(&query(dir.path(), &env, &args));
    assert_scored(&read_back("scoring/copied/out.parquet"), ROWS);

    // A directory: its files land under the target, nothing staged stays behind.
    let copy = "COPY (SELECT id, f0 FROM 's3://scoring/features/') TO 's3://scoring/dir/' STORED AS PARQUET";
    success(&query(dir.path(), &env, &["-c", copy]));
    let files = listed("scoring/dir");
    assert!(
        !files.is_empty()
            && files
                .lines()
                .all(|f| f.starts_with("scoring/dir/") && f.ends_with(".parquet")),
        "{files}"
    );
    let out = query(
        dir.path(),
        &env,
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM 's3://scoring/dir/'",
        ],
    );
    assert_eq!(success(&out).trim(), format!("n\n{ROWS}"));

    // A model failing in the last batch: no object, from COPY or from --output.
    let raiser = format!("r={}", test_model("raiser"));
    let failing = "SELECT r(CASE WHEN id = 19999 THEN -1.0 ELSE CAST(id AS DOUBLE) END) AS p FROM 's3://scoring/features/'";
    let copy = format!("COPY ({failing}) TO 's3://scoring/failed/copy.parquet'");
    let common = ["--workers", "1", "--batch-size", "1000", "--model", &raiser];
    failure_naming(
        &query(dir.path(), &env, &[&common[..], &["-c", &copy]].concat()),
        &["model 'r'"],
    );
    let output = ["--output", "s3://scoring/failed/output.parquet", failing];
    failure_naming(
        &query(dir.path(), &env, &[&common[..], &output[..]].concat()),
        &["model 'r'"],
    );
    assert_eq!(
        listed("scoring/failed"),
        "",
        "a failed query left an object"
    );
    let all = listed("scoring");
    assert!(
        !all.contains(".mlfusion-"),
        "staged objects left behind:\n{all}"
    );

    // Credentials and endpoint as table options, with nothing in the environment.
    let create = format!(
        "CREATE EXTERNAL TABLE f STORED AS PARQUET LOCATION 's3://scoring/features/' OPTIONS ('aws.access_key_id' '{key}', 'aws.secret_access_key' '{secret}', 'aws.region' 'us-east-1', 'aws.endpoint' '{}')",
        server.endpoint
    );
    let out = query(
        dir.path(),
        &[],
        &[
            "--format",
            "csv",
            "-c",
            &create,
            "SELECT count(*) AS n FROM f",
        ],
    );
    assert_eq!(success(&out).trim(), format!("n\n{ROWS}"));

    // A named profile of the AWS files.
    let credentials = dir.path().join("credentials");
    let config = dir.path().join("config");
    std::fs::write(&credentials, format!("[default]\naws_access_key_id = wrong\n\n[scorer]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")).expect("write");
    std::fs::write(
        &config,
        format!(
            "[profile scorer]\nregion = us-east-1\nendpoint_url = {}\n",
            server.endpoint
        ),
    )
    .expect("write");
    let profile = [
        ("AWS_PROFILE", "scorer"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            credentials.to_str().expect("utf-8"),
        ),
        ("AWS_CONFIG_FILE", config.to_str().expect("utf-8")),
    ];
    let out = query(
        dir.path(),
        &profile,
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM 's3://scoring/features/'",
        ],
    );
    assert_eq!(success(&out).trim(), format!("n\n{ROWS}"));

    // Refused credentials and a missing bucket name the URL and the likely cause.
    let mut wrong = env;
    wrong[1].1 = "not-the-secret";
    failure_naming(
        &query(
            dir.path(),
            &wrong,
            &["SELECT count(*) FROM 's3://scoring/features/'"],
        ),
        &[
            "s3://scoring/features/",
            "hint: the store refused the credentials",
        ],
    );
    failure_naming(
        &query(
            dir.path(),
            &wrong,
            &["--table", "t=s3://scoring/features/", "SELECT 1"],
        ),
        &["s3://scoring/features/", "refused the credentials"],
    );
    // A refused upload: an error, not a panic, and no object.
    let out = query(
        dir.path(),
        &wrong,
        &[
            "--output",
            "s3://scoring/refused/out.parquet",
            "SELECT 1 AS x",
        ],
    );
    let err = failure_naming(&out, &["s3://scoring/refused/out.parquet"]);
    assert_eq!(out.status.code(), Some(1), "an error, not a panic: {err}");
    assert_eq!(listed("scoring/refused"), "");
    // A key longer than any store allows fails before a request, naming the limit.
    let long = format!("s3://scoring/{}.parquet", "k".repeat(100_000));
    let out = query(dir.path(), &env, &["--output", &long, "SELECT 1 AS x"]);
    let err = failure(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {err:.300}"
    );
    assert!(
        err.contains("longer than the stores' limit of 1024"),
        "{err:.300}"
    );
    let sql = format!("SELECT count(*) FROM '{long}'");
    let out = query(dir.path(), &env, &[sql.as_str()]);
    assert_eq!(out.status.code(), Some(1), "an error, not a panic");
    failure_naming(
        &query(
            dir.path(),
            &env,
            &["SELECT count(*) FROM 's3://no-such-bucket/features/'"],
        ),
        &["s3://no-such-bucket/features/", "the bucket does not exist"],
    );
    failure_naming(
        &query(
            dir.path(),
            &env,
            &["SELECT count(*) FROM 's3://scoring/nothing-here/'"],
        ),
        &["s3://scoring/nothing-here/", "no files at this location"],
    );
}

#[test]
fn scores_a_delta_table_in_a_bucket_into_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = S3Server::start(dir.path());
    let keys = server.fixture(&["setup", "10"]);
    let (key, secret) = keys.trim().split_once(' ').expect("key and secret");
    let env = [
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", server.endpoint.as_str()),
    ];
    // Four versions by the deltalake package: partitions, a schema change, a deletion.
    let rows = 4_000;
    delta_fixture(
        &env,
        &["features", "s3://scoring/lake/features", &rows.to_string()],
    );
    let model = format!("m={}", sklearn_model(dir.path()));
    let score = |env: &[(&str, &str)], extra: &[&str]| {
        let base = ["--model", &model, "--result-type", "m=double"];
        query(dir.path(), env, &[&base[..], extra].concat())
    };
    let select = "SELECT id, m(f0, f1, f2) AS p FROM features ORDER BY id";
    let out = score(
        &env,
        &[
            "--table",
            "features=s3://scoring/lake/features",
            "--output",
            "delta:s3://scoring/lake/scored",
            select,
        ],
    );
    let printed = success(&out);
    assert!(
        printed.contains("to delta:s3://scoring/lake/scored (version 0)"),
        "{printed}"
    );
    let theirs = read_delta(&env, "s3://scoring/lake/scored");
    assert_delta_scored(&theirs, &feature_ids(rows));
    assert_eq!(theirs["operations"], serde_json::json!(["WRITE"]));

    // COPY appends to it, with the table's store options and time travel in SQL.
    let create = format!(
        "CREATE EXTERNAL TABLE features STORED AS DELTATABLE LOCATION 's3://scoring/lake/features' OPTIONS ('version' '1', 'aws.access_key_id' '{key}', 'aws.secret_access_key' '{secret}', 'aws.region' 'us-east-1', 'aws.endpoint' '{}')",
        server.endpoint
    );
    let copy = "COPY (SELECT id, m(f0, f1, f2) AS p FROM features WHERE id >= 3990) TO 's3://scoring/lake/scored' STORED AS DELTATABLE OPTIONS ('mode' 'append')";
    success(&score(&env, &["-c", &create, "-c", copy]));
    let theirs = read_delta(&env, "s3://scoring/lake/scored");
    assert_eq!(theirs["version"], 1);
    let mut ids = feature_ids(rows);
    ids.extend(3990..rows);
    ids.sort_unstable();
    assert_delta_scored(&theirs, &ids);

    let count = query(
        dir.path(),
        &env,
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM 's3://scoring/lake/scored'",
        ],
    );
    assert_eq!(success(&count).trim(), format!("n\n{}", rows + 99 + 10));

    // A failed write leaves the table as it was, and no data file of its own.
    let before = server.fixture(&["list", key, secret, "scoring/lake/scored"]);
    let raiser = format!("r={}", test_model("raiser"));
    let failing = "COPY (SELECT value AS id, r(CASE WHEN value = 19999 THEN -1.0 ELSE CAST(value AS DOUBLE) END) AS p FROM generate_series(0, 19999)) TO 's3://scoring/lake/scored' STORED AS DELTATABLE OPTIONS ('mode' 'append', 'target_file_size' '1KB')";
    failure_naming(
        &query(
            dir.path(),
            &env,
            &[
                "--workers",
                "1",
                "--batch-size",
                "1000",
                "--model",
                &raiser,
                "-c",
                failing,
            ],
        ),
        &["model 'r'"],
    );
    assert_eq!(
        server.fixture(&["list", key, secret, "scoring/lake/scored"]),
        before
    );

    // Refused credentials and a missing bucket name the URL and the cause.
    let mut wrong = env;
    wrong[1].1 = "not-the-secret";
    failure_naming(
        &query(
            dir.path(),
            &wrong,
            &["--table", "t=delta:s3://scoring/lake/features", "SELECT 1"],
        ),
        &["s3://scoring/lake/features", "hint: the store refused"],
    );
    failure_naming(
        &query(
            dir.path(),
            &env,
            &[
                "--table",
                "t=delta:s3://no-such-bucket/features",
                "SELECT 1",
            ],
        ),
        &["s3://no-such-bucket/features", "the bucket does not exist"],
    );
}
