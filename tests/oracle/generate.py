"""Records extra conformance cases from the real ``mlflow.pyfunc.spark_udf``.

Runs local PySpark (needs ``pyspark`` in the venv and Java; run with ``PYSPARK_PYTHON`` set
to the venv's python) over the shared conformance models and inputs, for output recipes and
input signatures the shared goldens do not cover, and writes compact cases into
``testdata/oracle-cases`` (read by ``tests/conformance.rs``):

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/python tests/oracle/generate.py \
        ../shared/conformance/cases testdata/oracle-cases [out|in|model ...]

Each case: ``case.json`` (``model_recipe``: base shared case, recipe kind, input signature;
``input``: the shared case whose input.parquet is scored; call, result_type, expect) and, for
successful calls, ``expected.parquet`` with the column ``prediction``.

``record_models`` saves real MLflow models instead (PythonModels from the code files in
``tests/oracle/models``, a scikit-learn pipeline), each case holding its own ``model/`` and
``input.parquet`` as the shared cases do, plus what the call binds: ``model_config``,
``params`` and, for numpy param values, ``param_types`` (the numpy type of each param).
"""
import datetime
import json
import os
import shutil
import sys
import tempfile

import mlflow.pyfunc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

SHARED, OUT = sys.argv[1], sys.argv[2]
BASE = "prim_06"  # a loader_module model: loads without mlflow, any recipe via config.json

spark = (SparkSession.builder.master("local[1]")
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.ui.enabled", "false")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")


def build_model(dest, kind, inputs):
    """The same construction as ``build_recipe_model`` in tests/conformance.rs."""
    shutil.copytree(os.path.join(SHARED, BASE, "model"), dest)
    with open(os.path.join(dest, "data", "recipe", "config.json"), "w") as f:
        json.dump({"kind": kind, "accepts_params": True}, f)
    if inputs is not None:
        with open(os.path.join(dest, "MLmodel"), "a") as f:
            sig = json.dumps(inputs).replace("'", "''")
            f.write("signature:\n  inputs: '%s'\n  outputs: null\n  params: null\n" % sig)


