"""`verify`: is a backup file intact and complete, and what does it hold? One streaming pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Callable

from backup_svc.files.reader import BackupReader, BadBackup
from backup_svc.files.scan import DumpScanner


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` found in a good backup file."""

    path: str
    format: str
    size: int
    sha256: str
    sql_bytes: int
    server_version: str
    pg_dump_version: str
    tables_with_data: int
    encoding: str = ""  # the dump's client_encoding: the source database's encoding

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        return [
            f"ok: {self.path} is a complete, intact backup",
            f"  size:             {self.size} bytes ({self.format}), {self.sql_bytes} bytes of SQL",
            f"  sha256:           {self.sha256}",
            f"  dumped from:      PostgreSQL {self.server_version}",
            f"  dumped by:        pg_dump {self.pg_dump_version}",
            f"  tables with data: {self.tables_with_data} (COPY statements)",
        ]


def verify_file(path: str, opener: Callable[[], BinaryIO] | None = None) -> VerifyReport:
    """Decompress `path` end to end and check it is a complete plain dump; BadBackup says why not.

    `opener` reads the bytes from elsewhere than the file `path` (a stored object: `path` is then
    its s3:// URL).
    """
    reader, scanner = BackupReader(path, opener), DumpScanner()
    for chunk in reader:
        scanner.feed(chunk)
    return report_of(path, reader, scanner)


# How much SQL `read_header` reads at most before it gives up on finding pg_dump's header lines
# (they are in the first few hundred bytes of every plain dump).
HEADER_LIMIT = 1 << 20


def read_header(path: str, opener: Callable[[], BinaryIO] | None = None) -> VerifyReport:
    """The cheap up-front check of a restore that verifies while restoring: the container (gzip
    magic and header, or age), pg_dump's two header lines and the encoding, from the first chunks only.

    BadBackup if the start is wrong. Size, sha256, SQL bytes and tables are unknown (0/"") until the
    restore's own pass has read everything (`report_of` then).
    """
    reader, scanner = BackupReader(path, opener), DumpScanner()
    chunks = iter(reader)
    try:
        for chunk in chunks:
            scanner.feed(chunk)
            if (
                scanner.pg_dump_version and scanner.server_version and scanner.encoding
            ) or scanner.sql_bytes >= HEADER_LIMIT:
                break
    finally:
        chunks.close()  # closes the file
    if scanner.pg_dump_version is None or scanner.server_version is None:
        raise BadBackup(scanner.problem() or "no pg_dump header in its first megabyte of SQL")
    return VerifyReport(
        path=path,
        format=reader.format or "",
        size=0,
        sha256="",
        sql_bytes=0,
        server_version=scanner.server_version,
        pg_dump_version=scanner.pg_dump_version,
        tables_with_data=0,
        encoding=scanner.encoding or "",
    )


def report_of(path: str, reader: BackupReader, scanner: DumpScanner) -> VerifyReport:
    """What a full pass of `reader` through `scanner` found; BadBackup if the file is not a complete dump."""
    problem = scanner.problem()
    if problem:
        raise BadBackup(problem)
    return VerifyReport(
        path=path,
        format=reader.format or "",
        size=reader.size,
        sha256=reader.sha256,
        sql_bytes=scanner.sql_bytes,
        server_version=scanner.server_version or "",
        pg_dump_version=scanner.pg_dump_version or "",
        tables_with_data=scanner.copy_statements,
        encoding=scanner.encoding or "",
    )
