"""Echoes the params predict receives, with their types."""
import mlflow
from mlflow.models import set_model


class ParamsEcho(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        text = ", ".join(f"{k}={v!r}:{type(v).__name__}" for k, v in sorted(params.items()))
        return [text] * len(model_input)


set_model(ParamsEcho())
