"""Standard gzip compressors: ISA-L (`isal`) where it is installed and the level allows, else zlib."""

from __future__ import annotations

import zlib

try:  # ISA-L compresses ~2x faster than zlib at a smaller size than gzip -6 (bench/README.md)
    from isal import isal_zlib
except ImportError:  # pragma: no cover - the standard library keeps working without it
    isal_zlib = None

# Both libraries write the gzip container (header + CRC-32 + size trailer) for wbits 16 + 15.
GZIP_WBITS = 31
# ISA-L implements levels 0-3; higher levels are zlib's.
ISAL_MAX_LEVEL = 3
DEFAULT_LEVEL = 1
SYNC_FLUSH = zlib.Z_SYNC_FLUSH  # same value in isal_zlib


def gzip_compressor(level: int = DEFAULT_LEVEL):
    """A compressobj producing standard gzip at `level` (0-9); `compressor_name` says which library."""
    if isal_zlib is not None and level <= ISAL_MAX_LEVEL:
        return isal_zlib.compressobj(level, isal_zlib.DEFLATED, GZIP_WBITS)
    return zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS)


def compressor_name(level: int = DEFAULT_LEVEL) -> str:
    """Which library `gzip_compressor(level)` uses, for logs, /api/v1/database and the benchmark."""
    if isal_zlib is not None and level <= ISAL_MAX_LEVEL:
        return f"isal (ISA-L) level {level}"
    return f"zlib level {level}"
