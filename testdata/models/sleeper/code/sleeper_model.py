"""Test model: returns its first column (as float); a batch of an odd number of rows
first sleeps 0.3 s, so that a later, even batch scored beside it ends first. Appends
"<start> <end>" (time.time() at the call's start and end) per call to the file named by
MLFUSION_TEST_PREDICT_LOG when it is set."""
import os
import time


class Sleeper:
    def predict(self, model_input):
        start = time.time()
        if len(model_input) % 2:
            time.sleep(0.3)
        log = os.environ.get("MLFUSION_TEST_PREDICT_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{start} {time.time()}\n")
        return model_input.iloc[:, 0].to_numpy(dtype=float)


def _load_pyfunc(data_path):
    return Sleeper()
