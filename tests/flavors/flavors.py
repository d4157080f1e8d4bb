"""Saves tiny models of one flavor and records what ``mlflow.pyfunc.spark_udf`` answers.

    python tests/flavors/flavors.py FLAVOR DIR

Each model is saved with its flavor's own ``mlflow.<flavor>.save_model`` (with a signature and
an input example where the flavor takes them, and the predict-method variants MLflow offers)
into ``DIR/<case>``, scored by ``spark_udf`` (``env_manager="local"``, ``local[1]``) over
``DIR/input.parquet``, and its answer written to ``DIR/<case>.parquet`` (column
``prediction``, in row order). ``DIR/cases.json`` lists the cases: name, result type and the
SQL call that scores the same columns. One flavor per process: TensorFlow and PyTorch abort
a process that loads both (their bundled LLVMs register the same options).
"""

import json
import os
import sys
import warnings

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.models import infer_signature

ROWS = 300
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(ROWS, 3), columns=["f0", "f1", "f2"])
Y_CLASS = (X.f0 + X.f1 > 1).astype(int)
Y_REG = X.f0 * 2 - X.f1 + 0.1 * X.f2
X32 = X.astype("float32")

# How a model is called, in SQL and in PySpark: on the three double columns, on one struct of
# them (a model without a signature, given a DataFrame), or on one float array of their float32
# copies h0..h2 (a model whose signature is a float32 tensor of shape (-1, 3)).
COLUMNS = ("m(f0, f1, f2)", lambda F: (F.col("f0"), F.col("f1"), F.col("f2")))
STRUCT = ("m(struct(f0, f1, f2))", lambda F: (F.struct("f0", "f1", "f2"),))
TENSOR = ("m(make_array(h0, h1, h2))", lambda F: (F.array("h0", "h1", "h2"),))


# The models are scored in this venv; inferring their requirements would load each one in a
# subprocess (~10 s a model).
PIP = [f"mlflow=={mlflow.__version__}"]


def with_signature(save, model, out, **kwargs):
    """A saver of ``model`` with the signature of ``X`` to ``out`` and two rows as example."""
    return lambda path: save(
        model,
        path,
        signature=infer_signature(X, out),
        input_example=X.head(2),
        pip_requirements=PIP,
        **kwargs,
    )


def sklearn():
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    logreg = LogisticRegression().fit(X, Y_CLASS)
    pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, Y_CLASS)
    linreg = LinearRegression().fit(X, Y_REG)

    def save(model, fn):
        return with_signature(mlflow.sklearn.save_model, model, getattr(model, fn)(X), pyfunc_predict_fn=fn)

    return {
        "sklearn-predict": (save(logreg, "predict"), "long", COLUMNS),
        "sklearn-regressor": (save(linreg, "predict"), "double", COLUMNS),
        "sklearn-pipeline-predict_proba": (save(pipe, "predict_proba"), "array<double>", COLUMNS),
        "sklearn-predict_log_proba": (save(logreg, "predict_log_proba"), "array<double>", COLUMNS),
    }


def xgboost():
    import xgboost as xgb

    clf = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, Y_CLASS)
    reg = xgb.XGBRegressor(n_estimators=5, max_depth=2).fit(X, Y_REG)
    booster = xgb.train({"max_depth": 2}, xgb.DMatrix(X, label=Y_REG), num_boost_round=5)
    save = mlflow.xgboost.save_model
    return {
        "xgboost-classifier": (with_signature(save, clf, clf.predict(X)), "long", COLUMNS),
        "xgboost-regressor": (with_signature(save, reg, reg.predict(X)), "float", COLUMNS),
        "xgboost-booster": (with_signature(save, booster, booster.predict(xgb.DMatrix(X))), "float", COLUMNS),
    }


def lightgbm():
    import lightgbm as lgb

    clf = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, Y_CLASS)
    booster = lgb.train({"verbose": -1}, lgb.Dataset(X, label=Y_REG), num_boost_round=5)
    save = mlflow.lightgbm.save_model
    return {
        "lightgbm-classifier": (with_signature(save, clf, clf.predict(X)), "long", COLUMNS),
        "lightgbm-booster": (with_signature(save, booster, booster.predict(X)), "double", COLUMNS),
    }


