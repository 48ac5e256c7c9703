"""`restore --create` keeps the dump's encoding (issue 11): a LATIN1 or SQL_ASCII database comes back as one."""

from __future__ import annotations

import pytest

from tests.processes import run_cli


@pytest.mark.parametrize("jobs", ["1", "2"])  # --jobs 2: the COPY rows go through connections of the restore's own
@pytest.mark.parametrize("encoding,octets", [("LATIN1", 4), ("SQL_ASCII", 5)])
def test_restore_create_uses_the_dump_s_encoding(pg_cluster, tmp_path, encoding, octets, jobs):
    source = f"enc_{encoding.lower()}"
    with pg_cluster.connect() as db:
        db.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
        db.execute(f"CREATE DATABASE \"{source}\" TEMPLATE template0 ENCODING '{encoding}' LC_COLLATE 'C' LC_CTYPE 'C'")
    # 'café' sent as UTF-8: LATIN1 stores it converted (4 bytes), SQL_ASCII stores the bytes as given (5)
    pg_cluster.psql(
        source, "SET client_encoding = 'UTF8'; CREATE TABLE words (w text); INSERT INTO words VALUES ('café');"
    )
    made = run_cli("dump", "-o", "enc.sql.gz", env={"DATABASE_URL": pg_cluster.url(source)}, cwd=tmp_path)
    assert made.returncode == 0, made.stderr

    target = f"{source}_restored"
    with pg_cluster.connect() as db:
        db.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
    result = run_cli(
        "restore", str(tmp_path / "enc.sql.gz"), "--target-url", pg_cluster.url(target), "--create", "--jobs", jobs
    )

    assert result.returncode == 0, result.stderr
    assert f"with the backup's encoding {encoding}" in result.stderr
    with pg_cluster.connect() as db:
        assert db.execute(
            "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s", (target,)
        ).fetchone() == (encoding,)
    rows = []
    for dbname in (source, target):
        with pg_cluster.connect(dbname) as db:
            rows.append(db.execute("SELECT octet_length(w), md5(convert_to(w, %s)) FROM words", (encoding,)).fetchone())
    assert rows[0][0] == octets and rows[1] == rows[0]
