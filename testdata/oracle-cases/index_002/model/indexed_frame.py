"""A model answering with pandas objects whose index is not 0..n-1 (reversed labels, as
after a sort or a filter): results are taken by position, not by label."""
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import set_model


class IndexedFrame(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        n = len(model_input)
        x = model_input.iloc[:, 0].to_numpy()
        index = np.arange(n)[::-1] * 10 + 7
        return pd.DataFrame({
            "score": np.where(x > 2.5, np.nan, x * 2.0),
            "label": [None if v == 2.0 else f"v{v:g}" for v in x],
            "parts": [[v, -v] for v in x],
        }, index=index)


set_model(IndexedFrame())
