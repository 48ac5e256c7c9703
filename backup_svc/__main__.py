"""`python -m backup_svc`, and the `backup-svc` command (pyproject.toml's project.scripts)."""

import gc
import sys

from backup_svc.cli import main


def run() -> int:
    """`main()`, then every object still alive frozen before the interpreter ends: its last garbage
    collections would otherwise walk all psycopg and botocore (S3's parsed model) put in memory,
    ~0.15 s of an `upload` between its last line and its exit (bench/README.md)."""
    try:
        return main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    sys.exit(run())
