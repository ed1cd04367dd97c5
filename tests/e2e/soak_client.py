"""A long-running boto3 program on an instance (run through ``keycard
exec``): one session, one pair of clients, calls every INTERVAL seconds
until it has signed with WANT distinct credential sets or DEADLINE seconds
pass. Prints JSON: calls, errors, keys (distinct access key ids in order).

    python soak_client.py WANT DEADLINE INTERVAL
"""

import json
import sys
import time

import boto3
from botocore.config import Config

want, deadline, interval = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
session = boto3.session.Session()
cfg = Config(retries={"max_attempts": 1, "mode": "standard"})
sts = session.client("sts", config=cfg)
s3 = session.client("s3", config=cfg)
calls, errors, keys = 0, [], []
end = time.monotonic() + deadline
while time.monotonic() < end:
    try:
        sts.get_caller_identity()
        s3.list_buckets()
        calls += 1
    except Exception as e:  # every failure counts
        errors.append(f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}")
    key = session.get_credentials().get_frozen_credentials().access_key
    if not keys or keys[-1] != key:
        keys.append(key)
        print(f"{time.strftime('%H:%M:%S')} now signing with {key}", file=sys.stderr, flush=True)
    if len(keys) >= want:
        break
    time.sleep(interval)
print(json.dumps({"calls": calls, "errors": errors, "keys": keys}))
