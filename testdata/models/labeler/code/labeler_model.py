"""Test model: label 'hi'/'lo' by x > 0 (suffixed with the tag), score = 2x."""
import pandas as pd


class Labeler:
    def predict(self, model_input):
        x = model_input["x"]
        labels = ["%s-%s" % ("hi" if v > 0 else "lo", t) for v, t in zip(x, model_input["tag"])]
        return pd.DataFrame({"label": labels, "score": x * 2.0})


def _load_pyfunc(data_path):
    return Labeler()
