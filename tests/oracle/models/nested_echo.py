"""Echoes each row's values with their Python types: what MLflow's schema enforcement
hands the model for nested (array, object, map, any) inputs."""
import mlflow
from mlflow.models import set_model


class NestedEcho(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [
            "; ".join(f"{c}={model_input[c].iloc[i]!r}" for c in model_input.columns)
            for i in range(len(model_input))
        ]


set_model(NestedEcho())
