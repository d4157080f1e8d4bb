"""Test model: returns ``twice`` = 2x and ``next`` = x + 1 for its first column, and appends
one line per ``predict`` call ("<pid> <rows>") to the file named by
MLFUSION_TEST_PREDICT_LOG; then sleeps MLFUSION_TEST_PREDICT_SLEEP seconds (default 0)."""
import os
import time

import pandas as pd


class Counter:
    def predict(self, model_input):
        with open(os.environ["MLFUSION_TEST_PREDICT_LOG"], "a") as log:
            log.write(f"{os.getpid()} {len(model_input)}\n")
        time.sleep(float(os.environ.get("MLFUSION_TEST_PREDICT_SLEEP", "0")))
        x = model_input.iloc[:, 0].astype("float64")
        return pd.DataFrame({"twice": x * 2, "next": x + 1})


def _load_pyfunc(data_path):
    return Counter()
