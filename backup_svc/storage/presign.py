"""Short-lived presigned GET URLs for stored backups: the bucket serves the bytes, not this service.

A presigned URL is signed locally with the storage credentials (no request is made to sign it) and
is itself a bearer credential for one object until it expires, so it is issued only to an
authenticated admin, for at most PRESIGN_MAX_S, only for names of this service's backups, and it
never appears in a log line (the access log writes paths without query strings).
"""

from __future__ import annotations

from .location import BackupNames, StorageLocation

# The link is followed at once by the browser or `curl -L`; ten minutes leaves room for a slow start
# and is the most the API promises (docs/api.md). The transfer itself may then run for hours: S3
# checks the expiry when a request starts, not while it streams.
PRESIGN_MAX_S = 600


class NotOurBackup(ValueError):
    """The name is not one of this service's backup names (a foreign key, a traversal, a typo)."""


def checked_name(names: BackupNames, name: str) -> str:
    """`name` when it is exactly one of this service's backup names (`<BACKUP_NAME>_backup_<UTC>.sql.gz`).

    NotOurBackup otherwise: no other key under the prefix, or anywhere, can be presigned.
    """
    if names.time_of(name) is None:
        raise NotOurBackup(f"{name!r} is not one of this service's backup names")
    return name


def presigned_download_url(client, location: StorageLocation, name: str, *, expires_s: int = PRESIGN_MAX_S) -> str:
    """A GET URL for the stored backup `name` that works without credentials for `expires_s` seconds.

    The response is sent as an attachment named `name` (the same filename a download gets), typed
    application/gzip, and not to be cached. `name` must already be checked (`checked_name`).
    """
    if not 1 <= expires_s <= PRESIGN_MAX_S:
        raise ValueError(f"a presigned link lives 1 to {PRESIGN_MAX_S} s, not {expires_s}")
    return client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": location.bucket,
            "Key": location.key(name),
            "ResponseContentDisposition": f'attachment; filename="{name}"',
            "ResponseContentType": "application/gzip",
            "ResponseCacheControl": "no-store",
        },
        ExpiresIn=expires_s,
        HttpMethod="GET",
    )
