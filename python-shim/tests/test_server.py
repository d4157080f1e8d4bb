"""The server under real clients: tokens, TLS, clients killed mid-stream, a failing model
beside a healthy one, 32 concurrent streams that lose, duplicate and reorder nothing, and
models served from environments of their own (the tests taking ``test_models`` run
against ``serve`` and ``serve --env-manager uv``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from conftest import MODELS
from pyspark.sql import functions as F

import mlfusion
from mlfusion._client import Connection, describe, exchange

TOKEN = "t0k3n-for-tests"


def adder_batches(start: int, stop: int, size: int):
    """Batches of (a = id, b = 0.0): the adder model answers each row with its id."""
    for lo in range(start, stop, size):
        ids = np.arange(lo, min(lo + size, stop), dtype=np.int64)
        yield pa.record_batch([pa.array(ids), pa.array(np.zeros(len(ids)))], names=["a", "b"])


def score(location: str, model: str, batches, token=None, **conn):
    connection = Connection.of(location, token, **conn)
    return list(exchange(connection, model, None, None, "columns", batches, pa.float64()))


@pytest.fixture(scope="module")
def secured(start_server, tmp_session):
    token_file = tmp_session / "token"
    token_file.write_text(TOKEN + "\n")
    return start_server(f"--model=adder={MODELS / 'adder'}", "--auth-token-file", str(token_file))


def test_calls_need_the_token(secured, spark):
    df = spark.range(10).select(F.col("id").alias("a"), F.lit(0.5).alias("b"))
    for token in (None, "wrong"):
        with pytest.raises(mlfusion.MlfusionError, match="(?i)token"):
            mlfusion.spark_udf(spark, "adder", server=secured.location, token=token)
        with pytest.raises(mlfusion.MlfusionError, match="(?i)token"):
            score(secured.location, "adder", adder_batches(0, 10, 5), token=token)
    udf = mlfusion.spark_udf(spark, "adder", server=secured.location, token=TOKEN)
    got = [r.p for r in df.select(udf("a", "b").alias("p")).orderBy("a").collect()]
    assert got == [i + 0.5 for i in range(10)]

    # Flight's handshake, as pyarrow clients do it: the token as basic-auth password.
    with flight.FlightClient(secured.location) as client:
        header = client.authenticate_basic_token("anyone", TOKEN)
        infos = list(client.list_flights(options=flight.FlightCallOptions(headers=[header])))
        assert [json.loads(i.descriptor.command)["model"] for i in infos] == ["adder"]
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate_basic_token("anyone", "wrong")


def test_tls(start_server, tmp_session, spark):
    cert, key = tmp_session / "cert.pem", tmp_session / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = start_server(f"--model=adder={MODELS / 'adder'}", "--tls-cert", str(cert), "--tls-key", str(key))
    assert server.location.startswith("grpc+tls://127.0.0.1:")
    out = score(server.location, "adder", adder_batches(0, 100, 30), tls_root_certs=str(cert))
    assert pa.concat_arrays(out).to_pylist() == [float(i) for i in range(100)]
    with pytest.raises(mlfusion.MlfusionError):
        score(server.location, "adder", adder_batches(0, 10, 5))  # the certificate is not trusted
    df = spark.range(5).select(F.col("id").alias("a"), F.lit(1.0).alias("b"))
    udf = mlfusion.spark_udf(spark, "adder", server=server.location, tls_root_certs=str(cert))
    assert [r.p for r in df.select(udf("a", "b").alias("p")).orderBy("a").collect()] == [1.0, 2.0, 3.0, 4.0, 5.0]


KILLED_CLIENT = """
import sys, numpy as np, pyarrow as pa
from mlfusion._client import Connection, exchange
def batches():
    i = 0
    while True:
        ids = np.arange(i, i + 1000, dtype=np.int64); i += 1000
        yield pa.record_batch([pa.array(ids), pa.array(np.zeros(1000))], names=["a", "b"])
for n, result in enumerate(exchange(Connection.of(sys.argv[1]), "adder", None, None, "columns", batches(), pa.float64())):
    if n == 3:
        print("streaming", flush=True)
