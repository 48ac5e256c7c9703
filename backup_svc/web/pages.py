"""Pages for people: the admin dashboard and the docs it links to."""

from __future__ import annotations

import json
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, render_template

from backup_svc.crypto.labels import short_label
from backup_svc.pg.readiness import dump_readiness
from backup_svc.storage.dedup.sqlgz import MEASURED_MB_S as DEDUP_MB_S, MEASURED_ON as DEDUP_MEASURED_ON
from backup_svc.storage.rclone_on_demand import download_limit
from backup_svc.storage.status import retention_words
from backup_svc.timefmt import iso_utc
from backup_svc.web.auth import auth
from backup_svc.web.docs import DOCS_DIR, doc_path, render_doc
from backup_svc.web.errors import api_abort
from backup_svc.web.history_view import RECENT_ATTEMPTS, fingerprint, notify_status, recent_attempts
from backup_svc.web.state import service

bp = Blueprint("pages", __name__)

# The page is slow to render when the database is; a page should not hang as long as a dump may wait.
FACTS_TIMEOUT_S = 3
# The Content-Security-Policy and the other security headers come from security.py, for every response.


def human_bytes(size: int | float | None) -> str:
    """`1.4 GB`-style size (decimal units, like the browser's download list)."""
    if size is None:
        return "unknown"
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@bp.app_template_filter("bytes")
def _bytes_filter(size: int | None) -> str:
    return human_bytes(size)


@bp.app_template_filter("utc_seconds")
def _utc_seconds_filter(iso: str | None) -> str:
    """`2026-11-28T19:32:04.123Z` → `2026-11-28 19:32:04` (the column says UTC)."""
    return iso[:19].replace("T", " ") if iso else "–"


@bp.app_template_filter("seconds")
def _seconds_filter(seconds: float | None) -> str:
    """`0.4 s`, `12 s`, `3 min 5 s`."""
    if seconds is None:
        return "–"
    if seconds < 10:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def busy_reason(running: list, at_limit: bool) -> str | None:
    """Why the button is disabled: whose backup runs, since when (None when a backup may start)."""
    if not at_limit or not running:
        return None
    first = running[0]
    since = iso_utc(first.progress.started)[11:19]
    others = f" and {len(running) - 1} more" if len(running) > 1 else ""
    return f"A backup started by {first.actor} at {since} UTC{others} is running; the button comes back when it ends."


@bp.get("/")
@auth.login_required
def dashboard():
    """The admin dashboard: what will be backed up, a download button with live progress, how to restore."""
    state = service()
    settings = state.settings
    ready = dump_readiness(
        lambda: state.facts.get(timeout_s=min(settings.connect_timeout_s, FACTS_TIMEOUT_S)), state.pg_dumps
    )
    shown = dict(
        name=settings.backup_name,
        facts=ready.facts,
        pg_dump=ready.pg_dump,
        facts_error=ready.facts_error.message if ready.facts_error else None,
        pg_dump_error=ready.pg_dump_error.message if ready.pg_dump_error else None,
        busy=busy_reason(state.registry.running(), state.registry.at_limit()),
        docs_available=(DOCS_DIR / "api.md").is_file(),
        # every running dump, whoever started it, each with a Cancel button
        running_dumps=tuple((r.id, r.actor, iso_utc(r.progress.started)) for r in state.registry.running()),
        stored=_stored_facts(state, sealed=bool(settings.encryption.recipients)),
        # the "Encrypt the file with age" option, shown when BACKUP_AGE_RECIPIENTS is set
        encrypt_to=tuple(short_label(r.label) for r in settings.encryption.recipients),
        restore=_restore_facts(state),
    )
    notify = _notify_status(state)
    history = state.history.status()
    key = (tuple(sorted(shown.items())), fingerprint(state), json.dumps(notify, sort_keys=True))
    html = current_app.extensions.setdefault("backup_svc.dashboard", RenderedPage()).html(
        key,
        lambda: render_template(
            "dashboard.html", recent=recent_attempts(state, RECENT_ATTEMPTS), notify=notify, history=history, **shown
        ),
    )
    return Response(html, mimetype="text/html")


def _notify_status(state) -> dict | None:
    """What notifications and drills did lately (delivery problems, last proven restorable, staleness);
    None when none of them is set up."""
    settings = state.settings
    notify = settings.notify
    scheduled = settings.storage is not None and settings.storage.watched_schedule is not None
    if not scheduled and (notify is None or not (notify.any_channel or notify.drill)):
        return None
    return notify_status(state)


