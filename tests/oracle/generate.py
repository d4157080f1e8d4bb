"""Records extra conformance cases from the real ``mlflow.pyfunc.spark_udf``.

Runs local PySpark (needs ``pyspark`` in the venv and Java; run with ``PYSPARK_PYTHON`` set
to the venv's python) over the shared conformance models and inputs, for output recipes and
input signatures the shared goldens do not cover, and writes compact cases into
``testdata/oracle-cases`` (read by ``tests/conformance.rs``):

    PYSPARK_PYTHON=.venv/bin/python .venv/bin/python tests/oracle/generate.py \
        ../shared/conformance/cases testdata/oracle-cases

Each case: ``case.json`` (``model_recipe``: base shared case, recipe kind, input signature;
``input``: the shared case whose input.parquet is scored; call, result_type, expect) and, for
successful calls, ``expected.parquet`` with the column ``prediction``.
"""
import json
import os
import shutil
import sys
import tempfile

import mlflow.pyfunc
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


if __name__ == "__main__":
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    record_outputs()
    record_inputs()