"""


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_a_client_killed_mid_stream_frees_its_stream(test_models):
    baseline = open_fds(test_models.proc.pid)
    for _ in range(3):
        client = subprocess.Popen(
            [sys.executable, "-c", KILLED_CLIENT, test_models.location], stdout=subprocess.PIPE, text=True
        )
        assert client.stdout.readline().strip() == "streaming"
        client.send_signal(signal.SIGKILL)
        client.wait()
    # The server closes the killed streams' connections and goes on serving.
    deadline = time.monotonic() + 30
    while open_fds(test_models.proc.pid) > baseline and time.monotonic() < deadline:
        time.sleep(0.2)
    assert open_fds(test_models.proc.pid) <= baseline
    out = score(test_models.location, "adder", adder_batches(0, 5000, 1000))
    assert pa.concat_arrays(out).to_pylist() == [float(i) for i in range(5000)]
    assert test_models.proc.poll() is None


def test_a_failing_model_does_not_disturb_a_concurrent_stream(test_models, spark):
    healthy_started = threading.Event()

    def healthy():
        def batches():
            for n, b in enumerate(adder_batches(0, 200_000, 2000)):
                if n == 1:
                    healthy_started.set()
                yield b

        return pa.concat_arrays(score(test_models.location, "adder", batches()))

    def failing():
        healthy_started.wait(30)
        rows = [pa.record_batch([pa.array([1, 2, -3], pa.int64())], names=["a"])] * 3
        score(test_models.location, "raiser", iter(rows))

    with ThreadPoolExecutor(2) as pool:
        good, bad = pool.submit(healthy), pool.submit(failing)
        with pytest.raises(mlfusion.MlfusionError, match="model 'raiser'.*negative input"):
            bad.result()
        assert good.result().to_numpy().tolist() == list(map(float, range(200_000)))

    # Through Spark: the task fails with the model's error, named.
    raiser = mlfusion.spark_udf(spark, "raiser", server=test_models.location)
    df = spark.range(-2, 3).select(F.col("id").alias("a"))
    with pytest.raises(Exception, match="model 'raiser': predict raised ValueError: negative input"):
        df.select(raiser("a")).collect()


def test_on_error_keeps_the_rows_that_score(test_models, spark):
    """A model raising on some rows: with on_error, exactly those rows are NULL or carry
    their error, every other row has its prediction, in order."""
    df = spark.range(0, 5000, numPartitions=2).select(
        F.when(F.col("id").isin(3, 2500, 4999), -1.0).otherwise(F.col("id") * 1.0).alias("a"), "id")
    nulls = mlfusion.spark_udf(spark, "raiser", "double", server=test_models.location, on_error="null")
    got = df.select("id", nulls("a").alias("p")).orderBy("id").collect()
    assert [r.id for r in got if r.p is None] == [3, 2500, 4999]
    assert all(r.p == float(r.id) for r in got if r.p is not None)
    structs = mlfusion.spark_udf(spark, "raiser", "double", server=test_models.location, on_error="struct")
    got = df.select("id", structs("a").alias("p")).orderBy("id").collect()
    failed = [(r.id, r.p.error) for r in got if r.p.error is not None]
    assert [i for i, _ in failed] == [3, 2500, 4999]
    assert all("predict raised ValueError: negative input" in e for _, e in failed), failed
    assert all(r.p.value == float(r.id) for r in got if r.p.error is None)
    with pytest.raises(mlfusion.MlfusionError, match="on_error"):
        mlfusion.spark_udf(spark, "raiser", "double", server=test_models.location, on_error="skip")
    # Another client sending it to the server directly: refused naming the field.
    with pytest.raises(mlfusion.MlfusionError, match="unknown on_error 'skip': raise, null or struct"):
        describe(Connection.of(test_models.location, None, None), "raiser", "double", None, {"on_error": "skip"})


def test_large_batches_get_one_answer_each(test_models):
    """Batches over gRPC's default 4 MiB message limit, with answers over the 2 MiB at
    which Flight encoders split batches: still one answer of the batch's rows each."""
    sizes = [600_000, 1, 300_000]
    bounds = np.cumsum([0] + sizes)
    batches = [next(adder_batches(lo, hi, hi - lo)) for lo, hi in zip(bounds, bounds[1:])]
    out = score(test_models.location, "adder", batches)
    assert [len(a) for a in out] == sizes
    assert np.array_equal(pa.concat_arrays(out).to_numpy(), np.arange(bounds[-1], dtype=np.float64))


