"""Benchmark: BACKUP_STORAGE_FORMAT=dedup against sqlgz over four nights of the benchmark database.

    .venv/bin/python -m bench.dedup_nights --size 150MB

Builds a throwaway database of about --size of plain SQL (bench/dataset.py), starts moto's S3 server on
loopback, and each night times `dump -o FILE` and one `upload` per format (a bucket each), after a stated
change: none, then `docs` +2 % rows / newest 0.5 % updated / oldest 0.1 % deleted, then 0.2 % of
`pgbench_accounts` updated at random. Prints bytes uploaded and stored per night and each upload
process's peak RSS (docs/storage.md, "Stored format", has a run's table). Not yet the issue's 7 nights.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from backup_svc.pg.binaries import pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir
from backup_svc.storage.client import make_client
from backup_svc.storage.loopback import LoopbackS3
from bench.dataset import build, parse_size

KEY = "bench-dedup-key-" + "b" * 32
CHANGES = [
    ("none", None),
    ("docs: +2 % rows, newest 0.5 % updated, oldest 0.1 % deleted", """
        INSERT INTO docs (title, body, blob)
        SELECT 'Document number ' || g || ' about ops', jsonb_build_object('author', 'user' || (g % 1000), 'score', random()),
               gen_random_bytes((64 + (g % 193))::int)
          FROM generate_series(1, (SELECT count(*) / 50 FROM docs)::int) g;
        UPDATE docs SET body = body || '{"seen": true}'
         WHERE id > (SELECT max(id) - (SELECT count(*) / 200 FROM docs) FROM docs);
        DELETE FROM docs WHERE id <= (SELECT min(id) + (SELECT count(*) / 1000 FROM docs) FROM docs);
        VACUUM;"""),
    ("0.2 % of pgbench_accounts updated at random", "UPDATE pgbench_accounts SET abalance = abalance + 1 "
                                                    "WHERE aid % 500 = 0; VACUUM;"),
]


def cli(env: dict[str, str], *args: str) -> tuple[float, int]:
    """Run one command; (seconds, its own peak RSS in bytes: VmHWM polled every 50 ms, pg_dump's not included)."""
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([sys.executable, "-m", "backup_svc", *args], env={**os.environ, **env},
                                   stdout=subprocess.DEVNULL, stderr=err)
        while process.poll() is None:
            peak = max(peak, _hwm(process.pid))
            time.sleep(0.05)
        if process.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{args[0]} failed: {err.read().decode()}")
    return time.monotonic() - started, peak


def _hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(line for line in status if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return 0


def bucket_bytes(client, bucket: str) -> int:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(o["Size"] for page in pages for o in page.get("Contents", []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="150MB", help="plain SQL of the database, e.g. 150MB")
    args = parser.parse_args()
    with LocalCluster(find_server_bin_dir(pg_bin_dirs(os.environ))) as cluster, \
            tempfile.TemporaryDirectory() as scratch:
        build(cluster, parse_size(args.size))
        s3 = LoopbackS3().start()
        try:
            s3_vars = {"AWS_ENDPOINT_URL": s3.endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_S3_URL_STYLE": "path"}
            client = make_client(s3_vars)
            env = {"DATABASE_URL": cluster.url("bench"), **s3_vars}
            formats = {"sqlgz": {}, "dedup": {"BACKUP_STORAGE_FORMAT": "dedup", "BACKUP_DEDUP_KEY": KEY}}
            for name in formats:
                client.create_bucket(Bucket=f"bench-{name}")
            print("| night | change before it | dump -o s | sqlgz upload s | dedup upload s | sqlgz uploaded | "
                  "dedup uploaded | sqlgz bucket | dedup bucket | peak RSS sqlgz / dedup |")
            print("|---|---|---|---|---|---|---|---|---|---|")
            for night, (label, sql) in enumerate([("—", None)] + CHANGES, start=1):
                if sql:
                    cluster.psql("bench", sql)
                dump_s, _ = cli(env, "dump", "-o", os.path.join(scratch, "night.sql.gz"))
                row = {}
                for name, extra in formats.items():
                    before = bucket_bytes(client, f"bench-{name}")
                    seconds, rss = cli({**env, "BACKUP_STORAGE_URL": f"s3://bench-{name}/b", **extra}, "upload")
                    after = bucket_bytes(client, f"bench-{name}")
                    row[name] = (seconds, after - before, after, rss)
                print(f"| {night} | {label} | {dump_s:.1f} | {row['sqlgz'][0]:.1f} | {row['dedup'][0]:.1f} | "
                      f"{row['sqlgz'][1] / 1e6:.1f} MB | {row['dedup'][1] / 1e6:.2f} MB | {row['sqlgz'][2] / 1e6:.1f} MB | "
                      f"{row['dedup'][2] / 1e6:.1f} MB | {row['sqlgz'][3] / 1e6:.0f} / {row['dedup'][3] / 1e6:.0f} MB |",
                      flush=True)
                time.sleep(1.1)  # backup names have a one-second resolution
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