def catboost():
    import catboost as cb

    clf = cb.CatBoostClassifier(iterations=5, verbose=False, thread_count=1, allow_writing_files=False).fit(
        X, Y_CLASS
    )
    reg = cb.CatBoostRegressor(iterations=5, verbose=False, thread_count=1, allow_writing_files=False).fit(
        X, Y_REG
    )
    save = mlflow.catboost.save_model
    return {
        "catboost-classifier": (with_signature(save, clf, clf.predict(X)), "long", COLUMNS),
        "catboost-regressor": (with_signature(save, reg, reg.predict(X)), "double", COLUMNS),
    }


def statsmodels():
    import statsmodels.formula.api as smf

    data = X.assign(y=Y_REG, label=Y_CLASS)
    ols = smf.ols("y ~ f0 + f1 + f2", data=data).fit()
    logit = smf.logit("label ~ f0 + f2", data=data).fit(disp=0)
    save = mlflow.statsmodels.save_model
    return {
        "statsmodels-ols": (with_signature(save, ols, ols.predict(X)), "double", COLUMNS),
        "statsmodels-logit": (with_signature(save, logit, logit.predict(X)), "double", COLUMNS),
    }


def onnx():
    from skl2onnx import to_onnx
    from sklearn.linear_model import LinearRegression

    linear = to_onnx(LinearRegression().fit(X32, Y_REG), X32.values[:1])
    return {
        "onnx-linear": (
            lambda path: mlflow.onnx.save_model(linear, path, pip_requirements=PIP),
            "array<float>",
            STRUCT,
        )
    }


def keras():
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)]
    )
    signature = infer_signature(X32.values, model.predict(X32.values, verbose=0))
    return {
        "keras": (
            lambda path: mlflow.keras.save_model(model, path, signature=signature, pip_requirements=PIP),
            "float",
            TENSOR,
        ),
        "keras-exported": (
            lambda path: mlflow.keras.save_model(
                model, path, signature=signature, save_exported_model=True, pip_requirements=PIP
            ),
            "float",
            TENSOR,
        ),
        "tensorflow-keras": (
            lambda path: mlflow.tensorflow.save_model(model, path, signature=signature, pip_requirements=PIP),
            "float",
            TENSOR,
        ),
    }


def pytorch():
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1)).eval()
    with torch.no_grad():
        out = model(torch.from_numpy(X32.values)).numpy()
    save = mlflow.pytorch.save_model
    return {
        "pytorch-pt2": (
            lambda path: save(model, path, input_example=X32.values[:2], pip_requirements=PIP),
            "float",
            TENSOR,
        ),
        "pytorch-pickle": (
            lambda path: save(
                model,
                path,
                serialization_format="pickle",
                signature=infer_signature(X32.values, out),
                pip_requirements=PIP,
            ),
            "float",
            TENSOR,
        ),
    }


FLAVORS = {f.__name__: f for f in (sklearn, xgboost, lightgbm, catboost, statsmodels, onnx, keras, pytorch)}


def main(flavor, out):
    warnings.filterwarnings("ignore")
    os.makedirs(out, exist_ok=True)
    floats = X32.rename(columns=lambda c: "h" + c[1:])
    table = pa.Table.from_pandas(
        pd.concat([X, floats], axis=1).assign(idx=np.arange(ROWS)), preserve_index=False
    )
    pq.write_table(table, os.path.join(out, "input.parquet"))
    cases = FLAVORS[flavor]()

    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    frame = spark.read.parquet(os.path.join(out, "input.parquet")).coalesce(1)
    listed, columns = [], [F.col("idx")]
    for name, (save, result_type, (call, args)) in cases.items():
        path = os.path.join(out, name)
        save(path)
        udf = mlflow.pyfunc.spark_udf(spark, path, result_type=result_type, env_manager="local")
        columns.append(udf(*args(F)).alias(name))
        listed.append({"name": name, "result_type": result_type, "call": call})
    # One job for all the models: one Python worker loads them once.
    answers = pa.Table.from_batches(frame.select(*columns).orderBy("idx")._collect_as_arrow())
    for case in listed:
        pq.write_table(
            answers.select([case["name"]]).rename_columns(["prediction"]),
            os.path.join(out, case["name"]) + ".parquet",
        )
    spark.stop()
    with open(os.path.join(out, "cases.json"), "w") as f:
        json.dump(listed, f, indent=1)


if __name__ == "__main__":
    main(*sys.argv[1:])
