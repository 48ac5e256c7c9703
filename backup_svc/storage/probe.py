"""Can this service use its storage? Each permission it needs, tried on the prefix, leaving nothing behind.

What is tried, in this order, so that nothing can be left behind:
  list    ListObjectsV2 and ListMultipartUploads under the prefix (listing, retention, stale uploads)
  delete  DeleteObject of a key that does not exist (S3 answers 204 when allowed, 403 when not)
  abort   AbortMultipartUpload of an upload id that does not exist (NoSuchUpload when allowed)
  put     only when delete is allowed: PutObject of a tiny object, GetObject of it (read-back and
          presigned downloads need it), DeleteObject of it; then, only when abort is allowed, a
          multipart upload with one part, aborted
The test key `<prefix>backup_svc-check-<random>.tmp` never matches a backup name, so nothing that
lists backups ever sees it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from .client import RetryPolicy, StorageError, describe, error_code, with_retries
from .location import StorageLocation
from .settings import StorageSettings

PROBE_NAME = "backup_svc-check-{}.tmp"
PROBE_BODY = b"backup_svc permission check; safe to delete\n"
# A person waits for these: two tries, short pauses.
PROBE_RETRY = RetryPolicy(attempts=2, first_delay_s=0.2, max_delay_s=0.5)


@dataclass(frozen=True)
class Check:
    """One permission: "ok", "denied", "failed" (another error) or "not tried", and a line saying why."""

    permission: str
    result: str
    detail: str = ""


@dataclass
class ProbeReport:
    """What `probe_storage` found: whether the storage answered, and each permission."""

    location: str
    endpoint: str
    reachable: bool = False
    checks: list[Check] = field(default_factory=list)
    left_behind: list[str] = field(default_factory=list)  # test objects/uploads a failure left (named)

    @property
    def ok(self) -> bool:
        return self.reachable and all(c.result == "ok" for c in self.checks) and not self.left_behind

    def as_json(self) -> dict:
        return {
            "reachable": self.reachable,
            "ok": self.ok,
            "permissions": {c.permission: c.result for c in self.checks},
            "problems": [f"{c.permission}: {c.detail}" for c in self.checks if c.result != "ok"]
            + [f"left behind: {item}" for item in self.left_behind],
        }

    def lines(self) -> list[str]:
        """`check`'s lines about storage."""
        if not self.reachable:
            detail = self.checks[0].detail if self.checks else "no answer"
            return [f"storage: unreachable — {self.location} at {self.endpoint}: {detail}"]
        out = [f"storage: {'ok' if self.ok else 'problem'} — {self.location} at {self.endpoint}"]
        for check in self.checks:
            out.append(f"storage {check.permission}: {check.result}" + (f" — {check.detail}" if check.detail else ""))
        out += [f"storage: left behind {item}; delete it by hand" for item in self.left_behind]
        return out


def _outcome(exc: BaseException) -> str:
    code, status = error_code(exc)
    return "denied" if status == 403 or code in ("AccessDenied", "Forbidden") else "failed"


