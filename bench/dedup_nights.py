"""Benchmark: BACKUP_STORAGE_FORMAT=dedup against sqlgz over seven nights of the benchmark database.

    flock /tmp/bench.lock .venv/bin/python -m bench.dedup_nights --size 300MB --nights 7 --chunk-sizes 64KiB,256KiB,1MiB

Builds a throwaway database of about --size of plain SQL (bench/dataset.py), starts moto's S3 server on
loopback, and each night times `dump -o FILE` and one `upload` per format (a bucket each). Night 1 is the
first full backup; before every later night the same day of changes runs (`change_sql`, the issue's
realistic day mapped onto the bench tables: `docs` is the append-heavy table, `pgbench_accounts` the
uniformly updated one; --smaller-new-rows inserts smaller `docs` rows). Prints bytes uploaded and stored per night, upload seconds, each upload process's
peak RSS and the dedup upload as a share of that night's full `.sql.gz`. With --chunk-sizes it also cuts
each pair of consecutive nights' plain dumps at those average chunk sizes (bench/chunk_share.py: share of
new bytes per table, in pg_dump's order and with rows sorted by key, against the changed rows' bytes).
docs/storage.md ("When to choose which") and bench/README.md have a run's tables.
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
from bench.chunk_share import parse_chunk_size, read_sql, report
from bench.dataset import DOC_ROW, build, loopback_s3_vars, parse_size

KEY = "bench-dedup-key-" + "b" * 32
# The day of changes (issue 28's realistic day: orders +1 %, 0.5 % of recent orders updated, the oldest 0.1 %
# deleted, 2 % of accounts updated at random, +2 % jsonb events, VACUUM) mapped onto the bench tables.
APPEND = 0.02  # docs (jsonb + text + bytea, the append-heavy table): new rows, as a share of its rows
NEWEST = 0.005  # docs: the newest rows updated (their jsonb gains a key)
OLDEST = 0.001  # docs: the oldest rows deleted
ACCOUNTS = 0.02  # pgbench_accounts: rows updated at random (abalance changes), a different set each night


# --smaller-new-rows: new `docs` rows like issue-28b's bench inserted, ~60 bytes smaller than the built ones (no
# tags or ref in their jsonb; numbered from 1 each night). They fit into the leftover ends of the table's pages, so
# they land all through its dump order: kept to reproduce what that costs (bench/README.md's second table).
SMALLER_ROWS = """SELECT 'Document number ' || g || ' about ops', jsonb_build_object('author', 'user' || (g % 1000),
               'night', {night}, 'score', random()), gen_random_bytes((64 + (g % 193))::int)
          FROM generate_series(1, (SELECT count(*) / {per} FROM docs)::int) g"""
ROWS = """SELECT {row}
          FROM generate_series((SELECT max(id) + 1 FROM docs), (SELECT max(id) + count(*) / {per} FROM docs)) g"""


def change_sql(
    night: int,
    append: float = APPEND,
    newest: float = NEWEST,
    oldest: float = OLDEST,
    accounts: float = ACCOUNTS,
    smaller_rows: bool = False,
) -> str:
    """The SQL of one day of changes before `night`: new `docs` rows shaped like the built ones (numbered on from
    the last id), unless `smaller_rows`; the random accounts are seeded by the night (a run is repeatable, and
    each night touches other accounts)."""

    def per(share: float) -> int:
        return round(1 / share)

    return f"""
        INSERT INTO docs (title, body, blob)
        {
        (
            SMALLER_ROWS.format(night=night, per=per(append))
            if smaller_rows
            else ROWS.format(row=DOC_ROW, per=per(append))
        )
    };
        UPDATE docs SET body = body || '{{"seen": true}}'
         WHERE id > (SELECT max(id) - (SELECT count(*) / {per(newest)} FROM docs) FROM docs);
        DELETE FROM docs WHERE id <= (SELECT min(id) + (SELECT count(*) / {per(oldest)} FROM docs) FROM docs);
        SELECT setseed({night / 100});
        UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE random() < {accounts};
        VACUUM;"""


def describe(
    append: float = APPEND,
    newest: float = NEWEST,
    oldest: float = OLDEST,
    accounts: float = ACCOUNTS,
    smaller_rows: bool = False,
) -> str:
    shape = "~60 bytes smaller than the built ones" if smaller_rows else "shaped like the built ones"
    return (
        f"docs +{100 * append:g} % rows ({shape}), newest {100 * newest:g} % updated, oldest {100 * oldest:g} % "
        f"deleted; {100 * accounts:g} % of pgbench_accounts updated at random; VACUUM"
    )


def cli(env: dict[str, str], *args: str) -> tuple[float, int]:
    """Run one command; (seconds, its own peak RSS in bytes: VmHWM polled every 50 ms, pg_dump's not included)."""
    started = time.monotonic()
    peak = 0
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "backup_svc", *args],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
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
    parser.add_argument("--size", default="300MB", help="plain SQL of the database, e.g. 300MB")
    parser.add_argument("--nights", type=int, default=7, help="nights to back up (night 1: the first full backup)")
    parser.add_argument(
        "--smaller-new-rows",
        action="store_true",
        help="insert docs rows ~60 bytes smaller than the built ones (issue-28b's bench did)",
    )
    parser.add_argument(
        "--chunk-sizes",
        default="",
        help="also cut each pair of consecutive nights' plain dumps at these averages, e.g. 64KiB,1MiB",
    )
    args = parser.parse_args()
    sizes = [parse_chunk_size(s) for s in args.chunk_sizes.split(",") if s.strip()]
    with (
        LocalCluster(find_server_bin_dir(pg_bin_dirs(os.environ))) as cluster,
        tempfile.TemporaryDirectory() as scratch,
    ):
        build(cluster, parse_size(args.size))
        s3 = LoopbackS3().start()
        try:
            s3_vars = loopback_s3_vars(s3.endpoint)
            client = make_client(s3_vars)
            env = {"DATABASE_URL": cluster.url("bench"), **s3_vars}
            formats = {"sqlgz": {}, "dedup": {"BACKUP_STORAGE_FORMAT": "dedup", "BACKUP_DEDUP_KEY": KEY}}
            for name in formats:
                client.create_bucket(Bucket=f"bench-{name}")
            print(f"change before nights 2-{args.nights}: {describe(smaller_rows=args.smaller_new_rows)}", flush=True)
            print(
                "| night | load (1 min) | dump -o s | sqlgz upload s | dedup upload s | sqlgz uploaded | "
                "dedup uploaded | dedup / full sqlgz | sqlgz bucket | dedup bucket | peak RSS sqlgz / dedup |"
            )
            print("|---|---|---|---|---|---|---|---|---|---|---|")
            analyses: list[str] = []
            previous = None
            for night in range(1, args.nights + 1):
                if night > 1:
                    cluster.psql("bench", change_sql(night, smaller_rows=args.smaller_new_rows))
                dumped = os.path.join(scratch, "night.sql.gz")
                dump_s, _ = cli(env, "dump", "-o", dumped)
                row = {}
                for name, extra in formats.items():
                    before = bucket_bytes(client, f"bench-{name}")
                    seconds, rss = cli({**env, "BACKUP_STORAGE_URL": f"s3://bench-{name}/b", **extra}, "upload")
                    after = bucket_bytes(client, f"bench-{name}")
                    row[name] = (seconds, after - before, after, rss)
                print(
                    f"| {night} | {os.getloadavg()[0]:.1f} | {dump_s:.1f} | {row['sqlgz'][0]:.1f} | {row['dedup'][0]:.1f} | "
                    f"{row['sqlgz'][1] / 1e6:.1f} MB | {row['dedup'][1] / 1e6:.2f} MB | "
                    f"{percent_of(row['dedup'][1], row['sqlgz'][1]):.1f} % | {row['sqlgz'][2] / 1e6:.1f} MB | "
                    f"{row['dedup'][2] / 1e6:.1f} MB | {row['sqlgz'][3] / 1e6:.0f} / {row['dedup'][3] / 1e6:.0f} MB |",
                    flush=True,
                )
                if sizes:
                    current = read_sql(dumped)
                    if previous is not None:
                        analyses += ["", *report(previous, current, sizes, f"night {night - 1} -> {night}: ")]
                    previous = current
                time.sleep(1.1)  # backup names have a one-second resolution
            print("\n".join(analyses), flush=True)
        finally:
            s3.stop()


def percent_of(part: int, whole: int) -> float:
    """`part` as a percentage of `whole` (0 when there is no whole)."""
    return 100.0 * part / whole if whole else 0.0


if __name__ == "__main__":
    main()
