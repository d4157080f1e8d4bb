"""A Flight client of `mlfusion serve --refresh-interval` while the registry alias it
follows moves (used by engine/tests/integration/registry.rs).

Usage: python refresh_client.py FLIGHT_LOCATION TRACKING_URI NAME
1. opens stream A on model ``champ`` and scores a batch;
2. moves the alias ``champion`` to version 2 and waits until the server's ``models``
   action shows version 2 served;
3. scores a second batch on stream A, then finishes it;
4. scores a batch on a new stream B;
5. moves the alias to version 3 (which fails to load), waits for the server to report
   it, and scores a batch on a new stream C.
Prints JSON: the predictions of each batch and what the ``models`` action showed.
"""
import json
import sys
import time

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

location, tracking, name = sys.argv[1:4]
client = flight.FlightClient(location)
registry = mlflow.MlflowClient(tracking_uri=tracking)
features = pa.record_batch(
    [pa.array(np.arange(100, dtype=np.float64) / 10 + k) for k in range(3)],
    names=["f0", "f1", "f2"],
)
descriptor = flight.FlightDescriptor.for_command(json.dumps({"model": "champ", "result_type": "double"}))


def served():
    body = list(client.do_action(flight.Action("models", b"")))[0].body.to_pybytes()
    return next(m for m in json.loads(body) if m["model"] == "champ")


def wait_for(check, what):
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        model = served()
        if check(model):
            return model
        time.sleep(0.2)
    sys.exit(f"the server did not {what}: {served()}")


def open_stream():
    writer, reader = client.do_exchange(descriptor)
    writer.begin(features.schema)
    return writer, reader


def score(writer, reader):
    writer.write_batch(features)
    return reader.read_chunk().data.column(0).to_pylist()


def finish(writer, reader):
    writer.done_writing()
    rest = list(reader)
    writer.close()
    assert not rest, rest


out = {"before": served()}
a = open_stream()
out["a1"] = score(*a)
registry.set_registered_model_alias(name, "champion", "2")
out["switched"] = wait_for(lambda m: m["version"] == f"models:/{name}/2", "switch to version 2")
out["a2"] = score(*a)
finish(*a)
b = open_stream()
out["b"] = score(*b)
finish(*b)
registry.set_registered_model_alias(name, "champion", "3")
out["failed"] = wait_for(lambda m: m["refresh_error"], "report version 3")
c = open_stream()
out["c"] = score(*c)
finish(*c)
out["features"] = [features.column(i).to_pylist() for i in range(3)]
print(json.dumps(out))