class _Prober:
    def __init__(self, client, location: StorageLocation, retry: RetryPolicy):
        self.client, self.location, self.retry = client, location, retry
        self.bucket = location.bucket
        self.key = location.key(PROBE_NAME.format(secrets.token_hex(8)))

    def attempt(self, what: str, call) -> tuple[str, str]:
        """("ok", "") or (outcome, one line) for one storage call, with the probe's retries."""
        try:
            with_retries(what, call, self.retry)
            return "ok", ""
        except StorageError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            return _outcome(cause), describe(cause)

    def listing(self) -> tuple[Check, bool, bool]:
        """The list check, whether the storage answered at all, and whether the other checks make sense."""
        try:
            with_retries(
                "listing",
                lambda: self.client.list_objects_v2(Bucket=self.bucket, Prefix=self.location.prefix, MaxKeys=1),
                self.retry,
            )
        except StorageError as exc:
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            code, status = error_code(cause)
            if status is None:  # no HTTP answer: connection refused, timeout, no credentials to sign with
                return Check("list", "failed", describe(cause)), False, False
            if code == "NoSuchBucket":
                return Check("list", "failed", f"the bucket {self.bucket!r} does not exist"), True, False
            return Check("list", _outcome(cause), describe(cause)), True, True
        result, detail = self.attempt(
            "listing incomplete uploads",
            lambda: self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.location.prefix, MaxUploads=1),
        )
        return Check("list", result, detail and f"listing incomplete uploads: {detail}"), True, True

    def absent_delete(self) -> tuple[str, str]:
        return self.attempt("deleting", lambda: self.client.delete_object(Bucket=self.bucket, Key=self.key))

    def absent_abort(self) -> tuple[str, str]:
        def abort():
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId="backup-svc-check")
            except Exception as exc:
                if error_code(exc)[0] != "NoSuchUpload":  # allowed, and there was nothing to abort
                    raise

        return self.attempt("aborting an upload", abort)

    def write_read_delete(self, left_behind: list[str]) -> tuple[str, str]:
        result, detail = self.attempt(
            "writing",
            lambda: self.client.put_object(Bucket=self.bucket, Key=self.key, Body=PROBE_BODY, ContentType="text/plain"),
        )
        if result != "ok":
            return result, f"writing: {detail}"
        read, read_detail = self.attempt(
            "reading", lambda: self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()
        )
        gone, gone_detail = self.absent_delete()  # the object exists now; same call, same permission
        if gone != "ok":
            left_behind.append(f"s3://{self.bucket}/{self.key} ({gone_detail})")
        if read != "ok":
            return read, f"reading back: {read_detail}"
        return gone, gone_detail and f"deleting the test object: {gone_detail}"

    def multipart(self, left_behind: list[str]) -> tuple[str, str]:
        upload_id: list[str] = []

        def start():
            upload_id.append(self.client.create_multipart_upload(Bucket=self.bucket, Key=self.key)["UploadId"])

        result, detail = self.attempt("starting a multipart upload", start)
        if result != "ok":
            return result, f"starting a multipart upload: {detail}"
        part, part_detail = self.attempt(
            "uploading a part",
            lambda: self.client.upload_part(
                Bucket=self.bucket, Key=self.key, UploadId=upload_id[0], PartNumber=1, Body=PROBE_BODY
            ),
        )
        aborted, abort_detail = self.attempt(
            "aborting the upload",
            lambda: self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=upload_id[0]),
        )
        if aborted != "ok":
            left_behind.append(f"incomplete upload of s3://{self.bucket}/{self.key} ({abort_detail})")
            return aborted, f"aborting the multipart upload: {abort_detail}"
        return part, part_detail and f"uploading a part: {part_detail}"


def probe_storage(client, location: StorageLocation, endpoint: str, *, retry: RetryPolicy = PROBE_RETRY) -> ProbeReport:
    """Try every permission the service needs on `location` (see the module docstring); never raises
    for storage errors."""
    prober = _Prober(client, location, retry)
    report = ProbeReport(location=location.url, endpoint=endpoint)
    listed, report.reachable, go_on = prober.listing()
    report.checks.append(listed)
    if not go_on:
        return report
    delete, delete_detail = prober.absent_delete()
    abort, abort_detail = prober.absent_abort()
    report.checks.append(Check("delete", delete, delete_detail))
    report.checks.append(Check("abort", abort, abort_detail))
    if delete != "ok":
        report.checks.append(Check("put", "not tried", "a test object could not be deleted afterwards"))
        return report
    put, put_detail = prober.write_read_delete(report.left_behind)
    if put == "ok" and abort == "ok":
        put, put_detail = prober.multipart(report.left_behind)
    report.checks.append(Check("put", put, put_detail))
    return report


def endpoint_of(storage: StorageSettings) -> str:
    """Where the storage is, for messages: AWS_ENDPOINT_URL, or Amazon S3 and its region."""
    env = storage.client_env
    endpoint = env.get("AWS_ENDPOINT_URL")
    if endpoint:
        return endpoint
    region = env.get("AWS_DEFAULT_REGION")
    return f"Amazon S3 ({region})" if region else "Amazon S3"
