"""The other side of the Delta Lake tests: tables written and read by the `deltalake`
Python package (delta-rs' own binding, an independent writer and reader).

    python delta_fixture.py features LOCATION ROWS        # a table of four versions
    python delta_fixture.py column-mapping LOCATION ROWS  # column mapping 'name'
    python delta_fixture.py read LOCATION                  # prints the table as JSON

LOCATION is a local directory or an ``s3://`` URL; for S3 the variables
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` name the server.

``features`` writes, partitioned by ``region`` ('eu' for odd ids, 'us' for even ones),
the columns ``id, f0, f1, f2`` (the features of ``fixtures::features``):
version 0 ids 0..ROWS/2, version 1 (append) ids ROWS/2..ROWS, version 2 (append, schema
merged) ids ROWS..ROWS+100 with a new string column ``segment`` = 'new', version 3
deletes the row of id 7.

``read`` prints ``{"version", "schema": [[name, type], ...], "partition_columns",
"operations": [oldest first], "rows", "columns": {name: [values in id order]}}``.
"""

import json
import os
import sys

import deltalake
import numpy as np
import pyarrow as pa


def storage_options(location):
    if not location.startswith("s3://"):
        return None
    return {
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        # The only writer: no lock needed.
        "AWS_S3_ALLOW_UNSAFE_RENAME": "true",
    }


def features(ids):
    return {
        "id": pa.array(ids, pa.int64()),
        "f0": (ids % 1000) / 100.0,
        "f1": ((ids * 7) % 113) / 10.0,
        "f2": ((ids * 13) % 97) / 5.0,
        "region": pa.array(np.where(ids % 2 == 1, "eu", "us")),
    }


def write_features(location, rows):
    options = storage_options(location)
    ids = np.arange(rows, dtype=np.int64)
    half = rows // 2
    write = deltalake.write_deltalake
    write(location, pa.table(features(ids[:half])), partition_by=["region"], storage_options=options)
    write(location, pa.table(features(ids[half:])), mode="append", storage_options=options)
    new = np.arange(rows, rows + 100, dtype=np.int64)
    table = pa.table({**features(new), "segment": pa.array(["new"] * len(new))})
    write(location, table, mode="append", schema_mode="merge", storage_options=options)
    deltalake.DeltaTable(location, storage_options=options).delete("id = 7")


def write_column_mapping(location, rows):
    ids = np.arange(rows, dtype=np.int64)
    columns = features(ids)
    del columns["region"]
    deltalake.write_deltalake(
        location,
        pa.table(columns),
        configuration={"delta.columnMapping.mode": "name"},
        storage_options=storage_options(location),
    )


def read(location):
    table = deltalake.DeltaTable(location, storage_options=storage_options(location))
    schema = pa.schema(table.schema().to_arrow())
    key = "id" if "id" in schema.names else schema.names[0]
    # delta-rs' own engine: the package's pyarrow reader refuses deletion vectors and
    # reads column-mapped columns as nulls.
    query = deltalake.QueryBuilder().register("t", table).execute(f'SELECT * FROM t ORDER BY "{key}"')
    data = pa.table(query.read_all())
    history = sorted(table.history(), key=lambda h: h["version"])
    print(
        json.dumps(
            {
                "version": table.version(),
                "schema": [[f.name, str(f.type)] for f in schema],
                "partition_columns": table.metadata().partition_columns,
                "operations": [h["operation"] for h in history],
                "rows": data.num_rows,
                "columns": {name: data.column(name).to_pylist() for name in data.column_names},
            }
        )
    )


def main(command, location, *args):
    if command == "features":
        write_features(location, int(args[0]))
    elif command == "column-mapping":
        write_column_mapping(location, int(args[0]))
    elif command == "read":
        read(location)
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(*sys.argv[1:])
    sys.stdout.flush()
    # delta-rs' runtime threads abort the interpreter's normal exit ("terminate called
    # without an active exception"); everything is written by now.
    os._exit(0)
