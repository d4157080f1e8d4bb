//! A real Flight server on 127.0.0.1 with real models in the embedded interpreter,
//! driven by arrow-flight's own client.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::{Action, FlightClient, FlightDescriptor};
use futures::TryStreamExt;
use mlfusion_flight::{ServedModels, serve};
use mlfusion_udf::{LoadOptions, MlModel, OnError, PyModel, WorkerLimits};
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

const TOKEN: &str = "s3cret";

fn test_model(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/models")
        .join(name)
        .display()
        .to_string()
}

/// Starts a server with the adder, raiser and labeler test models; returns its address.
async fn start_server() -> String {
    mlfusion_udf::start_python(None).expect("python");
    let models = tokio::task::spawn_blocking(|| {
        let mut models = ServedModels::default();
        for name in ["adder", "raiser", "labeler"] {
            let model = PyModel::load(name, test_model(name)).expect("model loads");
            let default = (name == "labeler").then(|| "label string, score double".to_owned());
            models
                .insert(model, default, OnError::Raise)
                .expect("binds");
        }
        models
    })
    .await
    .expect("loading");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(
        models,
        listener,
        mlfusion_flight::Access {
            token: Some(TOKEN.to_owned()),
            tls: None,
        },
        std::future::pending(),
    ));
    format!("http://{addr}")
}

async fn client(addr: &str, token: Option<&str>) -> FlightClient {
    let channel = Channel::from_shared(addr.to_owned())
        .expect("uri")
        .connect()
        .await
        .expect("connects");
    let mut client = FlightClient::new(channel);
    if let Some(token) = token {
        client
            .add_header("authorization", &format!("Bearer {token}"))
            .expect("header");
    }
    client
}

/// Batches of (a, b) with `sizes` rows each; a = row index, b = 0.5 * index.
fn batches(sizes: &[usize], negative_at: Option<usize>) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, false),
        Field::new("b", DataType::Float64, false),
    ]));
    let mut start = 0i64;
    sizes
        .iter()
        .map(|&n| {
            let a: Vec<i64> = (start..start + n as i64)
                .map(|i| {
                    if Some(i as usize) == negative_at {
                        -1
                    } else {
                        i
                    }
                })
                .collect();
            let b: Vec<f64> = (start..start + n as i64).map(|i| i as f64 * 0.5).collect();
            start += n as i64;
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(a)),
                    Arc::new(Float64Array::from(b)),
                ],
            )
            .expect("batch")
        })
        .collect()
}

