"""The three benchmark models, trained on the first 200,000 rows and saved with MLflow:

- `linear`: scikit-learn LinearRegression on f0..f15 (cheap, numpy releases the GIL);
- `gbdt`: HistGradientBoostingClassifier, 100 iterations, on f0..f15 (compute bound);
- `pandas`: a custom `PythonModel` doing pandas work (arithmetic, string building) on
  f0..f3, n0 and segment and returning a two-column DataFrame (holds the GIL).

    python benches/train.py DATA.parquet MODELS_DIR
"""
import argparse
import os
import shutil
import sys
import warnings

import cloudpickle

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from mlflow.models import infer_signature
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LinearRegression

warnings.filterwarnings("ignore")
FEATURES = [f"f{i}" for i in range(16)]
PANDAS_INPUTS = ["f0", "f1", "f2", "f3", "n0", "segment"]


class SegmentScore(mlflow.pyfunc.PythonModel):
    """Pandas work per batch: a score from four features and a count, and a label built
    from strings (`segment` upper-cased, a tier from the score)."""

    def predict(self, context, model_input, params=None):
        df = model_input
        score = (2.0 * df["f0"] - df["f1"] + df["f2"] / (1.0 + df["f3"].abs())) + (df["n0"] % 7) * 0.1
        tier = np.where(score > 1.0, "high", np.where(score > -1.0, "mid", "low"))
        label = df["segment"].str.upper() + "-" + tier
        return pd.DataFrame({"score": score, "label": label})


def train(data, out):
    sample = pq.ParquetFile(data).read_row_groups([0, 1]).slice(0, 200_000).to_pandas()
    if os.path.exists(out):
        shutil.rmtree(out)
    x = sample[FEATURES]
    linear = LinearRegression().fit(x, sample["y"])
    mlflow.sklearn.save_model(linear, os.path.join(out, "linear"),
                              signature=infer_signature(x, linear.predict(x)))
    gbdt = HistGradientBoostingClassifier(max_iter=100, early_stopping=False,
                                          random_state=0).fit(x, sample["label"])
    # skops (MLflow's default format) refuses to load the tree predictor it just saved.
    mlflow.sklearn.save_model(gbdt, os.path.join(out, "gbdt"),
                              signature=infer_signature(x, gbdt.predict(x)),
                              serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_CLOUDPICKLE)
    inputs = sample[PANDAS_INPUTS]
    # The class travels inside the model (by value), not as a reference to this script.
    cloudpickle.register_pickle_by_value(sys.modules[SegmentScore.__module__])
    model = SegmentScore()
    mlflow.pyfunc.save_model(os.path.join(out, "pandas"), python_model=model,
                             signature=infer_signature(inputs, model.predict(None, inputs)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("out")
    args = parser.parse_args()
    train(args.data, args.out)
