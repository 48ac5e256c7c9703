"""Benchmark (issue 25, restore half): the shell restore of a `.sql.gz` into a new database against
the floor `createdb; gunzip -c FILE | psql -1 -v ON_ERROR_STOP=1`, same file, same throwaway cluster,
alternating order each round:

- floor: `gunzip -c | psql -1`
- `backup-svc restore FILE --create`: one pass, verified while psql runs it (this branch)
- the same with the separate verify pass first (the behaviour before issue 25; a stored object whose
  sha256 is recorded still takes this path, since its hash must be compared before anything is touched)
- `backup-svc restore FILE --create --jobs N` for each N of `--jobs` (default 2): the parallel restore
  (issue 25, item 3); `--jobs 1` is the one-pass row above

    .venv/bin/python -m bench.restore_cli --file .cache/bench/300MB-restore.sql.gz [--rounds 3] [--jobs 2,4]
        [--skip-two-pass]

`--file` is any plain pg_dump `.sql.gz` (`bench.restore --size 300MB` leaves one in .cache/bench/).
Wrap it in `flock /tmp/bench.lock` on a shared machine, and note `uptime`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backup_svc.config import default_pg_bin_dirs
from backup_svc.pg.localcluster import LocalCluster, find_server_bin_dir
from bench.restore import drop, floor

TWO_PASS = (
    "import sys; from backup_svc.files.restore import restore_file; "
    "restore_file(sys.argv[1], sys.argv[2], bin_dirs=[sys.argv[3]], create=True, check=lambda _: None)"
)


def cli_restore(cluster: LocalCluster, path: Path, name: str, *, two_pass: bool, jobs: int = 1) -> float:
    url = cluster.url(name, with_password=False)  # the password goes in PGPASSWORD, never on a command line
    argv = (
        [sys.executable, "-c", TWO_PASS, str(path), url, cluster.bin_dir]
        if two_pass
        else [
            sys.executable,
            "-m",
            "backup_svc",
            "restore",
            str(path),
            "--target-url",
            url,
            "--create",
            "--jobs",
            str(jobs),
        ]
    )
    started = time.perf_counter()
    subprocess.run(
        argv,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PG_BIN_DIRS": cluster.bin_dir, "PGPASSWORD": cluster.password},
    )
    return time.perf_counter() - started


METHODS = {
    "floor: createdb; gunzip -c | psql -1 -v ON_ERROR_STOP=1": lambda c, p, n: floor(c, p, n),
    "backup-svc restore --create (one pass, verified while restoring)": lambda c, p, n: cli_restore(
        c, p, n, two_pass=False
    ),
    "verify pass, then restore (before issue 25)": lambda c, p, n: cli_restore(c, p, n, two_pass=True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", default="2", help="comma-separated connection counts for --jobs rows ('' for none)")
    parser.add_argument("--skip-two-pass", action="store_true", help="leave out the verify-then-restore row")
    args = parser.parse_args()
    methods = dict(METHODS)
    if args.skip_two_pass:
        del methods["verify pass, then restore (before issue 25)"]
    for jobs in [int(j) for j in args.jobs.split(",") if j.strip()]:
        methods[f"backup-svc restore --create --jobs {jobs}"] = lambda c, p, n, jobs=jobs: cli_restore(
            c, p, n, two_pass=False, jobs=jobs
        )
    times: dict[str, list[float]] = {method: [] for method in methods}
    with tempfile.TemporaryDirectory(prefix="bench-restore-cli-") as root:
        os.chmod(root, 0o755)
        with LocalCluster(find_server_bin_dir(default_pg_bin_dirs()), root=root) as cluster:
            for r in range(args.rounds):
                order = list(methods) if r % 2 == 0 else list(reversed(methods))
                for method in order:
                    times[method].append(methods[method](cluster, args.file, "bench_restore_cli"))
                    drop(cluster, "bench_restore_cli")
    floor_s = statistics.median(times[next(iter(methods))])
    print(
        f"\n## {args.file.name}: {args.file.stat().st_size / 1e6:.1f} MB, {args.rounds} alternating rounds, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; uptime: {os.getloadavg()[0]:.2f} (1-min load)"
    )
    print("| method | median s | min s | median / floor |\n|---|---|---|---|")
    for method, values in times.items():
        cell = method.replace("|", r"\|")
        print(
            f"| {cell} | {statistics.median(values):.2f} | {min(values):.2f} | "
            f"{statistics.median(values) / floor_s:.2f} |"
        )


if __name__ == "__main__":
    main()
