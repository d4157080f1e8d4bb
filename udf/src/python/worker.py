
# ---------------------------------------------------------------- worker process
# Appended to the bridge above and run as ``python -c`` by the Rust worker pool
# (``workers.rs``): one model per process, requests on stdin, answers on the original
# stdout. Each message is a little-endian u32 header length, a JSON header, a u64 body
# length and a body (an Arrow IPC stream of one record batch, or nothing).
import collections
import fcntl
import gc
import os
import select
import signal
import socket
import struct
import threading
import traceback


def _read_exactly(stream, n):
    data = stream.read(n)
    while data is not None and len(data) < n:
        more = stream.read(n - len(data))  # a raw stream (the template's) reads in parts
        if not more:
            break
        data += more
    if data is None or len(data) != n:
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


def _channel():
    """The engine's pipes: requests on stdin, answers on the original stdout (fd 1 then
    points at stderr: what the model prints must not corrupt the answers)."""
    answers = os.fdopen(os.dup(1), "wb")
    _widen_pipe(0)
    _widen_pipe(answers.fileno())
    os.dup2(2, 1)
    return answers


def _serve(parent):
    answers = _channel()
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _answer(sys.stdin.buffer, answers, None)


def _answer(requests, answers, model):
    """Loads the model (unless given one) and answers predict requests until EOF."""
    scorers = collections.OrderedDict()
    while True:
        try:
            header, body = _read_message(requests)
        except EOFError:
            return
        stage = "loading the model" if header["op"] == "load" else "binding the model"
        try:
            if header["op"] == "load":
                model = _load(header)
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


def _load(header):
    return load_model(header["code_dir"], header["loader_module"], header["data_path"], header["model_config"])


def _threads():
    """Threads of this process (Linux); None where they cannot be counted."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


# ---------------------------------------------------------------- template process
# A template loads the model once, then forks each worker of the pool, which starts
# with the model loaded (its memory shared copy-on-write): N workers cost one load.
# Its control channel (stdin, the original stdout) carries, after the load, requests
# {"op": "fork", "socket": PATH} (the child connects to PATH and answers predict
# requests there; the template answers {"ok": true, "pid": PID}) and, unasked,
# {"op": "exited", "pid": PID, "code": CODE} for each child that ends (CODE < 0: killed
# by signal -CODE). It forks only while it is the one thread of its process.


def _template(parent):
    answers = _channel()
    requests = os.fdopen(0, "rb", buffering=0, closefd=False)
    header, _ = _read_message(requests)
    try:
        model = _load(header)
    except Exception as e:
        _write_message(answers, {"ok": False, "error": _error_header(e, "loading the model")})
        return
    # The model's objects move out of the collector's generations: a child's collections
    # then never touch (and copy) the pages it shares with this process.
    gc.freeze()
    _write_message(answers, {"ok": True, "threads": _threads()})
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    while os.getppid() == parent:
        ready, _, _ = select.select([0, wake_read], [], [], 0.25)
        if wake_read in ready:
            os.read(wake_read, 4096)
            _reap(answers)
        if 0 not in ready:
            continue
        try:
            header, _ = _read_message(requests)
        except EOFError:
            return  # the pool is closed; its workers end with this process
        threads = _threads()
        if threads != 1:
            _write_message(answers, {"ok": False, "threads": threads})
            continue
        pid = os.fork()
        if pid == 0:
            _forked(header["socket"], model, (0, answers.fileno(), wake_read, wake_write))
        _write_message(answers, {"ok": True, "pid": pid})


def _reap(answers):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _write_message(answers, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _forked(path, model, template_fds):
    """The child of a fork: a worker with the model loaded, answering on ``path``."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in template_fds:  # the template's channel is not this process's
            os.close(fd)
        channel = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # A batch is megabytes: a large send buffer moves it in few wakeups.
        channel.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
        channel.connect(path)
        requests, answers = channel.makefile("rb"), channel.makefile("wb")
        threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
        _answer(requests, answers, model)
    finally:
        os._exit(0)


if __name__ == "__main__":
    if sys.argv[1] == "--check":
        # An environment's check: the bridge imported, this Python's version.
        print("%d.%d.%d" % sys.version_info[:3])
    elif sys.argv[1] == "--template":
        _template(int(sys.argv[2]))  # the engine's pid
    else:
        _serve(int(sys.argv[1]))  # the engine's pid
