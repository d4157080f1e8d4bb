//! A real `mlfusion serve` under hostile input, on 127.0.0.1: nested types, garbage
//! commands, mutated Arrow IPC, empty batches, stalled and killed clients, many bindings,
//! then SIGTERM with a stream open. After each, a healthy stream gets exactly its rows;
//! the server never panics, and exits 0 within its grace period.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::utils::{batches_to_flight_data, flight_data_to_arrow_batch};
use arrow_flight::{Action, Criteria, FlightData, FlightDescriptor};
use futures::{SinkExt, StreamExt};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::fixtures::{BIN, test_model};

/// A running `mlfusion serve` and its log.
struct Server {
    child: Child,
    address: String,
    log: PathBuf,
}

impl Server {
    /// Starts `mlfusion serve --port 0 ARGS` and waits for its readiness line.
    fn start(dir: &Path, args: &[&str]) -> Self {
        let log = dir.join(format!("serve-{}.log", args.len()));
        let child = Command::new(BIN)
            .args(["serve", "--port", "0", "--workers", "1"])
            .args(args)
            .stderr(std::fs::File::create(&log).expect("log"))
            .stdout(Stdio::null())
            .spawn()
            .expect("serve starts");
        let mut server = Self {
            child,
            address: String::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let text = server.log_text();
            if let Some(line) = text.lines().find(|l| l.starts_with("mlfusion: serving ")) {
                let location = line.split(" at ").nth(1).expect("location");
                let location = location.split(' ').next().expect("location");
                server.address = location.replace("grpc://", "http://");
                return server;
            }
            assert!(
                server.child.try_wait().expect("wait").is_none(),
                "serve exited:\n{text}"
            );
            assert!(Instant::now() < deadline, "serve did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .expect("VmRSS");
        line.split_whitespace()
            .nth(1)
            .expect("kB")
            .parse::<f64>()
            .expect("number")
            / 1024.0
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    async fn client(&self) -> FlightServiceClient<Channel> {
        let channel = Channel::from_shared(self.address.clone())
            .expect("uri")
            .connect()
            .await
            .expect("connects");
        FlightServiceClient::new(channel).max_decoding_message_size(usize::MAX)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (a, b) batches: a = ids from `start`, b = 0.
fn ids(start: i64, rows: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Float64, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(start..start + rows as i64)),
            Arc::new(Float64Array::from(vec![0.0; rows])),
        ],
    )
    .expect("batch")
}

/// The messages of an exchange: the descriptor with the schema, then the batches.
fn messages(command: &str, batches: &[RecordBatch]) -> Vec<FlightData> {
    let schema = batches[0].schema();
    let mut messages = batches_to_flight_data(&schema, batches.to_vec()).expect("encode");
    messages[0].flight_descriptor = Some(FlightDescriptor::new_cmd(command.to_owned()));
    messages
}

/// Sends `messages` and reads the answer to the end.
async fn exchange(server: &Server, messages: Vec<FlightData>) -> Result<Vec<FlightData>, Status> {
    let mut client = server.client().await;
    let mut answers = client
        .do_exchange(futures::stream::iter(messages))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(message) = answers.message().await? {
        out.push(message);
    }
    Ok(out)
}

/// The prediction batches of an answer.
fn predictions(answer: &[FlightData]) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::try_from(&answer[0]).expect("schema first"));
    answer[1..]
        .iter()
        .map(|m| {
            flight_data_to_arrow_batch(m, Arc::clone(&schema), &HashMap::new()).expect("batch")
        })
        .collect()
}

