"""Tiny models of each flavor, scored by ``mlflow.pyfunc.spark_udf`` and by ``mlfusion query``
(``--workers 0`` and ``1``) on the same Parquet file; prints one line per comparison.

Run it with a venv holding the flavors' packages (scikit-learn, xgboost, lightgbm, catboost,
statsmodels, onnx, onnxruntime, skl2onnx, pyspark) besides mlfusion's own stack::

    PYSPARK_PYTHON=$VENV/bin/python $VENV/bin/python tests/oracle/flavors.py $VENV WORKDIR

Not part of the test command yet (the packages are heavy for CI).
"""
import json, os, shutil, subprocess, sys, warnings
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.parquet as pq
import mlflow
from mlflow.models import infer_signature
warnings.filterwarnings("ignore")
VENV, OUT = sys.argv[1], sys.argv[2]
shutil.rmtree(OUT, ignore_errors=True); os.makedirs(OUT)
BIN = os.environ.get("MLFUSION_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/mlfusion"))
rng = np.random.RandomState(0)
X = pd.DataFrame(rng.rand(300, 3), columns=["f0", "f1", "f2"])
y = (X.f0 + X.f1 > 1).astype(int)
yr = X.f0 * 2 - X.f1 + 0.1 * X.f2
pq.write_table(pa.Table.from_pandas(X.assign(idx=np.arange(len(X))), preserve_index=False), f"{OUT}/input.parquet")
models = []

def add(name, save, rt):
    path = f"{OUT}/{name}"
    try:
        save(path)
        models.append((name, path, rt))
    except Exception as e:
        print(f"{name}\tSAVE FAILED\t{type(e).__name__}: {str(e)[:150]}", flush=True)

from sklearn.linear_model import LogisticRegression, LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
lr = LogisticRegression().fit(X, y)
pipe = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
add("sklearn_predict", lambda p: mlflow.sklearn.save_model(lr, p, signature=infer_signature(X, lr.predict(X)), input_example=X.head(2)), "long")
add("sklearn_proba", lambda p: mlflow.sklearn.save_model(pipe, p, pyfunc_predict_fn="predict_proba", signature=infer_signature(X, pipe.predict_proba(X)), input_example=X.head(2)), "array<double>")
import xgboost as xgb
xc = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
add("xgboost_predict", lambda p: mlflow.xgboost.save_model(xc, p, signature=infer_signature(X, xc.predict(X)), input_example=X.head(2)), "long")
add("xgboost_proba", lambda p: mlflow.xgboost.save_model(xc, p, signature=infer_signature(X, xc.predict_proba(X)), input_example=X.head(2), **({"pyfunc_predict_fn": "predict_proba"} if "pyfunc_predict_fn" in mlflow.xgboost.save_model.__code__.co_varnames else {})), "array<double>")
import lightgbm as lgb
lc = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
add("lightgbm_predict", lambda p: mlflow.lightgbm.save_model(lc, p, signature=infer_signature(X, lc.predict(X)), input_example=X.head(2)), "long")
import catboost as cb
cc = cb.CatBoostClassifier(iterations=5, verbose=False).fit(X, y)
add("catboost_predict", lambda p: mlflow.catboost.save_model(cc, p, signature=infer_signature(X, cc.predict(X)), input_example=X.head(2)), "long")
add("catboost_proba", lambda p: mlflow.catboost.save_model(cc, p, signature=infer_signature(X, cc.predict_proba(X)), input_example=X.head(2), **({"pyfunc_predict_fn": "predict_proba"} if "pyfunc_predict_fn" in mlflow.catboost.save_model.__code__.co_varnames else {})), "array<double>")
import statsmodels.api as sm
ols = sm.OLS(yr, sm.add_constant(X, has_constant="add")).fit()
add("statsmodels_ols", lambda p: mlflow.statsmodels.save_model(ols, p), "double")
from skl2onnx import to_onnx
onx = to_onnx(LinearRegression().fit(X.astype("float32"), yr), X.astype("float32").values[:1])
add("onnx_linear", lambda p: mlflow.onnx.save_model(onx, p), "array<float>")

from pyspark.sql import SparkSession
spark = (SparkSession.builder.master("local[1]").config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(f"{OUT}/input.parquet").coalesce(1)
for name, path, rt in models:
    cols = ["f0", "f1", "f2"]
    if name.startswith("onnx"):
        call, sql = None, "SELECT m(struct(f0, f1, f2)) AS prediction FROM t ORDER BY idx"
    else:
        sql = "SELECT m(f0, f1, f2) AS prediction FROM t ORDER BY idx"
    try:
        udf = mlflow.pyfunc.spark_udf(spark, path, result_type=rt, env_manager="local")
        from pyspark.sql import functions as F
        c = udf(F.struct(*cols)) if name.startswith("onnx") else udf(*cols)
        theirs = pa.Table.from_batches(df.select("idx", c.alias("prediction")).orderBy("idx")._collect_as_arrow()).column("prediction").to_pylist()
    except Exception as e:
        theirs = "error: " + str(e).strip().splitlines()[-1][:150]
    for w in ("0", "1"):
        out = f"{OUT}/{name}-{w}.parquet"
        r = subprocess.run([BIN, "--venv", VENV, "query", "--workers", w, "--model", f"m={path}",
                            "--result-type", f"m={rt}", "--table", f"t={OUT}/input.parquet", "--output", out, sql],
                           capture_output=True, text=True)
        if r.returncode:
            ours = "error: " + [l for l in r.stderr.splitlines() if l.startswith("error")][:1].__str__()[:200]
        else:
            ours = pq.read_table(out).column("prediction").to_pylist()
        same = ours == theirs
        print(f"{name}\t--workers {w}\t{'SAME' if same else 'DIFFERENT'}\t" + ("" if same else f"theirs={str(theirs)[:120]} ours={str(ours)[:120]}"), flush=True)
