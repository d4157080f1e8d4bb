"""The benchmark dataset: N rows (default 5,000,000) of 16 float64 features f0..f15, two
int64 columns n0, n1, a string category `segment`, an int64 `id` and two training
targets, in 131,072-row row groups. Deterministic (seeded), so every run scores the same
data.

    python benches/generate.py OUT.parquet [--rows N]
"""
import argparse

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 131_072
SEGMENTS = np.array(["retail", "smb", "enterprise", "public", "education", "health", "media", "other"])
# The linear ground truth of `y`; `label` is whether y exceeds its median (0.0).
WEIGHTS = np.linspace(-2.0, 2.0, 16)


def batch(start, rows, rng):
    features = rng.standard_normal((rows, 16))
    n0 = rng.integers(0, 1000, rows)
    n1 = rng.integers(0, 50, rows)
    y = features @ WEIGHTS + 0.01 * n0 - 0.1 * n1 + 0.5 * rng.standard_normal(rows) - 2.5
    columns = {"id": np.arange(start, start + rows, dtype=np.int64)}
    columns.update({f"f{i}": features[:, i] for i in range(16)})
    columns.update({"n0": n0, "n1": n1, "segment": SEGMENTS[rng.integers(0, len(SEGMENTS), rows)]})
    columns.update({"y": y, "label": (y > 0).astype(np.int64)})
    return pa.RecordBatch.from_pydict(columns)


def generate(path, rows, seed=42):
    rng = np.random.default_rng(seed)
    writer = None
    for start in range(0, rows, ROW_GROUP):
        b = batch(start, min(ROW_GROUP, rows - start), rng)
        if writer is None:
            writer = pq.ParquetWriter(path, b.schema)
        writer.write_batch(b, row_group_size=ROW_GROUP)
    writer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=5_000_000)
    args = parser.parse_args()
    generate(args.out, args.rows)
