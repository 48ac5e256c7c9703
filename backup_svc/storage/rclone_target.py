"""A storage target on any rclone remote (`rclone:<remote>:<path>`), driven through Debian's `rclone`.

The narrow target shape: `put` streams bytes under a temporary name and moves them into place only
when the caller's source finished and the stored size and SHA-256 match; `list` (sizes, times, and
the companion `<name>.sha256` record), `open` (a read stream), `delete`. The remote itself is
configured by rclone's own `RCLONE_CONFIG_<NAME>_*` variables (or `RCLONE_CONFIG`, a config file):
they reach rclone through its environment only, never its argv. Stall bounds: `--contimeout`,
`--timeout` (no progress for that long fails the transfer) and a few low-level retries.
Memory: one chunk (64 KiB) in this process plus rclone's own buffers (`--buffer-size`, 16 MiB default).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping

from .client import StorageError

CHUNK = 64 * 1024
TEMP_PREFIX = ".partial-"
RECORD_SUFFIX = ".owner.json"  # the companion ownership record an upload writes (rclone_run.py)
PASSED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "SSL_CERT_FILE", "RCLONE_CONFIG")


@dataclass(frozen=True)
class RcloneLocation:
    remote: str  # the remote's name, without the colon
    path: str  # the folder on it, without a trailing slash ("" = its root)

    @property
    def url(self) -> str:
        return f"rclone:{self.remote}:{self.path}"

    def target(self, name: str) -> str:
        return f"{self.remote}:{self.path + '/' if self.path else ''}{name}"


def is_rclone_url(url: str) -> bool:
    return url.strip().startswith("rclone:")


def parse_rclone_url(url: str) -> RcloneLocation:
    """`rclone:<remote>:<path>` → RcloneLocation; ValueError says what is wrong."""
    rest = url[len("rclone:") :] if url.startswith("rclone:") else None
    if rest is None or ":" not in rest:
        raise ValueError("must look like rclone:<remote>:<path> (a remote configured by RCLONE_CONFIG_<NAME>_*)")
    remote, path = rest.split(":", 1)
    if not remote or not remote.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"the remote name {remote!r} must be letters, digits, '_' or '-'")
    return RcloneLocation(remote, path.rstrip("/") if path.strip("/") else "")


@dataclass(frozen=True)
class StoredFile:
    name: str
    size: int
    time: str  # the remote's modification time, as rclone reports it
    sha256: str | None  # from the companion `<name>.sha256`, when there is one


def child_env(env: Mapping[str, str]) -> dict[str, str]:
    """What rclone's process gets: its own configuration variables and the basics, nothing else."""
    return {k: v for k, v in env.items() if k.startswith("RCLONE_") or k in PASSED_ENV}


