"""The engine from Python: a :class:`Session` in which MLflow models are SQL functions, and
the :class:`Result` of a statement, streamed as Arrow record batches.

The engine runs in this process (``mlfusion._engine``) and releases the GIL while it
works; models run in worker processes of this Python (``workers``, default one per core)
or, with ``workers=0``, in this interpreter.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Iterator, Mapping, Optional, Union

import pyarrow as pa

from mlfusion import _engine

Location = Union[str, "os.PathLike[str]"]


class Session:
    """A SQL session whose functions include the models registered in it.

    Keywords are the session flags of ``mlfusion query`` (``mlfusion query --help``):
    ``workers`` (Python worker processes per model; 0 runs models in this interpreter),
    ``batch_size``, ``target_partitions``, ``model_cache``, ``env_manager``,
    ``worker_start``, the worker limits, ... e.g. ``Session(workers=0)``.
    """

    def __init__(self, **options: Any):
        self._session = _engine.Session(_flags(options))

    def register_model(
        self,
        name: str,
        uri: Location,
        result_type: Optional[str] = None,
        params: Optional[Mapping[str, Any]] = None,
        *,
        model_config: Optional[Mapping[str, Any]] = None,
        extra_env: Optional[Mapping[str, str]] = None,
        env_manager: Optional[str] = None,
        on_error: Optional[str] = None,
    ) -> "Session":
        """Loads the model at ``uri`` (a directory, ``runs:/``, ``models:/``, ...) and binds it
        as the SQL function ``name``; ``result_type`` and ``params`` as in ``spark_udf``;
        ``on_error``: ``raise`` (default), ``null`` or ``struct`` for rows whose prediction
        fails (``mlfusion query --on-error``)."""
        self._session.register_model(
            name,
            os.fspath(uri),
            result_type,
            _json(params),
            _json(model_config),
            [(str(k), str(v)) for k, v in (extra_env or {}).items()],
            env_manager,
            on_error,
        )
        return self

    def register_table(self, name: str, source: Any) -> "Session":
        """Registers the table ``name``: a location as ``--table`` takes it (Parquet files, a
        URL, ``delta:LOCATION``, a Delta table's directory), or Arrow data in memory (a
        pyarrow Table, RecordBatch or RecordBatchReader, a pandas DataFrame, anything with
        ``__arrow_c_stream__``)."""
        if isinstance(source, (str, os.PathLike)):
            self._session.register_table(name, os.fspath(source))
        else:
            self._session.register_arrow(name, _arrow(source))
        return self

    def register_parquet(self, name: str, path: Location) -> "Session":
        """Registers Parquet files (a file, a directory, a glob or a URL) as the table ``name``."""
        return self.register_table(name, path)

    def sql(self, query: str, *, progress: Optional[bool] = None) -> "Result":
        """Plans one SQL statement. A query runs when its result is read (each time);
        ``COPY`` and DDL run now. ``progress``: a progress bar while models score
        (default: on a terminal or in Jupyter)."""
        return Result(self._session.sql(query), progress)


class Result:
    """The rows of a statement: read them as Arrow (``to_arrow``, iteration, ``to_reader``),
    pandas (``to_pandas``) or write them (``write``, ``write_parquet``). A query runs each
    time it is read, streaming: reading batch by batch or writing keeps memory flat."""

    def __init__(self, frame: "_engine.Frame", progress: Optional[bool]):
        self._frame = frame
        self._progress = progress

    @property
    def schema(self) -> pa.Schema:
        return self._frame.schema

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self._read(self._frame.execute())

    def _read(self, batches: "_engine.Batches") -> Iterator[pa.RecordBatch]:
        """The batches of a started statement, drawing the progress bar as they come."""
        bar = _Bar(self._progress)
        try:
            for batch in batches:
                bar.update(batches.rows_scored, batches.rows_expected)
                yield batch
            bar.close(ok=True)
        finally:
            bar.close(ok=False)
            batches.close()  # a reader that stops early cancels the rest

    def to_reader(self) -> pa.RecordBatchReader:
        """The rows as a pyarrow RecordBatchReader, read as it is consumed."""
        batches = self._frame.execute()
        return pa.RecordBatchReader.from_batches(batches.schema, self._read(batches))

    def to_batches(self) -> list:
        return list(self)

    def to_arrow(self) -> pa.Table:
        batches = self._frame.execute()
        return pa.Table.from_batches(list(self._read(batches)), schema=batches.schema)

    def to_pandas(self, **kwargs: Any):
        """The rows as a pandas DataFrame (``kwargs`` go to ``pyarrow.Table.to_pandas``)."""
        return self.to_arrow().to_pandas(**kwargs)

    def write(self, location: Location, *, format: Optional[str] = None, mode: str = "error") -> str:
        """Writes the rows where ``mlfusion query --output`` writes: a file (``.parquet``,
        ``.csv``, ``.json``; or ``format``), an object store URL, or ``delta:LOCATION`` (``mode``
        ``error``, ``append`` or ``overwrite`` when the table exists). Whole, or nothing on
        an error or Ctrl-C. Returns what was written ("wrote N row(s) to ...")."""
        bar = _Bar(self._progress)
        try:
            written = self._frame.write(os.fspath(location), format, mode, bar.update)
            bar.close(ok=True)
        finally:
            bar.close(ok=False)
        return written

    def write_parquet(self, path: Location) -> str:
        return self.write(path, format="parquet")

    def __repr__(self) -> str:
        return f"mlfusion.Result(schema=<{self.schema.to_string(show_schema_metadata=False)}>)"


def sql(
    query: str,
    models: Optional[Mapping[str, Any]] = None,
    tables: Optional[Mapping[str, Any]] = None,
    *,
    progress: Optional[bool] = None,
    **options: Any,
) -> Result:
    """One statement in a new session: ``models`` maps function names to URIs (or to dicts
    of :meth:`Session.register_model`'s keywords), ``tables`` names to locations or Arrow
    data; ``options`` as :class:`Session`'s, e.g.
    ``mlfusion.sql("SELECT churn(a, b) FROM t", models={"churn": "models:/churn@prod"},
    tables={"t": "s3://bucket/customers/"}).to_pandas()``."""
    session = Session(**options)
    for name, model in (models or {}).items():
        if isinstance(model, Mapping):
            session.register_model(name, **model)
        else:
            session.register_model(name, model)
    for name, table in (tables or {}).items():
        session.register_table(name, table)
    return session.sql(query, progress=progress)


def _flags(options: Mapping[str, Any]) -> list:
    """Keywords as command line flags: ``batch_size=1000`` -> ``--batch-size 1000``."""
    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v is True:
                flags.append(flag)
            elif v is not None and v is not False:
                flags += [flag, os.fspath(v) if isinstance(v, os.PathLike) else str(v)]
    return flags


def _json(value: Optional[Mapping[str, Any]]) -> Optional[str]:
    return None if value is None else json.dumps(value)


def _arrow(data: Any) -> Any:
    """Tabular data as something with ``__arrow_c_stream__``."""
    if hasattr(data, "__arrow_c_stream__"):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if type(data).__module__.startswith("pandas"):
        return pa.Table.from_pandas(data, preserve_index=False)
    raise TypeError(f"not a table location or Arrow data: {type(data).__name__}")


class _Bar:
    """A tqdm bar of the rows models score, made on the first report that counts rows
    (a statement that calls no model has none)."""

    def __init__(self, progress: Optional[bool]):
        if progress is None:
            progress = sys.stderr.isatty() or "ipykernel" in sys.modules
        self._enabled = progress
        self._bar = None

    def update(self, rows: Optional[int], expected: Optional[int]) -> None:
        if not self._enabled or rows is None:
            return
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=expected, desc="scoring", unit=" rows", unit_scale=True)
        self._bar.update(rows - self._bar.n)

    def close(self, ok: bool) -> None:
        if self._bar is not None:
            if ok:
                self._bar.total = self._bar.n  # an estimate (e.g. before a filter) ends exact
                self._bar.refresh()
            self._bar.close()
            self._bar = None
