"""Test model: row sum of every input column, as float64 (missing values stay NaN)."""
import numpy as np


class Adder:
    def predict(self, model_input):
        return model_input.astype(np.float64).sum(axis=1, skipna=False).to_numpy()


def _load_pyfunc(data_path):
    return Adder()