def test_models_are_served_from_their_own_envs(test_models, spark):
    listed = {m["model"]: m for m in test_models.action("models")}
    if test_models.env_manager == "local":
        assert {m["env"] for m in listed.values()} == {"local"}
    else:
        pinned, bare = listed["churn"]["env"], listed["adder"]["env"]
        assert pinned.startswith("py3.11-") and bare.startswith("py3.11-") and pinned != bare, listed
        assert listed["labeler"]["env"] == pinned and listed["raiser"]["env"] == bare, listed
    assert all(m["python"].startswith("3.11.") for m in listed.values()), listed

    # Through Spark, as MLflow's own load_model + predict computes them in this venv.
    frame = pd.DataFrame({"x": [1.5, -2.0, 0.25, 0.0], "tag": ["a", "b", "c", "d"]})
    df = spark.createDataFrame(frame).repartition(2)
    labeler = mlfusion.spark_udf(spark, "labeler", "label string, score double", server=test_models.location)
    got = df.select("x", labeler("x", "tag").alias("p")).orderBy("x").collect()
    expected = mlflow.pyfunc.load_model(str(MODELS / "labeler")).predict(frame.sort_values("x"))
    assert [(r.p.label, r.p.score) for r in got] == list(zip(expected["label"], expected["score"]))

    churn_input = pd.DataFrame({"tenure_months": [1, 24, 60], "monthly_charges": [99.5, 50.0, 20.25],
                                "support_calls": [5, 1, 0]})
    churn = mlfusion.spark_udf(spark, "churn", server=test_models.location)
    got = spark.createDataFrame(churn_input).select(churn("tenure_months", "monthly_charges", "support_calls"))
    expected = mlflow.pyfunc.load_model(str(MODELS / "churn")).predict(churn_input)
    assert [r[0] for r in got.collect()] == list(expected)


def test_32_concurrent_streams_lose_duplicate_and_reorder_nothing(start_server, capsys):
    server = start_server(f"--model=adder={MODELS / 'adder'}")
    total, streams, batch = 1_000_000, 32, 4096
    bounds = np.linspace(0, total, streams + 1, dtype=np.int64)

    def stream(i: int):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        out = score(server.location, "adder", adder_batches(lo, hi, batch))
        return lo, hi, [len(a) for a in out], pa.concat_arrays(out).to_numpy()

    started = time.monotonic()
    with ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(stream, range(streams)))
    seconds = time.monotonic() - started
    ids = np.concatenate([r[3] for r in results])
    for lo, hi, lengths, values in results:
        expected = [len(b) for b in adder_batches(lo, hi, batch)]
        assert lengths == expected
        assert np.array_equal(values, np.arange(lo, hi, dtype=np.float64))
    assert len(ids) == total and np.array_equal(np.sort(ids), np.arange(total, dtype=np.float64))
    assert ids.sum() == total * (total - 1) / 2
    stats = server.action("models")[0]
    assert stats["rows_scored"] == total
    with capsys.disabled():
        print(
            f"\nload: {streams} streams, {total:,} rows in {seconds:.1f}s; "
            f"server peak RSS {server.peak_rss_mib():.0f} MiB"
        )


