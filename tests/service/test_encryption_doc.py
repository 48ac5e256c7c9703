"""docs/encryption.md's commands, run as written, one block after another in one shell session (exported
variables and files carry over, as in a reader's terminal), against a real PostgreSQL, moto's S3 server
and Debian's `age`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from backup_svc.web.docs import markdown_parser
from tests import REPO
from tests.databases import snapshot
from tests.s3support import object_keys, s3_env

DOC = REPO / "docs" / "encryption.md"
MARKER = "<!-- encryption-doc-test -->"
# A file name of the doc's example shape stands for "the object you downloaded": the test saves the
# newest encrypted object under it, as the demo-test does for plain backups.
EXAMPLE = re.compile(r"\bappdb_backup_\d{8}_\d{6}\.sql\.gz\.age\b")
BIN = Path(sys.executable).parent  # .venv/bin: backup-svc


def marked_blocks() -> list[str]:
    tokens = markdown_parser().parse(DOC.read_text(encoding="utf-8"))
    return [
        token.content
        for before, token in zip(tokens, tokens[1:])
        if token.type == "fence" and before.type == "html_block" and before.content.strip() == MARKER
    ]


def test_every_marked_command_in_encryption_md_runs_as_written(s3, moto_s3, pg_cluster, tmp_path):
    client, bucket = s3
    pg_cluster.create_database(
        "appdb",
        """
        CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
        INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 300) g;
    """,
    )
    blocks = marked_blocks()
    assert len(blocks) >= 6, "docs/encryption.md lost its tested commands"
    env = {
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "DATABASE_URL": pg_cluster.url("appdb"),
        "ADMIN_TOKEN": "doc-test-token-0123456789",
        "BACKUP_STORAGE_URL": f"s3://{bucket}/backups",
        **s3_env(moto_s3.endpoint),
        "TARGET_URL": pg_cluster.url("appdb_restored_doc"),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg_cluster.port),
        "PGUSER": "postgres",
        "PGPASSWORD": pg_cluster.password,
    }
    state = tmp_path / ".shell-state"
    state.write_text("")
    for n, block in enumerate(blocks):
        for name in set(EXAMPLE.findall(block)):
            newest = max(k for k in object_keys(client, bucket) if k.endswith(".sql.gz.age"))
            (tmp_path / name).write_bytes(client.get_object(Bucket=bucket, Key=newest)["Body"].read())
        script = f"source {state}\n{block}\nexport -p > {state}\n"
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ran.returncode == 0, f"block {n} failed:\n{block}\n--- stdout\n{ran.stdout}\n--- stderr\n{ran.stderr}"
        assert "Traceback" not in ran.stderr
        time.sleep(1.1)  # backup names carry the second: two uploads in one second would collide
    keys = object_keys(client, bucket)
    assert len([k for k in keys if k.endswith(".sql.gz.age")]) == 3 and not [k for k in keys if k.endswith(".sql.gz")]
    source = snapshot(pg_cluster, "appdb")
    assert snapshot(pg_cluster, "appdb_restored_doc") == source
    assert snapshot(pg_cluster, "restored_by_age") == source
    secret = (tmp_path / "backup-key.txt").read_text().strip().splitlines()[-1]
    assert secret.startswith("AGE-SECRET-KEY-1")
