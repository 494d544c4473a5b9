"""No-lost-write checker for domicile's S3 API, driven by boto3.

Writer threads overwrite their own keys with increasing versions; reader
threads read them back. Every request goes to one of ENDPOINTS (round robin);
when an endpoint stops answering (its server was killed), the request goes
to the next one, as a load balancer would send it.

The rule checked (SPEC, "no lost writes"): once a write is acknowledged, any
read that starts later returns that version or a newer one, with the exact
bytes of that version, and never nothing. Writes that were refused or failed
are unacknowledged: a later read may or may not see them.

Environment:
  ENDPOINTS   comma-separated S3 endpoints
  BUCKET      bucket name
  SUBJECTS    JSON list of subject ids to write under (users/{subject}/...)
  STOP_FILE   the run ends when this file exists
  OUT_FILE    where the JSON summary goes
  PROGRESS_FILE  where acknowledged writes per endpoint are written as
              they happen (JSON, replaced about twice a second)
  WRITERS, READERS, KEYS_PER_WRITER (optional)

Writes the summary to OUT_FILE and exits 0 if it could run; the caller
asserts on the summary (violations, counts per endpoint).
"""

import hashlib
import json
import os
import random
import threading
import time

import boto3
import botocore
from botocore.config import Config

ENDPOINTS = os.environ["ENDPOINTS"].split(",")
BUCKET = os.environ["BUCKET"]
SUBJECTS = json.loads(os.environ["SUBJECTS"])
STOP_FILE = os.environ["STOP_FILE"]
OUT_FILE = os.environ["OUT_FILE"]
WRITERS = int(os.environ.get("WRITERS", "4"))
READERS = int(os.environ.get("READERS", "2"))
KEYS_PER_WRITER = int(os.environ.get("KEYS_PER_WRITER", "6"))

CONFIG = Config(
    retries={"max_attempts": 1, "mode": "standard"},
    connect_timeout=2,
    read_timeout=20,
    s3={"addressing_style": "path"},
    signature_version="s3v4",
)

lock = threading.Lock()
acked = {}  # key -> highest acknowledged version
attempted = {}  # key -> set of versions ever sent
stats = {
    "puts_acked": 0,
    "puts_refused": 0,
    "puts_failed": 0,
    "reads_checked": 0,
    "reads_failed": 0,
    "acked_by_endpoint": {e: 0 for e in ENDPOINTS},
    "reads_by_endpoint": {e: 0 for e in ENDPOINTS},
    "refusals": {},
    "failures": {},
}
violations = []


