"""Single flight: the advisory lock in the backed-up database, against the real test PostgreSQL."""

from __future__ import annotations

import pytest

from backup_svc.pg.conninfo import parse_database_url
from backup_svc.storage.lock import AnotherBackupRunning, StoredBackupLock


def test_a_second_holder_is_refused_until_the_first_lets_go(rich_db, pg_cluster):
    conn = parse_database_url(rich_db)
    with StoredBackupLock(conn, "s3://b/p/ rich"):
        with pytest.raises(AnotherBackupRunning, match="another stored backup is running"):
            with StoredBackupLock(conn, "s3://b/p/ rich"):
                pass
        with StoredBackupLock(conn, "s3://b/other/ rich"):  # another destination: its own lock
            pass
        with pg_cluster.connect() as db:
            held = db.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND a.application_name = 'backup_svc-upload-lock'"
            ).fetchone()[0]
        assert held == 1
    with StoredBackupLock(conn, "s3://b/p/ rich"):  # released with its session
        pass
