"""Benchmark (issue 25, item 3): how the server's COPY alone scales on this machine — the rows of the
dump's biggest table, cut into the parallel restore's jobs and held in memory (no client work to speak
of), loaded by 1 connection, by 2 into the same table, and by 2 into two tables (relation extension
contention vs CPU), alternating, on one throwaway cluster:

    flock /tmp/bench.lock .venv/bin/python -m bench.copy_scaling --file .cache/bench/300MB-restore.sql.gz
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from backup_svc.config import default_pg_bin_dirs
from backup_svc.files.reader import BackupReader
from backup_svc.files.parallel.script import ScriptSplitter
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir

COLUMNS = "(aid int, bid int, abalance int, filler char(84))"  # pgbench_accounts'


class RowJobs:
    """A splitter sink that keeps every table's COPY jobs (rows only)."""

    def __init__(self) -> None:
        self.jobs: dict[str, list[bytes]] = collections.defaultdict(list)

    def __getattr__(self, name):
        return lambda *args: None

    def copy_rows(self, table, statement, rows, settings) -> None:
        self.jobs[table].append(b"".join(rows))


def load(url: str, pieces: list[bytes], tables: list[str]) -> float:
    """COPY `pieces` on len(tables) connections, connection i into tables[i]; seconds taken."""
    todo, lock = list(pieces), threading.Lock()

    def work(table: str) -> None:
        with psycopg.connect(url, autocommit=True) as db:
            while True:
                with lock:
                    if not todo:
                        return
                    piece = todo.pop()
                with db.cursor().copy(f"COPY {table} FROM stdin") as copy:
                    copy.write(piece)

    threads = [threading.Thread(target=work, args=(table,)) for table in tables]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sink = RowJobs()
    splitter = ScriptSplitter(sink)
    for chunk in BackupReader(str(args.file)):
        splitter.feed(chunk)
    splitter.finish()
    table = max(sink.jobs, key=lambda t: sum(map(len, sink.jobs[t])))
    pieces = sink.jobs[table]
    print(f"{table}: {len(pieces)} jobs, {sum(map(len, pieces)) >> 20} MiB of rows")
    ways = {"1 connection": ["a"], "2 connections, one table": ["a", "a"], "2 connections, two tables": ["a", "b"]}
    with tempfile.TemporaryDirectory(prefix="bench-copy-") as root:
        os.chmod(root, 0o755)
        with LocalCluster(find_server_bin_dir(default_pg_bin_dirs()), root=root) as cluster:
            url = cluster.url("postgres")
            with psycopg.connect(url, autocommit=True) as db:
                for _ in range(args.rounds):
                    for way, tables in ways.items():
                        for name in ("a", "b"):
                            db.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} {COLUMNS}")
                        seconds = load(url, pieces, tables)
                        print(f"{way}: {seconds:.2f} s (load average {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
