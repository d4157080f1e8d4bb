"""Test model: returns its first column, misbehaving on sentinel values: -9 kills its own
process with SIGKILL (as the out-of-memory killer would), -11 with SIGSEGV, -3 calls
``os._exit(3)``, -7 hangs (sleeps for an hour), and -5 prints to stdout (``print`` and a
raw write to file descriptor 1) before answering."""
import os
import signal
import time


class Crasher:
    def predict(self, model_input):
        first = model_input.iloc[:, 0]
        if (first == -9).any():
            os.kill(os.getpid(), signal.SIGKILL)
        if (first == -11).any():
            os.kill(os.getpid(), signal.SIGSEGV)
        if (first == -3).any():
            os._exit(3)
        if (first == -7).any():
            time.sleep(3600)
        if (first == -5).any():
            for i in range(64):
                print(f"model chatter {i}")
            os.write(1, b"raw model chatter\n")
        return first.to_numpy(dtype=float)


def _load_pyfunc(data_path):
    return Crasher()