def run(case_id, kind, result_type, form, columns, input_case, inputs=None):
    case_dir = os.path.join(OUT, case_id)
    os.makedirs(case_dir)
    case = {"id": case_id, "model_recipe": {"base": BASE, "kind": kind, "inputs": inputs},
            "input": input_case, "call": {"form": form, "columns": columns},
            "result_type": result_type, "params": None}
    with tempfile.TemporaryDirectory() as tmp:
        model = os.path.join(tmp, "model")
        build_model(model, kind, inputs)
        df = spark.read.parquet(os.path.join(SHARED, input_case, "input.parquet")).coalesce(1)
        try:
            udf = mlflow.pyfunc.spark_udf(spark, model, result_type=result_type, env_manager="local")
            call = {"args": lambda: udf(*columns), "struct": lambda: udf(F.struct(*columns)),
                    "none": lambda: udf()}[form]()
            batches = df.select("idx", call.alias("prediction")).orderBy("idx")._collect_as_arrow()
            table = pa.Table.from_batches(batches).select(["prediction"])
            pq.write_table(table, os.path.join(case_dir, "expected.parquet"))
            case["expect"] = "ok"
        except Exception as e:  # noqa: BLE001 - any failure of spark_udf is the expected outcome
            lines = str(e).strip().splitlines()
            case["expect"] = "error"
            case["error_detail"] = lines[-1][:200] if lines else type(e).__name__
    with open(os.path.join(case_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    print(case_id, case["expect"], case.get("error_detail", ""), flush=True)


def record_outputs():
    """Output recipes the shared cases do not use, under many result types."""
    recipes = ["np_i32", "np_i16", "np_i8", "np_u32", "np_u64", "np_datetime", "list_f", "list_i",
               "list_b", "list_s", "list_f_none", "list_of_arrays", "series_f64", "series_i64",
               "series_bool", "series_str", "series_obj_mixed", "np2d_i32", "np3d_f64", "df_mixed_c",
               "df_mixed_d", "df_i64_only", "df_str_only", "df_obj_mixed", "dict_scalar", "scalar_f",
               "np_f32", "df_f_nan"]
    types = ["double", "float", "int", "long", "boolean", "string", "array<long>", "array<string>",
             "array<array<double>>"]
    n = 0
    for r in recipes:
        for t in types:
            n += 1
            run("out_%03d" % n, r, t, "args", ["x1", "x2"], "prim_01")
    extra = [
        ("df_struct_coerce", "num_str double, frac int, neg_frac int, big int, zero_one boolean, ints string, flt string"),
        ("df_struct_coerce", "num_str float, frac long, zero_one string, flt boolean"),
        ("df_struct_coerce", "num_str int"),
        ("df_map_col", "m map<string,double>, n long"),
        ("df_map_col", "map<string,double>"),
        ("df_mixed_d", "f32 string, i64 float, flag string"),
        ("df_arrays", "a array<int>, b array<double>"),
        ("df_arrays", "a array<string>, d array<double>"),
        ("np3d_f64", "array<array<float>>"),
        ("list_of_arrays", "array<array<double>>"),
        ("df_nested_struct", "inner struct<x:int,y:string>, k string"),
        ("df_obj_mixed", "o string, f double"),
        ("dict_np", "a string, b string, c double"),
        ("series_obj_mixed", "array<string>"),
        ("df_struct_nulls", "allnone long, fl long"),
        ("df_struct_nulls", "s double"),
    ]
    for r, t in extra:
        n += 1
        run("out_%03d" % n, r, t, "args", ["x1", "x2"], "prim_01")


def record_inputs():
    """Input enforcement: each signature type against each column type; struct forms;
    absent optional inputs; no signature; tensor specs."""
    cols = ["x", "y", "z", "xi", "xf", "ynull", "zi", "t", "dd", "flag", "extra", "bin01"]
    types = ["double", "float", "long", "integer", "boolean", "string", "datetime", "binary"]
    n = 0
    for t in types:
        for c in cols:
            n += 1
            sig = [{"type": t, "name": "a", "required": True}]
            run("in_%03d" % n, "echo", "string", "args", [c], "sig_01", sig)
    # struct form with a complex field -> nullable ints, then enforced
    for t in ["long", "integer", "double", "float"]:
        for c in ["ynull", "zi", "xi"]:
            n += 1
            sig = [{"type": t, "name": c, "required": True}, {"type": "string", "name": "z", "required": True}]
            run("in_%03d" % n, "echo", "string", "struct", [c, "z"], "sig_01", sig)
    # optional inputs omitted positionally
    for t in ["double", "long", "boolean", "datetime"]:
        n += 1
        sig = [{"type": "double", "name": "x", "required": True}, {"type": t, "name": "o", "required": False}]
        run("in_%03d" % n, "echo", "string", "args", ["x"], "sig_01", sig)
    # no signature, every column positionally and as struct
    for c in cols:
        n += 1
        run("in_%03d" % n, "echo", "string", "args", [c, "x"], "sig_01")
        n += 1
        run("in_%03d" % n, "echo", "string", "struct", [c, "z"], "sig_01")
    # tensor specs
    tensor_sigs = [
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 6]}, "name": "t"}], ["t"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 3, 2]}, "name": "t"}], ["t"], "struct"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "int32", "shape": [-1, 6]}}], ["tint"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}], ["sc"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 1]}}], ["sc"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 6]}, "name": "tnull"}], ["tnull"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}, "name": "a2"},
          {"type": "tensor", "tensor-spec": {"dtype": "int32", "shape": [-1]}, "name": "bi"}], ["a2", "bi"], "args"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2]}}], ["c1", "c2"], "struct"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}], ["c1", "c2"], "struct"),
        ([{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1, 2, -1]}, "name": "t"}], ["t"], "args"),
    ]
    for sig, cols_, form in tensor_sigs:
        n += 1
        run("in_%03d" % n, "echo", "string", form, cols_, "tensor_02", sig)


MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def numpy_params(params, param_types):
    """``params`` with each value named in ``param_types`` as that numpy type."""
    if not param_types:
        return params
    out = dict(params)
    for name, kind in param_types.items():
        if kind == "ndarray":
            out[name] = np.array(params[name])
        elif kind == "datetime64":
            out[name] = np.datetime64(params[name])
        else:
            out[name] = getattr(np, kind)(params[name])
    return out


