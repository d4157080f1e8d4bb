"""Talking to an mlfusion Flight server: where it is, who we are, and the exchange."""

from __future__ import annotations

import json
import re
import os
import socket
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional, Sequence, Union

import pyarrow as pa
import pyarrow.flight as flight

DEFAULT_SERVER = "grpc://127.0.0.1:8815"

Servers = Union[str, Sequence[str]]


class MlfusionError(RuntimeError):
    """A call to an mlfusion server failed; the message names the server and the model."""


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
) -> Iterator[pa.Array]:
    """Streams ``batches`` through one ``DoExchange``; yields each batch's predictions.

    Every input batch is answered by one result of exactly its rows, in order (empty
    batches get an empty ``result`` array without a round trip); an error from the
    server ends the stream with an :class:`MlfusionError`.
    """
    location = conn.location(task)
    descriptor = flight.FlightDescriptor.for_command(command(model, result_type, params, call, load))
    client = conn.client(location)
    writer = None
    try:
        writer, reader = client.do_exchange(descriptor, conn.options())
        started = False
        for batch in batches:
            if not started:
                writer.begin(batch.schema)
                started = True
            if batch.num_rows == 0:
                yield pa.array([], type=result)
                continue
            writer.write_batch(batch)
            chunk = reader.read_chunk().data
            if chunk.num_rows != batch.num_rows:
                raise MlfusionError(
                    f"mlfusion server {location}: model '{model}' answered "
                    f"{chunk.num_rows} rows for a batch of {batch.num_rows}"
                )
            yield chunk.column(0)
        if started:
            writer.done_writing()
    except (flight.FlightError, pa.ArrowException) as e:
        raise MlfusionError(f"mlfusion server {location}: {_message(e)}") from None
    finally:
        if writer is not None:
            try:
                writer.close()
            except (flight.FlightError, pa.ArrowException):
                pass  # the stream already failed; that error was raised above
        client.close()


def _message(error: Exception) -> str:
    """The server's message, without gRPC's debug context."""
    text = str(error).split(". gRPC client debug context")[0]
    return re.sub(r"^Flight returned [\w ]+ error, with message: ", "", text)
