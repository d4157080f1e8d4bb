"""Appends the suffix of its model_config (read in load_context) to each input string."""
import mlflow
from mlflow.models import set_model


class ConfigSuffix(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        config = context.model_config or {}
        self.suffix = config.get("suffix", "<absent>")
        self.times = config.get("times", 1)

    def predict(self, context, model_input, params=None):
        column = model_input[model_input.columns[0]]
        return [f"{v}{self.suffix * self.times}" for v in column]


set_model(ConfigSuffix())