def test_a_slow_reader_holds_server_memory_down(start_server):
    """A client writing 1.2 GB as fast as it can while reading the answers slowly: the
    server's memory stays bounded (it takes input only as answers are taken) and every
    row comes back in order."""
    server = start_server(f"--model=adder={MODELS / 'adder'}")
    rows, size = 75_000_000, 250_000
    descriptor = flight.FlightDescriptor.for_command(json.dumps({"model": "adder"}))
    with flight.FlightClient(server.location) as client:
        writer, reader = client.do_exchange(descriptor)

        def write_all():
            batches = adder_batches(0, rows, size)
            first = next(batches)
            writer.begin(first.schema)
            writer.write_batch(first)
            for batch in batches:
                writer.write_batch(batch)
            writer.done_writing()

        with ThreadPoolExecutor(1) as pool:
            written = pool.submit(write_all)
            total = 0
            for n in range(rows // size):
                if n % 50 == 0:
                    time.sleep(1)
                result = reader.read_chunk().data.column(0)
                assert result[0].as_py() == n * size
                total += len(result)
            written.result()
        writer.close()
    assert total == rows
    assert server.peak_rss_mib() < 400, server.peak_rss_mib()


def test_a_stream_keeps_several_batches_in_flight(start_server):
    """The client writes ahead of the answers (the server scores two batches of a stream
    at once; odd batches of the sleeper model are slow), and every answer still has its
    batch's rows, in order."""
    server = start_server(f"--model=sleeper={MODELS / 'sleeper'}", "--workers", "2")
    sizes = [3, 2, 5, 4, 7, 6, 1, 8] * 3
    bounds = np.cumsum([0] + sizes)
    pulled = []

    def batches():
        for lo, hi in zip(bounds, bounds[1:]):
            pulled.append(hi)
            yield next(adder_batches(int(lo), int(hi), int(hi - lo)))

    ahead, out = None, []
    for result in exchange(Connection.of(server.location), "sleeper", None, None, "columns", batches(), pa.float64()):
        ahead = len(pulled) if ahead is None else ahead
        out.append(result)
    assert ahead >= 3, f"the first answer came back with {ahead} batch(es) sent"
    assert [len(a) for a in out] == sizes
    assert np.array_equal(pa.concat_arrays(out).to_numpy(), np.arange(bounds[-1], dtype=np.float64))


def test_spark_batches_reach_the_server_coalesced(start_server, spark):
    """Spark hands the UDF batches of maxRecordsPerBatch rows; they reach the server
    coalesced to its batch size, and each row gets its own answer."""
    server = start_server(f"--model=adder={MODELS / 'adder'}")
    rows = 200_000
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "1000")
    try:
        df = spark.range(0, rows, numPartitions=2).select(F.col("id").alias("a"), F.lit(0.0).alias("b"))
        udf = mlfusion.spark_udf(spark, "adder", "double", server=server.location)
        got = df.select("a", udf("a", "b").alias("p")).toPandas()
        assert len(got) == rows and (got["p"] == got["a"]).all()
        arrow = mlfusion.predict_in_arrow(df, "adder", ["a", "b"], server=server.location).toPandas()
        pandas = mlfusion.predict_in_pandas(df, "adder", ["a", "b"], server=server.location).toPandas()
        for scored in (arrow, pandas):
            assert len(scored) == rows and (scored["prediction"] == scored["a"]).all()
            assert sorted(scored["a"]) == list(range(rows))
    finally:
        spark.conf.unset("spark.sql.execution.arrow.maxRecordsPerBatch")
    stats = server.action("models")[0]
    assert stats["rows_scored"] == 3 * rows
    # 200 Spark batches per job; per task (100,000 rows) two batches of about 65,536 rows.
    assert stats["batches_scored"] <= 3 * 2 * 2, stats