def body(key, version):
    """The exact bytes of one version: a header naming it, then filler."""
    head = f"{key} v{version}\n".encode()
    seed = hashlib.sha256(head).digest()
    n = 50 + int.from_bytes(seed[:2], "big") % 6000
    return head + (seed * (n // len(seed) + 1))[:n]


def parse_version(key, data):
    head = data.split(b"\n", 1)[0].decode("utf-8", "replace")
    prefix = f"{key} v"
    if not head.startswith(prefix):
        return None
    try:
        return int(head[len(prefix):])
    except ValueError:
        return None


def clients():
    return [
        boto3.session.Session().client(
            "s3",
            endpoint_url=e,
            aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
            config=CONFIG,
        )
        for e in ENDPOINTS
    ]


def bump(table, what):
    with lock:
        table[what] = table.get(what, 0) + 1


def call(cs, start, op):
    """Runs op(client) on the endpoints from `start` on, skipping those that
    do not answer. Returns (endpoint, result) or raises the last S3 error;
    returns (None, None) when no endpoint answers."""
    for i in range(len(cs)):
        j = (start + i) % len(cs)
        try:
            return ENDPOINTS[j], op(cs[j])
        except (
            botocore.exceptions.EndpointConnectionError,
            botocore.exceptions.ConnectionClosedError,
            botocore.exceptions.ReadTimeoutError,
            botocore.exceptions.ConnectTimeoutError,
        ) as e:
            bump(stats["failures"], type(e).__name__)
            continue
    return None, None


def stopped():
    return os.path.exists(STOP_FILE)


def writer(w):
    cs = clients()
    rng = random.Random(w)
    keys = [
        f"users/{SUBJECTS[(w + k) % len(SUBJECTS)]}/notes/w{w}-k{k}.txt"
        for k in range(KEYS_PER_WRITER)
    ]
    version = 0
    n = 0
    while not stopped():
        key = rng.choice(keys)
        version += 1
        data = body(key, version)
        with lock:
            attempted.setdefault(key, set()).add(version)
        n += 1
        try:
            endpoint, _ = call(
                cs, n, lambda c: c.put_object(Bucket=BUCKET, Key=key, Body=data)
            )
        except botocore.exceptions.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "?")
            bump(stats["refusals"], code)
            with lock:
                stats["puts_refused"] += 1
            continue
        if endpoint is None:
            with lock:
                stats["puts_failed"] += 1
            time.sleep(0.05)
            continue
        with lock:
            acked[key] = max(acked.get(key, 0), version)
            stats["puts_acked"] += 1
            stats["acked_by_endpoint"][endpoint] += 1


def check_read(cs, start, key, at_least, final):
    """One read of `key`, which must return version >= at_least (if > 0)
    with that version's exact bytes."""
    try:
        endpoint, got = call(
            cs, start, lambda c: c.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        )
    except botocore.exceptions.ClientError as e:
        code = e.response.get("Error", {}).get("Code", "?")
        if code in ("NoSuchKey", "404") and at_least > 0:
            with lock:
                violations.append(
                    f"{key}: acknowledged v{at_least}, read returned nothing ({code})"
                )
        elif code not in ("NoSuchKey", "404"):
            bump(stats["failures"], f"get {code}")
            with lock:
                stats["reads_failed"] += 1
        return
    if endpoint is None:
        with lock:
            stats["reads_failed"] += 1
        return
    v = parse_version(key, got)
    with lock:
        stats["reads_checked"] += 1
        stats["reads_by_endpoint"][endpoint] += 1
        if v is None:
            violations.append(f"{key}: read returned bytes of no version")
        elif got != body(key, v):
            violations.append(f"{key}: read v{v} with wrong bytes")
        elif v not in attempted.get(key, ()):
            violations.append(f"{key}: read v{v}, a version never written")
        elif v < at_least:
            violations.append(
                f"{key}: acknowledged v{at_least}, later {'final ' if final else ''}read returned older v{v}"
            )


def progress():
    path = os.environ.get("PROGRESS_FILE")
    while path and not stopped():
        with lock:
            snapshot = json.dumps(stats["acked_by_endpoint"])
        with open(path + ".tmp", "w") as f:
            f.write(snapshot)
        os.replace(path + ".tmp", path)
        time.sleep(0.5)


def reader(r):
    cs = clients()
    rng = random.Random(1000 + r)
    n = 0
    while not stopped():
        with lock:
            keys = list(acked.keys())
        if not keys:
            time.sleep(0.02)
            continue
        key = rng.choice(keys)
        with lock:
            at_least = acked.get(key, 0)
        n += 1
        check_read(cs, n, key, at_least, False)


threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
threads += [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
threads.append(threading.Thread(target=progress))
for t in threads:
    t.start()
for t in threads:
    t.join()

# The final pass: every acknowledged key reads back at its last
# acknowledged version or newer, through whichever endpoint answers.
cs = clients()
before = stats["reads_checked"]
for i, (key, v) in enumerate(sorted(acked.items())):
    check_read(cs, i, key, v, True)

summary = dict(stats)
summary["keys"] = len(acked)
summary["final_checked"] = stats["reads_checked"] - before
summary["violations"] = violations
with open(OUT_FILE, "w") as f:
    json.dump(summary, f, indent=1)