@dataclass(frozen=True)
class StoredFacts:
    """What the "Stored backups" section shows without asking the storage (the rest comes from the API)."""

    url: str
    endpoint: str
    schedule: str | None
    retention: str
    shrink_alert: float | None = None  # BACKUP_SHRINK_ALERT, None when off
    # an rclone remote: what the page calls the place, the restore command's address of a backup, the variables
    # a shell needs, and the limits of a download streamed through the service (rclone_on_demand.download_limit)
    place: str = "bucket"
    source_prefix: str = ""
    variables: str = "AWS_*"
    streamed: dict | None = None
    # BACKUP_STORAGE_FORMAT=dedup: its backups' downloads stream through the service (sqlgz.py's measured rate)
    dedup_streamed: dict | None = None
    dedup_sealed: bool = False  # ... and encrypted: the service does not hand its chunks out decrypted (409)

    @property
    def streamed_words(self) -> tuple[str, str, str, str, str]:
        """("15 minutes", "174 MB/s", "about 156 GB", "5 MB/s", "about 4.5 GB") for the page: what Railway's limit
        allows at the rate measured on loopback, and at a plausible real link's."""
        return limit_words(self.streamed)

    @property
    def dedup_words(self) -> tuple[str, str, str, str, str]:
        """The same words for a dedup backup's download (rebuilt from its chunks, streamed through the service)."""
        return limit_words(self.dedup_streamed)


def limit_words(limit: dict | None) -> tuple[str, str, str, str, str]:
    """Railway's limit, the measured rate and what it allows, a plausible real rate and what that allows."""
    limit = limit or {}
    return (
        f"{limit.get('http_limit_s', 0) // 60} minutes",
        f"{limit.get('measured_mb_s', 0):.0f} MB/s",
        f"about {limit.get('max_bytes', 0) / 1e9:.0f} GB",
        f"{limit.get('example_mb_s', 0):.0f} MB/s",
        f"about {limit.get('example_max_bytes', 0) / 1e9:.1f} GB",
    )


def _stored_facts(state, sealed: bool) -> StoredFacts | None:
    """`sealed`: stored backups are age-encrypted (BACKUP_AGE_RECIPIENTS): a dedup one is not downloadable."""
    if state.stored is None:
        return None
    storage = state.stored.storage
    watched = storage.watched_schedule
    schedule = None
    if watched is not None:
        schedule = f"{watched.describe()} — {watched}" + (
            "" if storage.schedule else "; taken by another process, e.g. a cron service (BACKUP_EXPECTED_SCHEDULE)"
        )
    remote = {}
    if storage.is_rclone:
        url = storage.location.url
        remote = dict(
            place="remote",
            source_prefix=url if url.endswith(":") else url + "/",
            variables="RCLONE_CONFIG_*",
            streamed=download_limit(),
        )
    if storage.storage_format == "dedup":
        remote["dedup_streamed"] = download_limit(DEDUP_MB_S, DEDUP_MEASURED_ON)
        remote["dedup_sealed"] = sealed
    return StoredFacts(
        url=storage.location.url,
        endpoint=state.stored.prompt.endpoint,
        schedule=schedule,
        retention=retention_words(storage.retention),
        shrink_alert=storage.shrink_alert,
        **{"source_prefix": storage.location.url, **remote},
    )


@dataclass(frozen=True)
class RestoreFacts:
    """What the Restore section says: the live database, the swap's limit, which credentials are set."""

    database: str
    swap_timeout_s: int
    admin_token: bool
    restore_token: bool
    links: bool


def _restore_facts(state) -> RestoreFacts:
    settings = state.settings
    return RestoreFacts(
        database=settings.conn.dbname,
        swap_timeout_s=settings.restore.swap_timeout_s,
        admin_token=settings.admin_token is not None,
        restore_token=settings.restore.token is not None,
        links=settings.link_secret is not None,
    )


class RenderedPage:
    """The dashboard as last rendered, and what it showed: rendered again only when that changes.

    Rendering (Jinja, url_for) was most of the page's cost; while a dump runs, admins polling the page
    would otherwise compete with the stream for the worker's one core.
    """

    def __init__(self):
        self._key: tuple | None = None
        self._html = ""

    def html(self, key: tuple, render) -> str:
        """The page for `key` (what it shows), calling `render()` only when that changed."""
        if key != self._key:  # two threads may both render: harmless, the result is the same
            self._html, self._key = render(), key
        return self._html


@bp.get("/docs/<name>")
@auth.login_required
def doc(name: str):
    """A page of the repository's docs/ folder (`/docs/api` is docs/api.md), rendered as HTML."""
    path = doc_path(name)
    if path is None:
        api_abort(404, "No such document; the docs/ folder of the repository has them all.")
    title, body = render_doc(path)
    html = render_template("doc.html", title=title, body=body, source=f"docs/{path.name}", docs_available=True)
    return Response(html, mimetype="text/html")
