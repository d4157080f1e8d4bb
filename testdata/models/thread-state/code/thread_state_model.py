"""Test model: raises when the OS thread calling ``predict`` has scored before but its
Python thread state is a new one (what it keeps in a ``threading.local`` is gone). pybind11
keeps a pointer to the thread state of the thread that first imports one of its modules
and takes the GIL with it later, so a state freed and made anew between two calls crashes
TensorFlow and Keras 3 models; here it raises instead. Returns x + 1."""
import threading

_threads = set()
_state = threading.local()


class ThreadState:
    def predict(self, model_input):
        ident = threading.get_ident()
        if ident in _threads and not getattr(_state, "seen", False):
            raise RuntimeError(f"thread {ident} has a new Python thread state since its last batch")
        _threads.add(ident)
        _state.seen = True
        return model_input.iloc[:, 0] + 1


def _load_pyfunc(data_path):
    return ThreadState()
