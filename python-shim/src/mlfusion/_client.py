"""Talking to an mlfusion Flight server: where it is, who we are, and the exchange."""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import threading
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.flight as flight

from mlfusion._errors import MlfusionError

DEFAULT_SERVER = "grpc://127.0.0.1:8815"

Servers = Union[str, Sequence[str]]


def _executor_host() -> str:
    """The host name a ``{host}`` template is filled with on this machine."""
    return os.environ.get("SPARK_LOCAL_HOSTNAME") or socket.gethostname()


@dataclass(frozen=True)
class Connection:
    """How to reach the servers: locations (or a ``{host}`` template), token, TLS roots.

    It is pickled into Spark tasks, so it holds plain values only.
    """

    servers: tuple
    token: Optional[str] = None
    tls_root_certs: Optional[bytes] = None

    @classmethod
    def of(
        cls,
        server: Servers,
        token: Optional[str] = None,
        tls_root_certs: Union[str, bytes, None] = None,
    ) -> "Connection":
        servers = (server,) if isinstance(server, str) else tuple(server)
        if not servers:
            raise ValueError("mlfusion: no server given")
        if isinstance(tls_root_certs, str):
            with open(tls_root_certs, "rb") as f:
                tls_root_certs = f.read()
        return cls(servers, token or os.environ.get("MLFUSION_TOKEN"), tls_root_certs)

    def location(self, index: int = 0) -> str:
        """The server for task ``index``: spread over the list, or this host's server."""
        server = self.servers[index % len(self.servers)]
        return server.replace("{host}", _executor_host())

    def client(self, location: str) -> flight.FlightClient:
        kwargs = {}
        if self.tls_root_certs is not None:
            kwargs["tls_root_certs"] = self.tls_root_certs
        return flight.FlightClient(location, **kwargs)

    def options(self) -> flight.FlightCallOptions:
        headers = []
        if self.token is not None:
            headers.append((b"authorization", f"Bearer {self.token}".encode()))
        return flight.FlightCallOptions(headers=headers)


def command(
    model: str, result_type: Optional[str], params: Optional[dict], call: str, load: Optional[dict] = None
) -> bytes:
    """The descriptor command of the mlfusion protocol; ``load`` holds ``model_config``
    and ``extra_env`` when the caller gave them."""
    body = {"model": model, "call": call, **(load or {})}
    if result_type is not None:
        body["result_type"] = result_type
    if params is not None:
        body["params"] = params
    try:
        return json.dumps(body, default=_json_value).encode()
    except TypeError as e:
        raise MlfusionError(f"model '{model}': params must be JSON-like values: {e}") from None


def _json_value(value):
    """numpy and datetime values as JSON (what ``mlflow.pyfunc.spark_udf`` accepts as
    params): scalars as Python numbers, arrays as lists, datetimes as ISO 8601 text."""
    import datetime

    import numpy as np

    if isinstance(value, (np.ndarray, np.datetime64)) and value.dtype.kind == "M":
        return np.datetime_as_string(value).tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


@dataclass(frozen=True)
class ModelInfo:
    """What a server says about a model bound to a result type and params."""

    schema: pa.Schema
    metadata: dict

    @property
    def result_type(self) -> str:
        return self.metadata["result_type"]


def describe(
    conn: Connection,
    model: str,
    result_type: Optional[str],
    params: Optional[dict],
    load: Optional[dict] = None,
) -> ModelInfo:
    """``GetFlightInfo`` of (model, result_type, params); validates all three, and that
    the server loaded the model as ``load`` asks."""
    location = conn.location()
    descriptor = flight.FlightDescriptor.for_command(command(model, result_type, params, "columns", load))
    try:
        with conn.client(location) as client:
            info = client.get_flight_info(descriptor, conn.options())
    except (flight.FlightError, pa.ArrowException) as e:
        raise MlfusionError(f"mlfusion server {location}: {_message(e)}") from None
    return ModelInfo(info.schema, json.loads(info.app_metadata or b"{}"))


# Input batches sent ahead of the answers read, per stream: the server scores batch k
# while batch k+1 is on its way and batch k-1's answer on its way back.
WINDOW = 4


def exchange(
    conn: Connection,
    model: str,
    result_type: Optional[str],
    params: Optional[dict],
    call: str,
    batches: Iterable[pa.RecordBatch],
    result: pa.DataType,
    task: int = 0,
    load: Optional[dict] = None,
    window: int = WINDOW,
) -> Iterator[pa.Array]:
    """Streams ``batches`` through one ``DoExchange``; yields each batch's predictions.

    Every input batch is answered by one result of exactly its rows, in order (empty
    batches get an empty ``result`` array without a round trip); an error from the
    server ends the stream with an :class:`MlfusionError`. A thread of its own writes
    the batches, at most ``window`` ahead of the answers read, while this one reads them.
    """
    location = conn.location(task)
    descriptor = flight.FlightDescriptor.for_command(command(model, result_type, params, call, load))
    client = conn.client(location)
    try:
        writer, reader = client.do_exchange(descriptor, conn.options())
    except (flight.FlightError, pa.ArrowException) as e:
        client.close()
        raise MlfusionError(f"mlfusion server {location}: {_message(e)}") from None
    feed = _Feed(batches, writer, window)
    ended = False
    try:
        for rows in feed.sent():
            if rows == 0:
                yield pa.array([], type=result)
                continue
            chunk = reader.read_chunk().data
            if chunk.num_rows != rows:
                raise MlfusionError(
                    f"mlfusion server {location}: model '{model}' answered "
                    f"{chunk.num_rows} rows for a batch of {rows}"
                )
            yield chunk.column(0)
        ended = True
    except (flight.FlightError, pa.ArrowException) as e:
        raise MlfusionError(f"mlfusion server {location}: {_message(e)}") from None
    finally:
        if not ended:
            # Failed or abandoned: cancelling the call frees a write waiting on the server.
            reader.cancel()
        feed.stop()
        client.close()


class _Feed:
    """Writes input batches to an exchange from a thread of its own, telling the reader
    the rows of each batch sent (0 for an empty batch, which is not sent), at most
    ``window`` batches ahead of it."""

    _END = object()

    def __init__(self, batches: Iterable[pa.RecordBatch], writer, window: int):
        self._writer = writer
        self._sent = queue.Queue(maxsize=max(1, window))
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(iter(batches),), daemon=True)
        self._thread.start()

    def _run(self, batches) -> None:
        started = False
        try:
            for batch in batches:
                if not started:
                    self._writer.begin(batch.schema)
                    started = True
                if batch.num_rows and not self._put(batch.num_rows):
                    return
                if batch.num_rows:
                    self._writer.write_batch(batch)
                elif not self._put(0):
                    return
            if started:
                self._writer.done_writing()
            self._put(self._END)
        except BaseException as e:  # the reader raises it: the input's error, or the server's
            self._put(e)

    def _put(self, item) -> bool:
        """Queues ``item`` for the reader unless the stream is stopping."""
        while not self._stopping.is_set():
            try:
                self._sent.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def sent(self) -> Iterator[int]:
        """The rows of each batch sent, in order, until the input ends."""
        while True:
            item = self._sent.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        """Ends the thread (its stream is done, or cancelled), then the writing."""
        self._stopping.set()
        self._thread.join()
        try:
            self._writer.close()
        except (flight.FlightError, pa.ArrowException):
            pass  # the stream already failed; that error was raised by the reader


def _message(error: Exception) -> str:
    """The server's message, without gRPC's debug context."""
    text = str(error).split(". gRPC client debug context")[0]
    return re.sub(r"^Flight returned [\w ]+ error, with message: ", "", text)
