"""The other side of the object store tests, on a moto S3 server with authentication on.

    python s3_fixture.py setup ENDPOINT ROWS     # prints "KEY_ID SECRET"
    python s3_fixture.py get ENDPOINT KEY_ID SECRET BUCKET/KEY LOCAL_FILE
    python s3_fixture.py list ENDPOINT KEY_ID SECRET BUCKET/PREFIX

``setup`` (the server's first three requests, made before authentication starts) creates
an IAM user with an access key allowed everything, then, as that user, the bucket
``scoring`` and in it ``features/part-0.parquet`` and ``features/part-1.parquet`` (ids
0..ROWS split in two, the features of ``fixtures::features``), written by pyarrow's own S3
filesystem. ``get`` copies an object to a local file; ``list`` prints the keys under a
prefix, one per line.
"""

import json
import sys

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.fs as fs
import pyarrow.parquet as pq


def s3(endpoint, key, secret):
    return fs.S3FileSystem(
        endpoint_override=endpoint,
        scheme="http",
        access_key=key,
        secret_key=secret,
        region="us-east-1",
        allow_bucket_creation=True,
    )


def features(ids):
    return pa.table(
        {
            "id": ids,
            "f0": (ids % 1000) / 100.0,
            "f1": ((ids * 7) % 113) / 10.0,
            "f2": ((ids * 13) % 97) / 5.0,
        }
    )


def setup(endpoint, rows):
    iam = boto3.client(
        "iam", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup"
    )
    iam.create_user(UserName="scorer")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="scorer", PolicyName="all", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="scorer")["AccessKey"]
    store = s3(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    store.create_dir("scoring")
    ids = np.arange(int(rows), dtype=np.int64)
    half = len(ids) // 2
    pq.write_table(features(ids[:half]), "scoring/features/part-0.parquet", filesystem=store)
    pq.write_table(features(ids[half:]), "scoring/features/part-1.parquet", filesystem=store)
    print(key["AccessKeyId"], key["SecretAccessKey"])


def main(command, endpoint, *args):
    if command == "setup":
        setup(endpoint, *args)
    elif command == "get":
        key, secret, path, local = args
        fs.copy_files(path, local, source_filesystem=s3(endpoint, key, secret))
    elif command == "list":
        key, secret, prefix = args
        selector = fs.FileSelector(prefix, recursive=True, allow_not_found=True)
        for info in s3(endpoint, key, secret).get_file_info(selector):
            if info.type == fs.FileType.File:
                print(info.path)


if __name__ == "__main__":
    main(*sys.argv[1:])
