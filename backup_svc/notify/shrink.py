"""The shrink warning: a stored backup that succeeded but holds far fewer rows (or bytes) than the ones
before it (storage/shape.py decides that). It goes to mail and the webhook whatever NOTIFY_ON says;
the heartbeat is not told (the backup itself succeeded and pinged as such)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backup_svc.notify.common import Event, human_size, utc_text

SHRINK, WARNING = "shrink", "warning"


def _amount(measure: str, value: float | int | None) -> str:
    if value is None:
        return "?"
    return f"{round(value):,} rows" if measure == "rows" else human_size(round(value))


@dataclass(frozen=True)
class ShrinkWarning(Event):
    """The Event for a shrunk backup; `details` holds the finding (ShrinkFinding.as_json)."""

    def headline(self) -> str:
        d = self.details
        return (
            f"Backup of {self.database} SHRANK: {d['drop_percent']:.1f} % "
            f"{'fewer rows' if d['measure'] == 'rows' else 'smaller'} than usual at {utc_text(self.when)}"
        )

    def reason(self) -> str:
        d = self.details
        measure = d["measure"]
        what = (
            f"holds {_amount(measure, d['value'])}"
            if measure == "rows"
            else f"is {_amount(measure, d['value'])} (row counts are not recorded for these backups)"
        )
        text = (
            f"The stored backup {self.name} succeeded, but {what}: "
            f"{d['drop_percent']:.1f} % below the median of the {d['compared']} backups before it "
            f"({_amount(measure, d['median'])}). BACKUP_SHRINK_ALERT is {d['threshold']:g} %."
        )
        tables = d.get("shrunk_tables") or []
        if tables:
            listed = "; ".join(f"{t['table']} {t['before']:,} → {t['after']:,}" for t in tables)
            text += f" Tables that lost the most rows since {d['held']}: {listed}."
        return text

    def advice(self) -> str:
        held = self.details["held"]
        return (
            f"Find out whether the data was deleted on purpose (a clean-up, a migration) or by mistake. "
            f"Retention keeps {held}, the last backup before the drop, until you acknowledge this warning "
            f"on the dashboard (Size and rows of the stored backups) or with POST "
            f"/api/v1/stored/holds/{held}/acknowledge; if the data is missing by mistake, restore it "
            f"`backup-svc restore {self.details.get('held_url') or held} --target-url URL --create` "
            f"into a new database, then compare."
        )

    @property
    def failed(self) -> bool:
        return False  # the backup is stored and good; this is a warning about what it holds

    def text(self) -> str:
        return " ".join([self.headline() + ".", self.reason(), self.advice()])[:1900]

    def extra_facts(self) -> list[tuple[str, str]]:
        """Lines the mail adds to its facts."""
        d = self.details
        return [
            ("Held", f"{d['held']} (kept by retention until acknowledged)"),
            ("Median", f"{_amount(d['measure'], d['median'])} over the {d['compared']} backups before"),
            ("Drop", f"{d['drop_percent']:.1f} % (alarm above {d['threshold']:g} %)"),
        ]


def shrink_event(
    finding_json: dict[str, Any],
    *,
    database: str,
    size: int | None,
    sha256: str | None,
    rows: int | None,
    finished: datetime,
    held_url: str | None = None,
) -> ShrinkWarning:
    """The warning for a finding (storage.shape.ShrinkFinding.as_json()) about the backup just stored."""
    details = {
        key: finding_json[key]
        for key in ("measure", "value", "median", "drop_percent", "threshold", "compared", "held", "held_value")
    }
    details["shrunk_tables"] = finding_json.get("tables", [])
    details["held_url"] = held_url
    if rows is not None:
        details["rows"] = rows
    return ShrinkWarning(
        kind=SHRINK,
        outcome=WARNING,
        database=database,
        name=finding_json["name"],
        bytes=size,
        sha256=sha256,
        finished=finished,
        details=details,
    )
