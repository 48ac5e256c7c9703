"""A dedup backup's manifest: the small JSON object, named like a backup (`…_backup_<UTC>.sql.dedup`),
that lists its chunks in order and what the whole SQL must hash to. Written last, only for a good dump."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Iterable

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
    chunk_suffix: str = ""  # after the id in a chunk's object name: "" in the clear, `.<fp>.age` encrypted
    facts: dict = field(default_factory=dict)  # versions, the .sql.gz's sha256, row counts, chunker

    @property
    def stored_bytes(self) -> int:
        """The compressed size of all its chunks: what the backup occupies alone, comparable to a .sql.gz."""
        return sum(c.stored for c in self.chunks)

    @property
    def encrypted(self) -> bool:
        """Whether its chunks are age-encrypted (then `stored` sizes are the sealed objects' sizes)."""
        return bool(self.chunk_suffix)  # as ChunkStore.unseal decides

    def chunk_ids(self) -> set[str]:
        return {c.id for c in self.chunks}

    def chunk_names(self) -> set[str]:
        """The object names (under the chunk folder) of its chunks."""
        return {c.id + self.chunk_suffix for c in self.chunks}

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "format": FORMAT,
                "version": VERSION,
                "backup": self.backup,
                "sql_sha256": self.sql_sha256,
                "sql_bytes": self.sql_bytes,
                "key_check": self.key_check,
                **({"chunk_suffix": self.chunk_suffix} if self.chunk_suffix else {}),
                **self.facts,
                "chunks": [[c.id, c.size, c.stored] for c in self.chunks],
            },
            separators=(",", ":"),
            sort_keys=False,
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Manifest":
        try:
            doc = json.loads(data)
        except ValueError:
            raise BadManifest("it is not JSON") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise BadManifest("it is not a backup_svc dedup manifest")
        if SEALED in doc:
            raise BadManifest("it is age-encrypted: read it with open_manifest and BACKUP_AGE_IDENTITY")
        if doc.get("version") != VERSION:
            raise BadManifest(f"it is a version {doc.get('version')!r} manifest; this version reads {VERSION}")
        try:
            chunks = [ChunkRef(str(i), int(n), int(s)) for i, n, s in doc["chunks"]]
            known = {"format", "version", "backup", "sql_sha256", "sql_bytes", "key_check", "chunk_suffix", "chunks"}
            manifest = cls(
                backup=str(doc["backup"]),
                chunks=chunks,
                sql_sha256=str(doc["sql_sha256"]),
                sql_bytes=int(doc["sql_bytes"]),
                key_check=str(doc["key_check"]),
                chunk_suffix=_suffix(doc.get("chunk_suffix", "")),
                facts={k: v for k, v in doc.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError):
            raise BadManifest("it lacks a field or has one of the wrong type") from None
        if sum(c.size for c in chunks) != manifest.sql_bytes:
            raise BadManifest("its chunks' sizes do not add up to its SQL size")
        return manifest


# An encrypted manifest is an envelope: the manifest's JSON age-encrypted (base64 under SEALED), beside the
# two things a collection must read without any private key — the chunk ids it names (keyed HMACs: they reveal
# nothing of the SQL, only which chunks backups share) and their object-name suffix. A reader checks that the
# sealed manifest names exactly those ids.
SEALED = "sealed_age"


def _suffix(value) -> str:
    if not isinstance(value, str) or "/" in value or (value and not value.startswith(".")):
        raise ValueError("bad chunk_suffix")
    return value


def seal_manifest(manifest: Manifest, recipients: Iterable) -> bytes:
    """The stored form of an encrypted backup's manifest (crypto/encrypt.py's age, to `recipients`)."""
    from backup_svc.crypto.encrypt import encrypt_bytes

    sealed = encrypt_bytes(manifest.to_bytes(), recipients)
    return json.dumps(
        {
            "format": FORMAT,
            "version": VERSION,
            "backup": manifest.backup,
            "chunk_suffix": manifest.chunk_suffix,
            "chunk_ids": sorted(manifest.chunk_ids()),
            SEALED: base64.b64encode(sealed).decode(),
        },
        separators=(",", ":"),
    ).encode()


def _envelope(data: bytes) -> dict | None:
    """The envelope's fields when `data` is an encrypted manifest, else None (BadManifest if it is malformed)."""
    try:
        doc = json.loads(data)
    except ValueError:
        raise BadManifest("it is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or SEALED not in doc:
        return None
    if doc.get("version") != VERSION:
        raise BadManifest(f"it is a version {doc.get('version')!r} manifest; this version reads {VERSION}")
    try:
        ids = doc["chunk_ids"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not isinstance(doc[SEALED], str):
            raise ValueError
        return {"suffix": _suffix(doc["chunk_suffix"]), "ids": set(ids), "sealed": doc[SEALED]}
    except (KeyError, ValueError):
        raise BadManifest("its encrypted envelope lacks a field or has one of the wrong type") from None


def is_sealed(data: bytes) -> bool:
    """Whether a manifest object's bytes are an encrypted manifest's envelope."""
    return _envelope(data) is not None


def open_manifest(data: bytes, identities: Iterable = ()) -> Manifest:
    """The manifest in a stored manifest object, decrypted with `identities` (BACKUP_AGE_IDENTITY) when it is
    sealed: IdentityNeeded / WrongIdentity / DecryptionFailed (crypto/common.py) when that cannot be done."""
    from backup_svc.crypto.decrypt import decrypt_bytes

    envelope = _envelope(data)
    if envelope is None:
        return Manifest.from_bytes(data)
    try:
        sealed = base64.b64decode(envelope["sealed"], validate=True)
    except ValueError:
        raise BadManifest("its encrypted part is not base64") from None
    manifest = Manifest.from_bytes(decrypt_bytes(sealed, identities))
    if manifest.chunk_ids() != envelope["ids"] or manifest.chunk_suffix != envelope["suffix"]:
        raise BadManifest("the chunk ids in its envelope are not the ones its encrypted part names: it was changed")
    return manifest


def referenced_names(data: bytes) -> set[str]:
    """The chunk object names a stored manifest names, read without decrypting it (for the collection)."""
    envelope = _envelope(data)
    if envelope is None:
        return Manifest.from_bytes(data).chunk_names()
    return {i + envelope["suffix"] for i in envelope["ids"]}


def is_manifest_name(name: str) -> bool:
    """Whether a stored backup's name says it is a dedup manifest."""
    return name.endswith(SUFFIX)


def manifest_name(backup_filename: str) -> str:
    """`…_backup_<UTC>.sql.gz` → `…_backup_<UTC>.sql.dedup`."""
    return backup_filename.removesuffix(".sql.gz") + SUFFIX
