"""One dedup stored backup: the dump's SQL into new chunks, then — only after pg_dump succeeded and its
completion line was seen — the manifest, written last through the same upload as a `.sql.gz` (never
overwritten, read back, ownership recorded). Any failure before it leaves no backup, only chunks that
no manifest names, which the next collection removes once they are older than the grace period."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from importlib.metadata import version
from typing import Callable

from backup_svc.dump.backup import BackupWritten
from backup_svc.dump.options import DumpOptions
from backup_svc.dump.attempt import DumpProgress
from backup_svc.storage.client import RetryPolicy, StorageError
from backup_svc.storage.location import StorageLocation
from backup_svc.storage.ownership import Owner
from backup_svc.storage.stopping import StopFlag, stoppable_dump
from backup_svc.storage.upload import MultipartUpload, StoredObject

from .chunks import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, ChunkKey, ChunkStore, encrypted_suffix
from .manifest import CONTENT_TYPE, Manifest, seal_manifest
from .writer import DedupSink

log = logging.getLogger(__name__)
# The manifest's upload buffer: S3's smallest part (every part but the last must be ≥ 5 MiB), not the
# 16 MiB PART_SIZE of a .sql.gz — a manifest is ~100 bytes per chunk, and that buffer is filled (touched)
# when the upload starts, after the chunks' buffers, so it adds to the peak RSS.
MANIFEST_PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class DedupStored:
    """A dedup backup whose manifest is stored and read back, and what its run added to the chunk store."""

    stored: StoredObject  # the manifest object
    written: BackupWritten
    owner: Owner
    chunks: int
    new_chunks: int
    new_bytes: int  # compressed bytes uploaded as new chunks
    stored_bytes: int  # compressed bytes of all its chunks (what it occupies alone)


def store_dedup_backup(
    options: DumpOptions,
    client,
    location: StorageLocation,
    name: str,
    key: ChunkKey,
    *,
    application_name: str,
    progress: DumpProgress | None,
    cancel: StopFlag,
    retry: RetryPolicy,
    completion_metadata: Callable[[BackupWritten, float], dict[str, str]],
    started: float,
    recipients: tuple = (),
) -> DedupStored:
    """Dump into the chunk store and write the manifest `name`; raise on every path that stores no manifest.

    `recipients` (BACKUP_AGE_RECIPIENTS): every chunk and the manifest are age-encrypted to them (chunk ids
    stay the HMAC of the plain bytes, so nights still share chunks); nothing of the SQL is stored in the clear
    and the metadata gets no SQL size or row counts (`completion_metadata` is told so by the caller)."""
    suffix = encrypted_suffix(recipients) if recipients else ""
    store = ChunkStore(client, location, options.backup_name, retry, suffix=suffix, recipients=recipients)
    known = {chunk_id: info["size"] for chunk_id, info in store.listing().items()}  # before the dump's first byte
    sink = DedupSink(store, key, known)
    try:
        written = stoppable_dump(
            options, sink, cancel, application_name=application_name, progress=progress, count_rows=True
        )
        # write_backup returned: pg_dump exited 0 and its output ended with the completion line.
        chunks = sink.finish()
    except BaseException:
        sink.abort()
        raise
    if written.sql_bytes != sink.sql_bytes:
        raise StorageError("the SQL cut into chunks differs from the SQL the dump produced")
    owner = Owner(options.backup_name, written.facts.database, written.facts.system_identifier or None)
    manifest = Manifest(
        backup=name,
        chunks=chunks,
        sql_sha256=sink.sql_sha256,
        sql_bytes=sink.sql_bytes,
        key_check=key.check,
        chunk_suffix=suffix,
        facts={
            "backup_name": options.backup_name,
            "database": written.facts.database,
            "server_version": written.facts.version,
            "pg_dump_version": written.pg_dump.version,
            # the .sql.gz this run's dump streamed (gzip output is not reproduced from chunks)
            "sqlgz_sha256": written.sha256,
            "sqlgz_bytes": written.gzip_bytes,
            "chunker": {
                "algorithm": "FastCDC 2020",
                "library": f"pyfastcdc {version('pyfastcdc')}",
                "avg": AVG_CHUNK,
                "min": MIN_CHUNK,
                "max": MAX_CHUNK,
            },
            "chunk_id": "hmac-sha256",
            "compression": "zlib",
            "table_rows": {f"{s}.{t}": n for (s, t), n in (written.table_rows or {}).items()},
        },
    )
    metadata = {"backup-name": options.backup_name, "storage-format": "dedup"}
    if recipients:
        from backup_svc.crypto.labels import recipients_metadata

        metadata.update(recipients_metadata(recipients))
    body = seal_manifest(manifest, recipients) if recipients else manifest.to_bytes()
    with MultipartUpload(
        client,
        location.bucket,
        location.key(name),
        metadata=metadata,
        retry=retry,
        cancelled=cancel.is_set,
        content_type=CONTENT_TYPE,
        part_size=MANIFEST_PART_SIZE,
    ) as upload:
        upload.write(body)
        stored = upload.complete(
            {
                **completion_metadata(written, time.monotonic() - started),
                **owner.metadata(),
                "dedup-chunks": str(len(chunks)),
                "dedup-new-chunks": str(sink.new_chunks),
                "dedup-new-bytes": str(sink.new_bytes),
                "dedup-stored-bytes": str(manifest.stored_bytes),
            }
        )
    log.info(
        "dedup backup %s: %d chunks, %d new (%d bytes uploaded), %d bytes of SQL",
        name,
        len(chunks),
        sink.new_chunks,
        sink.new_bytes,
        sink.sql_bytes,
    )
    return DedupStored(
        stored=stored,
        written=written,
        owner=owner,
        chunks=len(chunks),
        new_chunks=sink.new_chunks,
        new_bytes=sink.new_bytes,
        stored_bytes=manifest.stored_bytes,
    )
