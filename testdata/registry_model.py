"""Logs a scikit-learn LinearRegression to a running MLflow tracking server, registers it
and points the alias ``champion`` at version 1.

Usage: python registry_model.py TRACKING_URI NAME [--more-versions]
Prints JSON: {"run_id", "artifact_location", "version"}. The model computes
y = 2*f0 - 3*f1 + 0.5*f2 + 1, like make_sklearn_model.py. With ``--more-versions``,
version 2 computes twice that, and version 3 is a pyfunc model that fails to load.
"""
import json
import sys
import time
import urllib.request

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

uri, name = sys.argv[1], sys.argv[2]
more_versions = "--more-versions" in sys.argv[3:]
deadline = time.monotonic() + 120
while True:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"the tracking server at {uri} did not become healthy")
    time.sleep(0.5)

mlflow.set_tracking_uri(uri)
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["f0", "f1", "f2"])
y = 2 * X.f0 - 3 * X.f1 + 0.5 * X.f2 + 1
model = LinearRegression().fit(X, y)
with mlflow.start_run() as run:
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=infer_signature(X, model.predict(X)),
        registered_model_name=name,
    )
if more_versions:
    doubled = LinearRegression().fit(X, 2 * y)
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            doubled,
            name="model",
            signature=infer_signature(X, doubled.predict(X)),
            registered_model_name=name,
        )

    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            raise RuntimeError("this version is broken on purpose")

        def predict(self, context, model_input):
            return model_input

    with mlflow.start_run():
        mlflow.pyfunc.log_model(
            name="model",
            python_model=Broken(),
            signature=infer_signature(X, y),
            registered_model_name=name,
        )
client = mlflow.MlflowClient()
client.set_registered_model_alias(name, "champion", info.registered_model_version)
print(json.dumps({
    "run_id": run.info.run_id,
    "artifact_location": mlflow.get_logged_model(info.model_id).artifact_location,
    "version": str(info.registered_model_version),
}))
