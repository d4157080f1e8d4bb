
# ---------------------------------------------------------------- worker process
# Appended to the bridge above and run as ``python -c`` by the Rust worker pool
# (``workers.rs``): one model per process, requests on stdin, answers on the original
# stdout. Each message is a little-endian u32 header length, a JSON header, a u64 body
# length and a body (an Arrow IPC stream of one record batch, or nothing).
import collections
import fcntl
import os
import struct
import threading
import traceback


def _read_exactly(stream, n):
    data = stream.read(n)
    if len(data) != n:
        raise EOFError
    return data


def _read_message(stream):
    (header_len,) = struct.unpack("<I", _read_exactly(stream, 4))
    header = json.loads(_read_exactly(stream, header_len))
    (body_len,) = struct.unpack("<Q", _read_exactly(stream, 8))
    return header, _read_exactly(stream, body_len)


def _write_message(stream, header, body=b""):
    encoded = json.dumps(header).encode()
    stream.write(struct.pack("<I", len(encoded)) + encoded + struct.pack("<Q", len(body)))
    if len(body):
        stream.write(body)
    stream.flush()


def _error_header(e, stage):
    return {
        "exception": f"{type(e).__qualname__}: {e}",
        # Without this loop's own frame, as the embedded interpreter reports it.
        "traceback": "".join(traceback.format_tb(e.__traceback__.tb_next)),
        "stage": getattr(e, "mlfusion_stage", stage),
        "notes": [str(n) for n in getattr(e, "__notes__", [])],
    }


def _exit_with_parent(parent):
    """Ends this process once the engine that started it is gone, even mid-predict."""
    while os.getppid() == parent:
        time.sleep(0.25)
    os._exit(0)


def _widen_pipe(fd):
    """A batch is megabytes: a pipe of the largest size an unprivileged process may set
    moves it in a few wakeups instead of one per 64 KiB (the default)."""
    try:
        with open("/proc/sys/fs/pipe-max-size") as f:
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, int(f.read()))
    except (OSError, ValueError, AttributeError):
        pass  # not Linux, or a limit lowered by the administrator: keep the default


# Scorers kept per worker, least recently used first out (the engine bounds its own
# bindings; a scorer evicted here is rebuilt from its config on its next batch).
_MAX_SCORERS = 64


def _serve(parent):
    requests = sys.stdin.buffer
    answers = os.fdopen(os.dup(1), "wb")
    _widen_pipe(0)
    _widen_pipe(answers.fileno())
    os.dup2(2, 1)  # what the model prints must not corrupt the answers
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    model = None
    scorers = collections.OrderedDict()
    while True:
        try:
            header, body = _read_message(requests)
        except EOFError:
            return
        stage = "loading the model" if header["op"] == "load" else "binding the model"
        try:
            if header["op"] == "load":
                model = load_model(header["code_dir"], header["loader_module"],
                                   header["data_path"], header["model_config"])
                _write_message(answers, {"ok": True})
                continue
            config = header["config"]
            scorer = scorers.get(config)
            if scorer is None:
                scorer = scorers[config] = Scorer(model, header["predict_fn"], config)
                if len(scorers) > _MAX_SCORERS:
                    scorers.popitem(last=False)
            scorers.move_to_end(config)
            stage = "predict"
            batch = pa.ipc.open_stream(pa.py_buffer(body)).read_next_batch()
            columns = iter(batch.columns)
            arrays = [next(columns) if present else None for present in header["present"]]
            result, predict_ns = scorer.predict(header["labels"], arrays, header["mode"])
            sink = pa.BufferOutputStream()
            answer = pa.record_batch([result], names=["prediction"])
            with pa.ipc.new_stream(sink, answer.schema) as writer:
                writer.write_batch(answer)
            _write_message(answers, {"ok": True, "predict_ns": predict_ns}, sink.getvalue())
        except Exception as e:
            _write_message(answers, {"ok": False, "error": _error_header(e, stage)})


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        # An environment's check: the bridge imported, this Python's version.
        print("%d.%d.%d" % sys.version_info[:3])
    else:
        _serve(int(sys.argv[1]))  # the engine's pid
