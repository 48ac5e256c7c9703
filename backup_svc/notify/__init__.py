"""Telling an admin what happened: email, webhook and heartbeat channels, staleness, restore drills.

`common` holds the event every channel reports and the URL scrubbing; `settings` reads the
NOTIFY_* / SMTP_URL / HEARTBEAT_URL / RESTORE_DRILL_URL variables; one module per channel (`mail`,
`webhook`, `heartbeat`); `delivery` sends in the background with retries; `staleness` (the alarm,
with storage/status.py's rule) and `drill` produce events of their own; `reporter` is the
per-process hub; `stored` is what happens around a stored backup (report, drill, staleness watch).
The commands live in `backup_svc/commands/`. Nothing here imports Flask or `config`.
"""
