"""Test model: for each row, ``<greeting>*<times>|<MLFUSION_TEST_EXTRA>`` from the config
``_load_pyfunc`` was given and the environment variable (``<unset>`` when absent)."""
import os


class EnvEcho:
    def __init__(self, config):
        self.text = str(config.get("greeting")) * int(config.get("times", 1))

    def predict(self, model_input):
        extra = os.environ.get("MLFUSION_TEST_EXTRA", "<unset>")
        return [f"{self.text}|{extra}"] * len(model_input)


def _load_pyfunc(data_path, model_config=None):
    return EnvEcho(model_config or {})
