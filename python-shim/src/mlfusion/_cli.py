"""The ``mlfusion`` console command of the wheel: the engine's command line, in this Python."""

import os
import sys


def main() -> None:
    from mlfusion._engine import run_cli

    try:
        code = run_cli([os.path.basename(sys.argv[0]), *sys.argv[1:]])
    except KeyboardInterrupt:
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    # As the binary ends: without finalizing the interpreter under the engine's threads
    # (a model called in process, workers being reaped).
    os._exit(code)
