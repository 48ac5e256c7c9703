"""Stored (off-site) backups in S3-compatible object storage (and rclone remotes).

One module per concern: `location` (where: s3:// URLs, object names), `client` (the S3 client from
the standard AWS_* variables, timeouts, retries, whether an object exists), `upload` (a streaming
multipart sink) and `metadata` (its end: the sha256 attached, size and sha256 read back), `listing`,
`retention` (which backups to keep), `prune` (deleting the rest), `schedule` (cron times), `reader`
(an object as a stream), `lock` (one stored backup at a time), `take` (one stored backup, start to
finish; `rclone_store` on a remote), `status` (age and schedule in words, and the one staleness rule),
`settings` (composed by config.py); what people waiting on a page ask, within deadlines: `catalog`,
`presign`, `probe`, `bounded`, `on_demand` (`rclone_on_demand`); the demo's `loopback` S3 server;
`storeformat` and the `dedup` stored format (`dedup/`: chunks stored once plus a manifest per backup).
The commands live in `backup_svc/commands/`, the runs inside `serve` in `backup_svc/runs/`. Nothing
here imports Flask, `config`, `notify` or `history`, and this file imports nothing: `verify` of a local
file never loads botocore.
"""
