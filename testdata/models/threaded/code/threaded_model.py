"""Test model whose load starts a background thread (as TensorFlow, PyTorch or a
connection pool do): a process holding it must not be forked. Returns its first column
plus the number of threads of the scoring process that are called "threaded-model"
(one: the thread its own load started; a forked copy of a loaded model would have none)."""
import os
import threading
import time


class Threaded:
    def __init__(self):
        self.thread = threading.Thread(target=time.sleep, args=(3600,), name="threaded-model", daemon=True)
        self.thread.start()

    def predict(self, model_input):
        alive = sum(1 for t in threading.enumerate() if t.name == "threaded-model" and t.is_alive())
        return model_input.iloc[:, 0].to_numpy(dtype=float) + alive


def _load_pyfunc(data_path):
    return Threaded()
