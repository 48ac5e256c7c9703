"""The benchmark database: pgbench tables plus a `docs` table (text, jsonb, bytea), built once, kept."""

from __future__ import annotations

import os
import re
import subprocess

from backup_svc.dump.invocation import PG_DUMP_FLAGS
from backup_svc.pg.localcluster import LocalCluster

DB = "bench"
# pg_dump as the service runs it, without --verbose: the command-line baseline every method is compared with.
BASELINE_FLAGS = [f for f in PG_DUMP_FLAGS if f != "--verbose"]
# Rough SQL bytes per unit, measured on PostgreSQL 15: one pgbench scale unit dumps to ~10 MB
# (100k accounts); one docs row to ~460 bytes.
SQL_PER_SCALE = 10.0e6
SQL_PER_DOC = 460
# Share of the dump that comes from pgbench (very compressible) vs docs (partly random).
PGBENCH_SHARE = 0.65
# One `docs` row numbered g (title, body, blob): the build's rows and bench/dedup_nights.py's new ones alike.
DOC_ROW = """'Document number ' || g || ' about ' || (ARRAY['sales', 'ops', 'hr', 'legal'])[1 + g % 4],
               jsonb_build_object('author', 'user' || (g % 1000), 'tags', jsonb_build_array('a', 'b', g % 17),
                                  'score', random(), 'ref', md5(g::text)),
               gen_random_bytes((64 + (g % 193))::int)"""


def parse_size(text: str) -> int:
    """'10MB', '300MB', '1.5GB' -> bytes of plain SQL."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?B)\s*", text, re.I)
    if not match:
        raise ValueError(f"size must look like 10MB or 1.5GB, got {text!r}")
    factor = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[match.group(2).upper()]
    return int(float(match.group(1)) * factor)


def build(cluster: LocalCluster, target_sql_bytes: int) -> None:
    """Create the `bench` database of about `target_sql_bytes` of plain SQL, unless it exists already."""
    with cluster.connect() as db:
        if db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            return
        db.execute(f"CREATE DATABASE {DB}")
    scale = max(1, round(target_sql_bytes * PGBENCH_SHARE / SQL_PER_SCALE))
    docs = max(1000, int(target_sql_bytes * (1 - PGBENCH_SHARE) / SQL_PER_DOC))
    print(f"building the benchmark database: pgbench scale {scale}, {docs} docs rows ...", flush=True)
    subprocess.run(
        [
            os.path.join(cluster.bin_dir, "pgbench"),
            "-i",
            "-q",
            "--foreign-keys",
            "-s",
            str(scale),
            cluster.socket_url(DB),
        ],
        check=True,
        capture_output=True,
    )
    cluster.psql(
        DB,
        f"""
        CREATE EXTENSION IF NOT EXISTS pgcrypto;
        CREATE TABLE docs (
            id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            title text NOT NULL,      -- compressible
            body  jsonb NOT NULL,     -- compressible structure, some random values
            blob  bytea NOT NULL      -- random: incompressible beyond its hex encoding
        );
        INSERT INTO docs (title, body, blob)
        SELECT {DOC_ROW}
        FROM generate_series(1, {docs}) AS g;
        VACUUM ANALYZE;
    """,
    )


def loopback_s3_vars(endpoint: str) -> dict[str, str]:
    """The AWS_* variables of a bench's S3 server on loopback (moto: any credentials, path-style URLs)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_S3_URL_STYLE": "path",
    }
