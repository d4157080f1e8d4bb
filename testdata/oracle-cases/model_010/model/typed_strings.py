"""A type-hinted model (MLflow 3's recommended form): the input arrives as list[str]."""
import mlflow
from mlflow.models import set_model


class TypedStrings(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: list[str], params=None) -> list[str]:
        assert isinstance(model_input, list), type(model_input)
        return [f"{type(v).__name__}:{v.upper()}" for v in model_input]


set_model(TypedStrings())
