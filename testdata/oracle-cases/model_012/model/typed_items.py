"""A type-hinted model taking pydantic objects: list[Item]."""
import mlflow
import pydantic
from mlflow.models import set_model


class Item(pydantic.BaseModel):
    name: str
    qty: int


class TypedItems(mlflow.pyfunc.PythonModel):
    def predict(self, model_input: list[Item], params=None) -> list[str]:
        return [f"{item.qty} x {item.name}" for item in model_input]


set_model(TypedItems())
