"""Unpacking the PostgreSQL builds for the version matrix (tests/service/pgbinaries.py) on any Python 3.11.

Debian 12's Python 3.11.2 has no tarfile extraction filters; there the "data" filter's rules are
applied by hand. Both ways run here: the by-hand one with `tarfile.data_filter` hidden, which is how
the test fakes an older Python on a newer one.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile

import pytest

from ..service import pgbinaries


def _tarball(*members: tuple[str, str, bytes | str]) -> bytes:
    """A .tar.gz of (kind, name, content-or-link-target) members; kind is "file", "setuid" or "symlink"."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for kind, name, content in members:
            info = tarfile.TarInfo(name)
            if kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
                continue
            info.size, info.mode = len(content), 0o4775 if kind == "setuid" else 0o644
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def _extract(data: bytes, into) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
        pgbinaries.extract_without_top_folder(tar, into)


@pytest.fixture(params=["tarfile's filter", "by hand (Python 3.11.2)"])
def python(request, monkeypatch):
    if request.param.startswith("by hand"):
        monkeypatch.delattr(tarfile, "data_filter", raising=False)  # Debian 12's 3.11.2 has none to hide
    return request.param


def test_tree_lands_without_its_top_folder_and_loses_setuid(python, tmp_path):
    _extract(
        _tarball(
            ("file", "pg/bin/pg_dump", b"#!"),
            ("setuid", "pg/bin/psql", b"#!"),
            ("symlink", "pg/lib/libpq.so", "libpq.so.5"),
            ("file", "pg/lib/libpq.so.5", b"so"),
        ),
        tmp_path,
    )

    assert (tmp_path / "bin" / "pg_dump").read_bytes() == b"#!"
    assert os.readlink(tmp_path / "lib" / "libpq.so") == "libpq.so.5"
    assert not (tmp_path / "pg").exists()
    mode = (tmp_path / "bin" / "psql").stat().st_mode
    assert not mode & stat.S_ISUID and not mode & stat.S_IWOTH and mode & stat.S_IXUSR


@pytest.mark.parametrize(
    "member",
    [
        ("file", "pg/../../escaped", b"x"),
        ("symlink", "pg/lib/evil", "/etc/passwd"),
        ("symlink", "pg/lib/evil", "../../../etc/passwd"),
    ],
)
def test_a_member_leaving_the_folder_is_refused(python, tmp_path, member):
    into = tmp_path / "into"
    into.mkdir()
    with pytest.raises(tarfile.TarError):
        _extract(_tarball(member), into)
    assert not (tmp_path / "escaped").exists() and not (into / "lib" / "evil").exists()
