"""`--peers`: the upload beside the pipelines people write by hand, into the same loopback S3 server.

    .venv/bin/python -m bench.run --size 300MB --rounds 3 --skip-latency --peers

Installs the AWS CLI (v1, from PyPI) once into a throwaway venv under .cache/bench/peers-venv (never
into the project's venv), then times, rotated with the other methods in the same run:
`pg_dump | python -m isal.igzip -1 | aws s3 cp - s3://…` (the one-line script issue 25 measures the
upload against) and `pg_dump | gzip -6 | aws s3 cp -`. Each object is deleted after its round.
"""

from __future__ import annotations

import shlex
import statistics
import subprocess
import sys
from pathlib import Path

ISAL = "pg_dump | isal -1 | aws s3 cp -"
GZIP6 = "pg_dump | gzip -6 | aws s3 cp -"
UPLOAD = "upload to loopback S3"


def aws_cli(cache: Path) -> str:
    """The `aws` of a throwaway venv under `cache`, installed there on first use."""
    venv = cache / "peers-venv"
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True)
    return str(aws)


def add(bench, methods: dict, cache: Path) -> None:
    """Add the two pipelines to `methods` (bench.start_storage() must have run)."""
    aws = aws_cli(cache)
    dump = " ".join(shlex.quote(a) for a in [bench.pg_dump, *bench_flags(), bench.url])

    def pipeline(compress: str, name: str):
        def run() -> int:
            key = f"peer/{name}.sql.gz"
            target = shlex.quote(f"s3://{bench.bucket}/{key}")
            endpoint = shlex.quote(bench.upload_env["AWS_ENDPOINT_URL"])
            script = (
                f"set -o pipefail; {dump} | {compress} | {shlex.quote(aws)} --endpoint-url {endpoint} s3 cp - {target}"
            )
            subprocess.run(["bash", "-c", script], env=bench.upload_env, check=True, stdout=subprocess.DEVNULL)
            size = bench.s3.head_object(Bucket=bench.bucket, Key=key)["ContentLength"]
            bench.s3.delete_object(Bucket=bench.bucket, Key=key)
            return size

        return run

    methods[ISAL] = pipeline(f"{shlex.quote(sys.executable)} -m isal.igzip -1", "isal")
    methods[GZIP6] = pipeline("gzip -6", "gzip6")


def bench_flags() -> list[str]:
    from bench.dataset import BASELINE_FLAGS

    return list(BASELINE_FLAGS)


def report(times: dict[str, list[float]], checks: list) -> None:
    """Print the upload against the pipelines and add the issue's target (≤ 1.05 × the isal pipeline)."""
    up = statistics.median(times[UPLOAD])
    isal = statistics.median(times[ISAL])
    gz6 = statistics.median(times[GZIP6])
    print(f"upload / ({ISAL}) = {up / isal:.3f}; upload / ({GZIP6}) = {up / gz6:.3f}")
    checks.append((f"upload / isal pipeline = {up / isal:.3f} (target <= 1.05)", up / isal <= 1.05))
