"""Test model: warns (a Python warning and a logged one, as MLflow's flavors do) while
loading, then fails with ImportError."""
import logging
import sys
import warnings


def _load_pyfunc(data_path):
    warnings.warn("an execution provider is not available", UserWarning)
    handler = logging.StreamHandler(sys.stderr)  # as MLflow's logger writes: to sys.stderr
    logger = logging.getLogger("warn_then_fail")
    logger.addHandler(handler)
    logger.warning("falling back to the CPU")
    logger.removeHandler(handler)
    raise ImportError("No module named 'onnxruntime_gpu' (the model's own cause)")