class RcloneTarget:
    def __init__(
        self,
        location: RcloneLocation,
        env: Mapping[str, str],
        *,
        connect_timeout_s: int = 10,
        stall_timeout_s: int = 60,
        retries: int = 3,
        binary: str = "rclone",
    ):
        self.location, self.env, self.binary = location, child_env(env), binary
        self.flags = [
            f"--contimeout={connect_timeout_s}s",
            f"--timeout={stall_timeout_s}s",
            f"--low-level-retries={retries}",
            "--retries=1",
        ]
        self.deadline_s = connect_timeout_s + stall_timeout_s * (retries + 1) + 30

    def _run(self, *args: str, data: bytes | None = None) -> bytes:
        argv = [self.binary, *args, *self.flags]
        try:
            done = subprocess.run(argv, input=data, capture_output=True, env=self.env, timeout=self.deadline_s)
        except subprocess.TimeoutExpired as exc:
            raise StorageError(f"rclone {args[0]} did not finish in {self.deadline_s} s") from exc
        if done.returncode != 0:
            raise StorageError(f"rclone {args[0]} failed: {_last_line(done.stderr)}")
        return done.stdout

    def list(self) -> list[StoredFile]:
        """Backups-to-be under the path (temporary names and companions left out), with their records."""
        entries = {e["Name"]: e for e in self._ls()}
        files = []
        for name, entry in sorted(entries.items()):
            if name.startswith(TEMP_PREFIX) or name.endswith((".sha256", RECORD_SUFFIX)):
                continue
            sha = self._read_companion(name) if f"{name}.sha256" in entries else None
            files.append(StoredFile(name, int(entry["Size"]), entry["ModTime"], sha))
        return files

    def write(self, name: str, data: bytes) -> None:
        """Write a small file `name` (it may hold '/') in one call: for records, not backups (no temporary name)."""
        self._run("rcat", self.location.target(name), data=data)

    def read(self, name: str) -> bytes:
        return self._run("cat", self.location.target(name))

    def remove(self, name: str) -> None:
        self._run("deletefile", self.location.target(name))

    def entries(self, folder: str, *, dirs_only: bool = False) -> list[dict]:
        """lsjson below `folder` (recursively for dirs_only); a folder not made yet lists as empty."""
        flags = ["--dirs-only", "--recursive"] if dirs_only else ["--files-only"]
        try:
            return json.loads(self._run("lsjson", *flags, self.location.target(folder)) or b"[]")
        except StorageError as exc:
            if "directory not found" in str(exc):
                return []
            raise

    def names(self) -> list[str]:
        """Every file name in the folder (backups, companions, temporary objects, anything else)."""
        return [e["Name"] for e in self._ls()]

    def leftovers(self) -> list[str]:
        return [name for name in self.names() if name.startswith(TEMP_PREFIX)]

    def _ls(self, only: str | None = None) -> list[dict]:
        """lsjson of the folder (or of one exact name in it); a folder not made yet lists as empty."""
        args = ["lsjson", "--files-only", self.location.target("")] + (["--include", _literal(only)] if only else [])
        try:
            return json.loads(self._run(*args) or b"[]")
        except StorageError as exc:
            if "directory not found" in str(exc):
                return []
            raise

    def _read_companion(self, name: str) -> str | None:
        text = self._run("cat", self.location.target(f"{name}.sha256")).decode("ascii", "replace").split()
        return text[0] if text and len(text[0]) == 64 else None

    def companion_sha256(self, name: str, *, listed: bool = False) -> str | None:
        """The sha256 `<name>.sha256` records, or None when there is no such record (`listed`: a listing
        just showed it, so it is read without looking first)."""
        return self._read_companion(name) if listed or self.exists(f"{name}.sha256") else None

    def exists(self, name: str) -> bool:
        return any(e["Name"] == name for e in self._ls(name))

    def put(
        self,
        name: str,
        chunks: Iterable[bytes],
        records: Callable[[], dict[str, bytes]] | None = None,
        *,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> StoredFile:
        """Stream `chunks` to a temporary name; only when they all arrived, and the stored size matches,
        move it to `name` (never over an existing one), write `records()` (companion name → bytes) and
        last `<name>.sha256`, the mark of a complete backup. Any failure — the
        source raising, rclone refusing or stalling, `cancelled()` turning true (rcat is killed at once, even
        while it still sends what it buffered) — removes the temporary object and raises."""
        if self.exists(name):
            raise StorageError(f"{self.location.target(name)} already exists; a stored backup is never overwritten")
        temp = f"{TEMP_PREFIX}{secrets.token_hex(6)}-{name}"
        digest, size = hashlib.sha256(), 0
        argv = [self.binary, "rcat", self.location.target(temp), *self.flags]
        child = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=self.env
        )
        watch = threading.Thread(target=_kill_when, args=(child, cancelled), name="rclone-rcat-stop", daemon=True)
        watch.start()
        try:
            try:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    child.stdin.write(chunk)
                child.stdin.close()
            except BrokenPipeError:
                child.wait(timeout=self.deadline_s)
                if cancelled():
                    raise StorageError("stopped before the upload was complete") from None
                raise StorageError(f"rclone rcat failed: {_last_line(child.stderr.read())}") from None
            child.wait(timeout=self.deadline_s)
            if cancelled():
                raise StorageError("stopped before the upload was complete")
            if child.returncode != 0:
                raise StorageError(f"rclone rcat failed: {_last_line(child.stderr.read())}")
            stored = {e["Name"]: int(e["Size"]) for e in self._ls(temp)}
            if stored.get(temp) != size:
                raise StorageError(f"the remote holds {stored.get(temp)} bytes of {size} sent; not stored")
            if cancelled():  # the last moment to stop: after the move it is a backup
                raise StorageError("stopped before the upload was complete")
            self._run("moveto", "--ignore-existing", self.location.target(temp), self.location.target(name))
            if self.exists(temp):  # --ignore-existing skipped it: another writer took the name meanwhile
                raise StorageError(f"{self.location.target(name)} appeared meanwhile; it was not overwritten")
            for companion, data in (records() if records else {}).items():
                self._run("rcat", self.location.target(companion), data=data)
            self._run("rcat", self.location.target(f"{name}.sha256"), data=f"{digest.hexdigest()}  {name}\n".encode())
            return StoredFile(name, size, "", digest.hexdigest())
        except BaseException:
            if child.poll() is None:
                child.kill()
                child.wait()
            self._remove_quietly(temp)
            raise
        finally:
            child.stderr.close()

    def _remove_quietly(self, name: str) -> None:
        try:
            self._run("deletefile", self.location.target(name))
        except StorageError:
            pass  # already gone, or the remote is down: a later run's clean_leftovers removes it

    def clean_leftovers(self) -> list[str]:
        """Delete temporary objects earlier runs could not remove; returns their names."""
        names = self.leftovers()
        for name in names:
            self._remove_quietly(name)
        return names

    def open(self, name: str) -> Iterator[bytes]:
        """The stored bytes as a stream (`rclone cat`); StorageError when rclone fails."""
        argv = [self.binary, "cat", self.location.target(name), *self.flags]
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self.env)
        try:
            while data := child.stdout.read(CHUNK):
                yield data
            if child.wait(timeout=self.deadline_s) != 0:
                raise StorageError(f"rclone cat failed: {_last_line(child.stderr.read())}")
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            child.stdout.close()
            child.stderr.close()

    def delete(self, name: str) -> None:
        """Delete `name`, then its companions (the sha256 record last: a half-deleted backup stays unowned)."""
        self._run("deletefile", self.location.target(name))
        for companion in (f"{name}{RECORD_SUFFIX}", f"{name}.sha256"):
            if self.exists(companion):
                self._run("deletefile", self.location.target(companion))


def _kill_when(child: subprocess.Popen, cancelled: Callable[[], bool], poll_s: float = 0.1) -> None:
    """Kill `child` as soon as `cancelled()` is true (a shutdown); return when it has exited either way."""
    while child.poll() is None:
        if cancelled():
            child.kill()
            return
        time.sleep(poll_s)


def _literal(name: str) -> str:
    """An rclone filter pattern matching exactly `name` (its glob characters escaped)."""
    return "/" + "".join("\\" + c if c in "*?[]{}\\" else c for c in name)


def _last_line(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no message"