def scrape(url: str) -> dict[str, float]:
    """The samples of a Prometheus text page, by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = response.read().decode()
    assert text.endswith("# EOF\n")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_count_a_known_job(start_server):
    """`serve --metrics-addr`: scraped before and after a known job, the counters moved by
    exactly its rows, batches, failed rows, streams and worker restarts."""
    server = start_server(
        *(f"--model={m}={MODELS / m}" for m in ("adder", "raiser", "crasher")),
        "--workers", "2", "--metrics-addr", "127.0.0.1:0")
    url = next(line.split(" at ")[1] for line in server.log.read_text().splitlines()
               if line.startswith("mlfusion: metrics at "))
    before = scrape(url)
    # Every model's series exist before its first call.
    for m in ("adder", "raiser", "crasher"):
        assert before[f'mlfusion_rows_scored_total{{model="{m}"}}'] == 0
        assert before[f'mlfusion_workers_alive{{model="{m}"}}'] == 2
        assert before[f'mlfusion_streams_open{{model="{m}"}}'] == 0
    assert before['mlfusion_serving{model="adder",uri="",version=""}'] == 1

    out = score(server.location, "adder", adder_batches(0, 3000, 1000))
    assert sum(len(a) for a in out) == 3000
    conn = Connection.of(server.location, None)
    negatives = pa.record_batch([pa.array([1.0, -1.0, 2.0, -2.0] * 25)], names=["a"])
    out = list(exchange(conn, "raiser", "double", None, "columns", [negatives], pa.float64(),
                        load={"on_error": "null"}))
    assert out[0].null_count == 50
    with pytest.raises(mlfusion.MlfusionError, match="worker process"):
        list(exchange(conn, "crasher", "double", None, "columns",
                      [pa.record_batch([pa.array([-9.0])], names=["a"])], pa.float64()))
    after = scrape(url)

    def moved(name: str) -> float:
        return after.get(name, 0) - before.get(name, 0)

    adder = '{model="adder"}'
    assert moved(f"mlfusion_rows_scored_total{adder}") == 3000
    assert moved(f"mlfusion_batches_scored_total{adder}") == 3
    assert moved(f"mlfusion_batch_rows_count{adder}") == 3
    assert moved(f"mlfusion_batch_rows_sum{adder}") == 3000
    assert moved(f"mlfusion_predict_seconds_count{adder}") == 3
    assert moved(f"mlfusion_batch_seconds_count{adder}") == 3
    assert after[f"mlfusion_batch_seconds_sum{adder}"] >= after[f"mlfusion_predict_seconds_sum{adder}"] > 0
    assert moved('mlfusion_streams_total{model="adder",code="Ok"}') == 1
    raiser = '{model="raiser"}'
    assert moved(f"mlfusion_rows_scored_total{raiser}") == 100
    assert moved(f"mlfusion_failed_rows_total{raiser}") == 50
    assert moved(f"mlfusion_failed_calls_total{raiser}") >= 50
    crasher = '{model="crasher"}'
    assert moved(f"mlfusion_worker_restarts_total{crasher}") == 1
    assert after[f"mlfusion_workers_alive{crasher}"] == 2
    assert sum(v for k, v in after.items()
               if k.startswith('mlfusion_streams_total{model="crasher"') and 'code="Ok"' not in k) == 1
    assert all(after[f'mlfusion_streams_open{{model="{m}"}}'] == 0 for m in ("adder", "raiser", "crasher"))
    # Anything but GET /metrics is refused.
    with pytest.raises(urllib.error.HTTPError, match="404"):
        urllib.request.urlopen(url.replace("/metrics", "/other"), timeout=10)
    with pytest.raises(urllib.error.HTTPError, match="405"):
        urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=10)


def test_hostile_metrics_clients_are_bounded_and_flight_goes_on(start_server):
    """Idle connections beyond --metrics-max-connections are closed, a garbage request and
    an oversized head are refused, and idle ones end at --metrics-timeout: then scraping
    works again. The Flight service scores throughout."""
    import socket

    server = start_server(f"--model=adder={MODELS / 'adder'}", "--workers", "1", "--metrics-addr",
                          "127.0.0.1:0", "--metrics-max-connections", "4", "--metrics-timeout", "1s")
    url = next(line.split(" at ")[1] for line in server.log.read_text().splitlines()
               if line.startswith("mlfusion: metrics at "))
    host, port = url.split("//")[1].split("/")[0].split(":")
    opened = time.monotonic()
    idle = [socket.create_connection((host, int(port))) for _ in range(8)]
    for s in idle:
        s.settimeout(5)
    # Connections past the fourth are closed at once, the first four at the timeout.
    for s in idle[4:]:
        assert s.recv(1) == b""
    assert time.monotonic() - opened < 0.9
    # Meanwhile the Flight service does not notice.
    out = score(server.location, "adder", adder_batches(0, 1000, 500))
    assert sum(len(a) for a in out) == 1000
    for s in idle[:4]:
        assert s.recv(1) == b""
    assert time.monotonic() - opened >= 0.9
    for s in idle:
        s.close()
    for request in (b"\x00\xffgarbage\r\n\r\n", b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n"):
        with socket.create_connection((host, int(port))) as s:
            s.settimeout(5)
            try:
                s.sendall(request)
                answer = s.recv(100)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200"), answer
    assert scrape(url)['mlfusion_workers_alive{model="adder"}'] == 1
