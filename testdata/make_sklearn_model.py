"""Saves a scikit-learn LinearRegression with MLflow (real sklearn flavor, pickled model).

Usage: python make_sklearn_model.py OUT_DIR
The model computes y = 2*f0 - 3*f1 + 0.5*f2 + 1 (fitted exactly on noise-free data).
"""
import sys

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

out = sys.argv[1]
rng = np.random.default_rng(0)
X = pd.DataFrame(rng.normal(size=(200, 3)), columns=["f0", "f1", "f2"])
y = 2 * X.f0 - 3 * X.f1 + 0.5 * X.f2 + 1
model = LinearRegression().fit(X, y)
mlflow.sklearn.save_model(model, out, signature=infer_signature(X, model.predict(X)))
