"""A dedup backup's manifest: the small JSON object, named like a backup (`…_backup_<UTC>.sql.dedup`),
that lists its chunks in order and what the whole SQL must hash to. Written last, only for a good dump."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from backup_svc.files.reader import BadBackup

FORMAT = "backup_svc dedup manifest"
VERSION = 1
SUFFIX = ".sql.dedup"
CONTENT_TYPE = "application/json"
# A manifest is read whole into memory: ~100 bytes per chunk, 4,000 chunks for 4 GB of SQL.
MAX_MANIFEST_BYTES = 64 << 20


class BadManifest(BadBackup):
    """The object is not a manifest this version can read; the message says why."""


@dataclass(frozen=True)
class ChunkRef:
    """One chunk in a backup: its keyed id, its plain size and its stored (compressed) size."""

    id: str
    size: int
    stored: int


@dataclass
class Manifest:
    """What one dedup backup is: its chunks in order and the facts to check the reassembled SQL against."""

    backup: str
    chunks: list[ChunkRef] = field(default_factory=list)
    sql_sha256: str = ""
    sql_bytes: int = 0
    key_check: str = ""  # ChunkKey.check of the key the ids were made with
    facts: dict = field(default_factory=dict)  # versions, the .sql.gz's sha256, row counts, chunker

    @property
    def stored_bytes(self) -> int:
        """The compressed size of all its chunks: what the backup occupies alone, comparable to a .sql.gz."""
        return sum(c.stored for c in self.chunks)

    def chunk_ids(self) -> set[str]:
        return {c.id for c in self.chunks}

    def to_bytes(self) -> bytes:
        return json.dumps({
            "format": FORMAT, "version": VERSION, "backup": self.backup, "sql_sha256": self.sql_sha256,
            "sql_bytes": self.sql_bytes, "key_check": self.key_check, **self.facts,
            "chunks": [[c.id, c.size, c.stored] for c in self.chunks],
        }, separators=(",", ":"), sort_keys=False).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        try:
            doc = json.loads(data)
        except ValueError:
            raise BadManifest("it is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BadManifest("it is not a backup_svc dedup manifest")
        if doc.get("version") != VERSION:
            raise BadManifest(f"it is a version {doc.get('version')!r} manifest; this version reads {VERSION}")
        try:
            chunks = [ChunkRef(str(i), int(n), int(s)) for i, n, s in doc["chunks"]]
            known = {"format", "version", "backup", "sql_sha256", "sql_bytes", "key_check", "chunks"}
            manifest = cls(backup=str(doc["backup"]), chunks=chunks, sql_sha256=str(doc["sql_sha256"]),
                           sql_bytes=int(doc["sql_bytes"]), key_check=str(doc["key_check"]),
                           facts={k: v for k, v in doc.items() if k not in known})
        except (KeyError, TypeError, ValueError):
            raise BadManifest("it lacks a field or has one of the wrong type") from None
        if sum(c.size for c in chunks) != manifest.sql_bytes:
            raise BadManifest("its chunks' sizes do not add up to its SQL size")
        return manifest


def is_manifest_name(name: str) -> bool:
    """Whether a stored backup's name says it is a dedup manifest."""
    return name.endswith(SUFFIX)


def manifest_name(backup_filename: str) -> str:
    """`…_backup_<UTC>.sql.gz` → `…_backup_<UTC>.sql.dedup`."""
    return backup_filename.removesuffix(".sql.gz") + SUFFIX