def run_model(case_id, save, table, form, columns, result_type, params=None, param_types=None,
              model_config=None):
    """One case on a real saved model: ``save(path)`` writes it into the case."""
    case_dir = os.path.join(OUT, case_id)
    os.makedirs(case_dir)
    save(os.path.join(case_dir, "model"))
    pq.write_table(table, os.path.join(case_dir, "input.parquet"))
    case = {"id": case_id, "call": {"form": form, "columns": columns}, "result_type": result_type,
            "params": params, "param_types": param_types, "model_config": model_config}
    df = spark.read.parquet(os.path.join(case_dir, "input.parquet")).coalesce(1)
    try:
        udf = mlflow.pyfunc.spark_udf(spark, os.path.join(case_dir, "model"), result_type=result_type,
                                      env_manager="local", params=numpy_params(params, param_types),
                                      model_config=model_config)
        call = udf(F.struct(*columns)) if form == "struct" else udf(*columns)
        batches = df.select("idx", call.alias("prediction")).orderBy("idx")._collect_as_arrow()
        pq.write_table(pa.Table.from_batches(batches).select(["prediction"]),
                       os.path.join(case_dir, "expected.parquet"))
        case["expect"] = "ok"
    except Exception as e:  # noqa: BLE001 - any failure of spark_udf is the expected outcome
        lines = str(e).strip().splitlines()
        case["expect"] = "error"
        case["error_detail"] = lines[-1][:200] if lines else type(e).__name__
    with open(os.path.join(case_dir, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    print(case_id, case["expect"], case.get("error_detail", ""), flush=True)


def from_code(name, **kwargs):
    """Saves the PythonModel of ``tests/oracle/models/<name>.py`` (models from code)."""
    def save(path):
        mlflow.pyfunc.save_model(path, python_model=os.path.join(MODELS, name + ".py"), **kwargs)
    return save


def record_models():
    """What ``mlflow.pyfunc.load_model``'s ``PyFuncModel`` does beyond ``_load_pyfunc``:
    per-value enforcement of nested inputs, numpy params, ``model_config`` (saved and
    overridden), type-hinted models, and the params check of ``pyfunc_predict_fn``."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import Array, ColSpec, DataType, Map, Object, Property, Schema

    idx = pa.array([0, 1, 2], pa.int64())
    nested = pa.table({
        "idx": idx,
        "s": pa.array([{"flag": True, "x": 0.1, "name": "a"}, {"flag": False, "x": 2.5, "name": "b"},
                       {"flag": True, "x": -1.0, "name": "c"}],
                      pa.struct([("flag", pa.bool_()), ("x", pa.float64()), ("name", pa.string())])),
        "arr": pa.array([[{"a": 1, "b": 0.5}], [{"a": 2, "b": 1.5}, {"a": 3, "b": 2.0}], []],
                        pa.list_(pa.struct([("a", pa.int64()), ("b", pa.float64())]))),
        "m": pa.array([[("k", 1.0)], [("k", 2.0), ("l", 3.0)], []], pa.map_(pa.string(), pa.float64())),
        "ad": pa.array([[1.0, 2.0], [], [3.5]], pa.list_(pa.float64())),
        "al": pa.array([[1, 2], [3], [4, 5, 6]], pa.list_(pa.int32())),
    })
    nested_sig = ModelSignature(inputs=Schema([
        ColSpec(Object([Property("flag", DataType.boolean), Property("x", DataType.double),
                        Property("name", DataType.string)]), "s"),
        ColSpec(Array(Object([Property("a", DataType.long), Property("b", DataType.double)])), "arr"),
        ColSpec(Map(DataType.double), "m"),
        ColSpec(Array(DataType.double), "ad"),
        ColSpec(Array(DataType.long), "al"),
    ]))
    run_model("model_001", from_code("nested_echo", signature=nested_sig), nested, "args",
              ["s", "arr", "m", "ad", "al"], "string")
    run_model("model_002", from_code("nested_echo", signature=nested_sig), nested, "struct",
              ["s", "arr", "m", "ad", "al"], "string")

    one = pa.table({"idx": idx, "x": pa.array([1.0, 2.0, 3.0])})
    example = {"k": 3, "f": 0.5, "arr": [1, 2], "dt": datetime.datetime(2024, 1, 1)}
    params_sig = infer_signature(one.to_pandas()[["x"]], ["s"], params=example)
    for n, (params, types) in enumerate([
        ({"k": 5, "f": 0.25, "arr": [4, 5, 6], "dt": "2025-06-01T12:30:00"},
         {"k": "int32", "f": "float32", "arr": "ndarray", "dt": "datetime64"}),
        ({"k": 7}, {"k": "int64"}),
        ({"f": 1.5, "arr": [7]}, {"f": "float64", "arr": "ndarray"}),
    ]):
        run_model("model_%03d" % (3 + n), from_code("params_echo", signature=params_sig), one, "args",
                  ["x"], "string", params=params, param_types=types)

    words = pa.table({"idx": idx, "text": pa.array(["apple", "pear", "fig"])})
    suffix = from_code("config_suffix", model_config={"suffix": "!", "times": 1},
                       signature=infer_signature(words.to_pandas()[["text"]], ["s"]))
    run_model("model_006", suffix, words, "args", ["text"], "string")
    run_model("model_007", suffix, words, "args", ["text"], "string",
              model_config={"suffix": "?", "times": 2})
    run_model("model_008", suffix, words, "args", ["text"], "string", model_config={"unknown": 1})
    no_config = from_code("config_suffix", signature=infer_signature(words.to_pandas()[["text"]], ["s"]))
    run_model("model_009", no_config, words, "args", ["text"], "string", model_config={"suffix": "?"})

    run_model("model_010", from_code("typed_strings"), words, "args", ["text"], "string")
    run_model("model_011", from_code("typed_strings"), words, "struct", ["text"], "string")
    items = pa.table({"idx": idx, "name": pa.array(["apple", "pear", "fig"]),
                      "qty": pa.array([2, 5, 1], pa.int64())})
    run_model("model_012", from_code("typed_items"), items, "struct", ["name", "qty"], "string")
    run_model("model_013", from_code("typed_items"), items, "args", ["name", "qty"], "string")

    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features = pa.table({"idx": idx, "f0": pa.array([0.0, 1.5, 3.0]), "f1": pa.array([1.0, -1.0, 0.5])})
    X = features.to_pandas()[["f0", "f1"]]
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, [0, 1, 1])

    def sklearn_proba(path):
        mlflow.sklearn.save_model(pipeline, path, pyfunc_predict_fn="predict_proba",
                                  signature=infer_signature(X, pipeline.predict_proba(X)))
    run_model("model_014", sklearn_proba, features, "args", ["f0", "f1"], "array<double>")


def record_indexed():
    """Answers whose pandas index is not 0..n-1: taken by position, under each result kind."""
    idx = pa.array([0, 1, 2, 3], pa.int64())
    table = pa.table({"idx": idx, "x": pa.array([1.0, 2.0, 3.0, 4.5]), "y": pa.array([1, 2, 3, 4])})
    model = from_code("indexed_frame")
    for n, (form, result_type) in enumerate([
        ("args", "score double, label string, parts array<double>"),
        ("struct", "score double, label string, parts array<double>"),
        ("args", "double"),
        ("args", "string"),
        ("args", "array<double>"),
        ("args", "score double, label string"),
        ("struct", "label string, score float"),
    ]):
        run_model("index_%03d" % (n + 1), model, table, form, ["x", "y"], result_type)


SECTIONS = {"out": record_outputs, "in": record_inputs, "model": record_models, "index": record_indexed}

if __name__ == "__main__":
    # Optional further arguments re-record only those sections (out, in, model, index).
    os.makedirs(OUT, exist_ok=True)
    for section in sys.argv[3:] or SECTIONS:
        for old in os.listdir(OUT):
            if old.startswith(section + "_"):
                shutil.rmtree(os.path.join(OUT, old))
        SECTIONS[section]()
