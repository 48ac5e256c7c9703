"""The package's rooms: commands that read backup files never load the web stack or the database driver."""

from __future__ import annotations

import json
import subprocess
import sys

from tests import REPO

HEAVY = ("flask", "werkzeug", "gunicorn", "flask_httpauth", "psycopg")


def _loaded_after(statement: str) -> set[str]:
    program = f"import sys, json; {statement}; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd="/").stdout
    return set(json.loads(out))


def test_the_package_and_its_cli_load_nothing_heavy():
    assert not _loaded_after("import backup_svc, backup_svc.cli, backup_svc.config") & set(HEAVY)


def test_verify_loads_neither_flask_nor_psycopg():
    assert not _loaded_after("from backup_svc.files.verify import verify_file") & set(HEAVY)


def test_the_web_package_does_load_flask():
    """The check above can fail: importing the web room does pull Flask in."""
    assert "flask" in _loaded_after("import backup_svc.web")


def test_reading_settings_or_verifying_a_file_does_not_load_the_s3_client():
    program = (
        "import sys, json; import backup_svc.cli, backup_svc.config; "
        "from backup_svc.files.verify import verify_file; "
        "from backup_svc.config import Settings; "
        "Settings.from_env({'DATABASE_URL': 'postgresql://u@h/d', 'ADMIN_TOKEN': 't' * 20, "
        "'BACKUP_STORAGE_URL': 's3://bkt/x', 'BACKUP_SCHEDULE': '0 3 * * *'}); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = set(
        json.loads(
            subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, cwd=REPO).stdout
        )
    )
    assert not loaded & {"boto3", "botocore", "s3transfer"}
