"""Example pyfunc model (loader_module form): logistic churn probability.

predict returns P(churn) per row; with params {"threshold": t} > 0 it returns 1.0/0.0
decisions instead.
"""
import json
import os

import numpy as np

FEATURES = ["tenure_months", "monthly_charges", "support_calls"]


class ChurnModel:
    def __init__(self, weights, bias):
        self.weights = np.asarray(weights, dtype=np.float64)
        self.bias = float(bias)

    def predict(self, model_input, params=None):
        x = model_input[FEATURES].to_numpy(dtype=np.float64)
        p = 1.0 / (1.0 + np.exp(-(x @ self.weights + self.bias)))
        threshold = (params or {}).get("threshold") or 0.0
        if threshold > 0.0:
            return (p >= threshold).astype(np.float64)
        return p


def _load_pyfunc(data_path):
    with open(os.path.join(data_path, "weights.json")) as f:
        cfg = json.load(f)
    return ChurnModel(cfg["weights"], cfg["bias"])