/// A healthy stream of three batches gets each of its rows back, in order.
async fn assert_healthy(server: &Server, after: &str) {
    let batches = [ids(0, 1000), ids(1000, 1), ids(1001, 4096)];
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        exchange(server, messages(r#"{"model": "adder"}"#, &batches)),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer after {after}"))
    .unwrap_or_else(|e| panic!("healthy stream failed after {after}: {e}"));
    let got = predictions(&answer);
    assert_eq!(got.len(), 3, "after {after}");
    let mut next = 0.0;
    for (batch, sent) in got.iter().zip(&batches) {
        assert_eq!(batch.num_rows(), sent.num_rows(), "after {after}");
        for value in batch.column(0).as_primitive::<Float64Type>().values() {
            assert_eq!(*value, next, "after {after}");
            next += 1.0;
        }
    }
    assert!(
        !server.log_text().contains("panicked"),
        "after {after}:\n{}",
        server.log_text()
    );
}

/// An exchange that sends its descriptor and schema, then nothing: the sender (to keep
/// the request open) and the answers.
async fn stall(
    server: &Server,
) -> (
    futures::channel::mpsc::Sender<FlightData>,
    tonic::Streaming<FlightData>,
) {
    let mut client = server.client().await;
    let (mut requests, outgoing) = futures::channel::mpsc::channel::<FlightData>(4);
    let schema = messages(r#"{"model": "adder"}"#, &[ids(0, 3)]).remove(0);
    requests.send(schema).await.expect("send schema");
    let answers = client
        .do_exchange(outgoing)
        .await
        .expect("exchange")
        .into_inner();
    (requests, answers)
}

/// What `ListFlights` answers, each listing a success.
async fn list_flights(server: &Server) -> Vec<arrow_flight::FlightInfo> {
    let mut client = server.client().await;
    let listed: Vec<_> = client
        .list_flights(Criteria::default())
        .await
        .expect("list")
        .into_inner()
        .collect()
        .await;
    listed.into_iter().map(|i| i.expect("info")).collect()
}

/// The status a stream ends with, once its messages are read.
async fn final_status(answers: &mut tonic::Streaming<FlightData>) -> Status {
    loop {
        match answers.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}

fn nested(n: usize) -> String {
    format!("{}double{}", "array<".repeat(n), ">".repeat(n))
}

/// A deterministic byte mutator (xorshift64).
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `bytes` with a few bytes overwritten, or cut short.
    fn mutate(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        if out.is_empty() {
            return out;
        }
        if self.next().is_multiple_of(5) {
            out.truncate((self.next() as usize) % out.len());
            return out;
        }
        for _ in 0..=(self.next() % 4) {
            let at = (self.next() as usize) % out.len();
            out[at] = match self.next() % 3 {
                0 => 0xff,
                1 => 0x7f,
                _ => self.next() as u8,
            };
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_never_stops_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let adder = format!("adder={}", test_model("adder"));
    let server = Server::start(
        dir.path(),
        &[
            "--model",
            &adder,
            "--stream-idle-timeout",
            "2s",
            "--max-bindings",
            "8",
        ],
    );
    assert_healthy(&server, "start").await;

    // Nested result types, in every call that reads a command.
    let deep = serde_json::json!({"model": "adder", "result_type": nested(10_000)}).to_string();
    let mut client = server.client().await;
    let descriptor = FlightDescriptor::new_cmd(deep.clone());
    let schema = client
        .get_schema(descriptor.clone())
        .await
        .expect_err("too deep");
    assert_eq!(schema.code(), Code::InvalidArgument);
    assert!(
        schema.message().contains("deeper than 64 levels"),
        "{}",
        schema.message()
    );
    let info = client
        .get_flight_info(descriptor)
        .await
        .expect_err("too deep");
    assert_eq!(info.code(), Code::InvalidArgument);
    let err = exchange(&server, messages(&deep, &[ids(0, 3)]))
        .await
        .expect_err("too deep");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_healthy(&server, "nested result types").await;

    // Garbage commands.
    let garbage: Vec<Vec<u8>> = vec![
        b"not json".to_vec(),
        Vec::new(),
        vec![0xff, 0xfe, 0x00],
        format!(
            r#"{{"model": "adder", "params": {}1{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        )
        .into_bytes(),
        br#"{"model": "adder", "path": "/etc/passwd"}"#.to_vec(),
        br#"{"model": "../adder"}"#.to_vec(),
        format!(r#"{{"model": "{}"}}"#, "x".repeat(4 << 20)).into_bytes(),
        br#"{"model": "adder", "call": "rows"}"#.to_vec(),
        br#"{"model": "adder", "result_type": "quaternion"}"#.to_vec(),
    ];
    for command in &garbage {
        let mut first = messages("{}", &[ids(0, 3)]);
        first[0].flight_descriptor = Some(FlightDescriptor::new_cmd(command.clone()));
        let err = exchange(&server, first).await.expect_err("garbage");
        assert!(
            matches!(err.code(), Code::InvalidArgument | Code::NotFound),
            "{:?}: {err}",
            String::from_utf8_lossy(&command[..command.len().min(40)])
        );
    }
    assert_healthy(&server, "garbage commands").await;

    // Mutated Arrow IPC: every stream ends with an answer or INVALID_ARGUMENT.
    let valid = messages(r#"{"model": "adder"}"#, &[ids(0, 100)]);
    let mut mutator = Mutator(0x9e37_79b9_7f4a_7c15);
    let mut refused = 0;
    for round in 0..300 {
        let mut sent = valid.clone();
        let which = round % 2; // the schema message, or the batch
        if mutator.next().is_multiple_of(2) {
            sent[which].data_header = mutator.mutate(&sent[which].data_header).into();
        } else {
            sent[which].data_body = mutator.mutate(&sent[which].data_body).into();
        }
        let answered = tokio::time::timeout(Duration::from_secs(30), exchange(&server, sent))
            .await
            .expect("every stream ends");
        match answered {
            Ok(answer) => assert!(answer.len() <= 2, "one answer at most"),
            Err(e) => {
                assert_eq!(e.code(), Code::InvalidArgument, "round {round}: {e}");
                refused += 1;
            }
        }
    }
    assert!(refused > 100, "most mutations are refused ({refused})");
    assert_healthy(&server, "mutated IPC").await;

    // Batches of no rows get an answer of no rows, in lockstep.
    let mut client = server.client().await;
    let (mut requests, outgoing) = futures::channel::mpsc::channel::<FlightData>(4);
    let mut sent = messages(
        r#"{"model": "adder"}"#,
        &[ids(0, 3), ids(3, 0), ids(3, 2), ids(5, 0)],
    );
    requests.send(sent.remove(0)).await.expect("send schema");
    let mut answers = client
        .do_exchange(outgoing)
        .await
        .expect("exchange")
        .into_inner();
    let schema = answers
        .message()
        .await
        .expect("schema")
        .expect("schema message");
    let schema = Arc::new(Schema::try_from(&schema).expect("schema"));
    for (message, rows) in sent.into_iter().zip([3, 0, 2, 0]) {
        requests.send(message).await.expect("send");
        let answer = tokio::time::timeout(Duration::from_secs(30), answers.message())
            .await
            .expect("each batch is answered before the next is sent")
            .expect("answer")
            .expect("a message");
        let batch = flight_data_to_arrow_batch(&answer, Arc::clone(&schema), &HashMap::new())
            .expect("batch");
        assert_eq!(batch.num_rows(), rows);
    }
    drop(requests);
    assert!(answers.message().await.expect("clean end").is_none());
    assert_healthy(&server, "empty batches").await;

    // A stalled client (schema sent, then nothing) is ended after the idle timeout.
    let started = Instant::now();
    let (requests, mut answers) = stall(&server).await;
    let ended = final_status(&mut answers).await;
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended}");
    assert!(ended.message().contains("--stream-idle-timeout"), "{ended}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(requests);
    assert_healthy(&server, "a stalled client").await;

    // Killed clients: connections dropped mid-stream, with batches unread.
    for _ in 0..4 {
        let mut client = server.client().await;
        let (mut requests, outgoing) = futures::channel::mpsc::channel::<FlightData>(8);
        for message in messages(r#"{"model": "adder"}"#, &[ids(0, 50_000), ids(0, 50_000)]) {
            requests.send(message).await.expect("send");
        }
        let answers = client.do_exchange(outgoing).await.expect("exchange");
        drop((answers, requests, client));
    }
    assert_healthy(&server, "killed clients").await;

    // Bindings stay bounded: distinct result types and distinct (ignored) 4 MiB params.
    let before = server.rss_mib();
    let mut client = server.client().await;
    for i in 0..40 {
        let params = serde_json::json!({format!("p{i}"): "x".repeat(4 << 20)});
        let command = serde_json::json!({"model": "adder", "params": params}).to_string();
        client
            .get_schema(FlightDescriptor::new_cmd(command))
            .await
            .expect("params the model ignores bind");
        let typed =
            serde_json::json!({"model": "adder", "result_type": format!("struct<f{i}:double>")});
        client
            .get_schema(FlightDescriptor::new_cmd(typed.to_string()))
            .await
            .expect("struct result types bind");
    }
    let after = server.rss_mib();
    let listing = client
        .do_action(Action::new("models", ""))
        .await
        .expect("models")
        .into_inner()
        .next()
        .await
        .expect("a result")
        .expect("ok");
    let listing: serde_json::Value = serde_json::from_slice(&listing.body).expect("json");
    let bindings = listing[0]["bindings"].as_u64().expect("bindings");
    assert!(
        bindings <= 8,
        "{bindings} bindings kept past --max-bindings 8"
    );
    eprintln!("binding test: server RSS {before:.0} MiB before, {after:.0} MiB after");
    assert!(after - before < 128.0, "RSS {before:.0} -> {after:.0} MiB");
    // No local path of the server is shown to clients.
    let text = listing.to_string();
    assert!(!text.contains(&test_model("adder")), "{text}");
    for info in list_flights(&server).await {
        assert!(!String::from_utf8_lossy(&info.app_metadata).contains(&test_model("adder")));
    }
    assert_healthy(&server, "many bindings").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_open_streams_after_the_grace_period_and_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let adder = format!("adder={}", test_model("adder"));
    let mut server = Server::start(dir.path(), &["--model", &adder, "--shutdown-grace", "2s"]);
    assert_healthy(&server, "start").await;
    let (requests, mut answers) = stall(&server).await;
    let started = Instant::now();
    server.signal(libc::SIGTERM);
    let ended = final_status(&mut answers).await;
    assert_eq!(ended.code(), Code::Unavailable, "{ended}");
    assert!(
        ended.message().contains("the server is stopping"),
        "{ended}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the grace period is kept"
    );
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "serve did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!(
        "shutdown with a stalled stream: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
    drop(requests);
}

#[test]
fn a_bad_tls_certificate_fails_before_the_readiness_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(
        &cert,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    std::fs::write(&key, "not a key").expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--port", "0", "--workers", "0"])
        .args(["--model", &format!("adder={}", test_model("adder"))])
        .args(["--tls-cert", &cert.display().to_string()])
        .args(["--tls-key", &key.display().to_string()])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("mlfusion: serving"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_an_inferable_default_serves_explicit_result_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("cube");
    std::fs::create_dir(&model).expect("mkdir");
    std::fs::copy(
        Path::new(&test_model("adder")).join("code/adder_model.py"),
        {
            std::fs::create_dir(model.join("code")).expect("mkdir");
            model.join("code/adder_model.py")
        },
    )
    .expect("copy");
    std::fs::write(
        model.join("MLmodel"),
        r#"flavors:
  python_function:
    loader_module: adder_model
    code: code
signature:
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2, 2]}}]'
"#,
    )
    .expect("write");
    let adder = format!("adder={}", test_model("adder"));
    let cube = format!("cube={}", model.display());
    let server = Server::start(dir.path(), &["--model", &adder, "--model", &cube]);
    assert!(
        server.log_text().contains("only 1D or 2D"),
        "{}",
        server.log_text()
    );
    let err = exchange(&server, messages(r#"{"model": "cube"}"#, &[ids(0, 3)]))
        .await
        .expect_err("no default result type");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("model 'cube'") && err.message().contains("only 1D or 2D"),
        "{err}"
    );
    let answer = exchange(
        &server,
        messages(
            r#"{"model": "cube", "result_type": "double"}"#,
            &[ids(0, 3)],
        ),
    )
    .await
    .expect("an explicit result type works");
    assert_eq!(predictions(&answer)[0].num_rows(), 3);
    assert_eq!(
        list_flights(&server).await.len(),
        2,
        "both models are listed"
    );
    assert_healthy(&server, "a model without a default").await;
}