/// Streams `input` through `DoExchange` with `command`, one message per batch (as
/// pyarrow sends them); returns the result batches.
async fn exchange(
    client: &mut FlightClient,
    command: &str,
    input: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>, FlightError> {
    let data = FlightDataEncoderBuilder::new()
        .with_flight_descriptor(Some(FlightDescriptor::new_cmd(command.to_owned())))
        .with_max_flight_data_size(usize::MAX)
        .build(futures::stream::iter(input.into_iter().map(Ok)));
    client.do_exchange(data).await?.try_collect().await
}

fn status(err: FlightError) -> tonic::Status {
    match err {
        FlightError::Tonic(s) => *s,
        other => panic!("expected a gRPC status, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_input_batch_gets_one_result_batch_of_its_rows_in_order() {
    let addr = start_server().await;
    let mut client = client(&addr, Some(TOKEN)).await;
    // 300,000 rows: a 4.8 MB request (over gRPC's default 4 MiB limit) and a 2.4 MB
    // answer (over the 2 MiB at which arrow-flight's encoder splits batches).
    let sizes = [3, 1000, 1, 4096, 300_000];
    let out = exchange(&mut client, r#"{"model": "adder"}"#, batches(&sizes, None))
        .await
        .expect("exchange");
    assert_eq!(
        out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
        sizes
    );
    let mut i = 0.0;
    for batch in &out {
        assert_eq!(batch.schema().field(0).name(), "prediction");
        for v in batch.column(0).as_primitive::<Float64Type>().values() {
            assert_eq!(*v, i + i * 0.5, "row {i}");
            i += 1.0;
        }
    }

    // The struct call form: the model sees the column names; a struct result type.
    let out = exchange(
        &mut client,
        r#"{"model": "labeler", "call": "struct"}"#,
        vec![labeler_input()],
    )
    .await
    .expect("exchange");
    let result = out[0].column(0).as_struct();
    assert_eq!(result.column_names(), ["label", "score"]);
    assert_eq!(result.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_scored_side_by_side_are_answered_in_order() {
    // Two workers; odd batches are slow: the server scores two batches of a stream at
    // once, and the even one ends first, yet each answer follows its batch.
    mlfusion_udf::start_python(None).expect("python");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("calls.log");
    let options = LoadOptions {
        extra_env: [(
            "MLFUSION_TEST_PREDICT_LOG".to_owned(),
            log.display().to_string(),
        )]
        .into(),
        ..LoadOptions::default()
    };
    let models = tokio::task::spawn_blocking(move || {
        let mlmodel = MlModel::from_path(Path::new(&test_model("sleeper"))).expect("MLmodel");
        let model = PyModel::from_mlmodel(
            "sleeper",
            mlmodel,
            2,
            WorkerLimits::default(),
            None,
            &options,
        )
        .expect("model loads");
        let mut models = ServedModels::default();
        models.insert(model, None, OnError::Raise).expect("binds");
        models
    })
    .await
    .expect("loading");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let access = mlfusion_flight::Access::default();
    tokio::spawn(serve(models, listener, access, std::future::pending()));
    let mut client = client(&addr, None).await;
    let sizes = [3, 2, 5, 4, 7, 6, 1, 8];
    let out = exchange(
        &mut client,
        r#"{"model": "sleeper"}"#,
        batches(&sizes, None),
    )
    .await
    .expect("exchange");
    assert_eq!(
        out.iter().map(RecordBatch::num_rows).collect::<Vec<_>>(),
        sizes
    );
    let values: Vec<f64> = out
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Float64Type>().values().to_vec())
        .collect();
    let expected: Vec<f64> = (0..values.len()).map(|i| i as f64).collect();
    assert_eq!(values, expected, "every row once, in order");
    // Some two calls of the one stream overlapped in time.
    let calls: Vec<(f64, f64)> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').expect("start end");
            (a.parse().expect("start"), b.parse().expect("end"))
        })
        .collect();
    assert_eq!(calls.len(), sizes.len());
    let overlapping = calls
        .iter()
        .enumerate()
        .any(|(i, a)| calls[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlapping, "no two batches were scored at once: {calls:?}");
}

fn labeler_input() -> RecordBatch {
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("x", DataType::Float64, false),
            Field::new("tag", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Float64Array::from(vec![5.0, -2.0])),
            Arc::new(arrow::array::StringArray::from(vec!["a", "b"])),
        ],
    )
    .expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_token_are_rejected() {
    let addr = start_server().await;
    for token in [None, Some("wrong")] {
        let mut client = client(&addr, token).await;
        let err = exchange(&mut client, r#"{"model": "adder"}"#, batches(&[2], None))
            .await
            .expect_err("rejected");
        assert_eq!(status(err).code(), Code::Unauthenticated, "{token:?}");
        let err = client.list_flights("").await.err().expect("rejected");
        assert_eq!(status(err).code(), Code::Unauthenticated);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stream_names_the_model_and_leaves_the_others_alone() {
    let addr = start_server().await;
    let mut failing = client(&addr, Some(TOKEN)).await;
    let mut healthy = client(&addr, Some(TOKEN)).await;
    let (bad, good) = tokio::join!(
        exchange(
            &mut failing,
            r#"{"model": "raiser"}"#,
            batches(&[100, 100], Some(150))
        ),
        exchange(
            &mut healthy,
            r#"{"model": "adder"}"#,
            batches(&[500; 20], None)
        ),
    );
    let failed = status(bad.expect_err("the model raises"));
    assert!(
        failed.message().contains("model 'raiser'") && failed.message().contains("negative input"),
        "{failed:?}"
    );
    let good = good.expect("the other stream completes");
    assert_eq!(
        good.iter().map(RecordBatch::num_rows).sum::<usize>(),
        10_000
    );

    // Unknown models and paths are refused: clients name served models only.
    let err = exchange(
        &mut failing,
        r#"{"model": "/etc/passwd"}"#,
        batches(&[1], None),
    )
    .await
    .expect_err("not served");
    let err = status(err);
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message().contains("served: adder, labeler, raiser"),
        "{err:?}"
    );
    let err = exchange(
        &mut failing,
        r#"{"model": "adder", "uri": "runs:/x"}"#,
        vec![],
    )
    .await
    .expect_err("unknown key");
    assert_eq!(status(err).code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_described_and_healthy() {
    let addr = start_server().await;
    let mut client = client(&addr, Some(TOKEN)).await;
    let infos: Vec<_> = client
        .list_flights("")
        .await
        .expect("list")
        .try_collect()
        .await
        .expect("infos");
    assert_eq!(infos.len(), 3);
    let schema = client
        .get_schema(FlightDescriptor::new_cmd(
            r#"{"model": "adder", "result_type": "array<double>"}"#,
        ))
        .await
        .expect("schema");
    assert!(matches!(schema.field(0).data_type(), DataType::List(_)));
    let health: Vec<_> = client
        .do_action(Action::new("health", ""))
        .await
        .expect("action")
        .try_collect()
        .await
        .expect("result");
    let health: serde_json::Value = serde_json::from_slice(&health[0]).expect("json");
    assert_eq!(health["status"], "ok");
    let err = client
        .get_schema(FlightDescriptor::new_cmd(
            r#"{"model": "adder", "result_type": "timestamp"}"#,
        ))
        .await
        .expect_err("bad result type");
    assert!(
        status(err)
            .message()
            .contains("invalid 'spark_udf' result type")
    );
    let err = client
        .do_action(Action::new("nope", ""))
        .await
        .err()
        .expect("unknown action");
    assert!(status(err).message().contains("health, models"));
}
