"""backup_svc: streamed PostgreSQL backups, served over HTTP and kept in object storage.

Rooms, from the top: `cli` and `commands` (the command line), `web` (the Flask app) and `serving`
(gunicorn around it, handed the app by `cli`), `config` (the settings, composing each room's), then the
rooms below it, which never import `config`: `restoring` (a database brought back: into a new one, or
swapped in with an undo), `runs` (stored backups inside `serve`, on the schedule or by hand), `notify`
(mail, webhook, heartbeat, staleness, restore drills), `history` (the durable audit trail and runs in
the bucket), `storage` (stored backups in S3-compatible object storage or on rclone remotes, their
retention and the dedup format), `files` (reading, verifying and restoring backup files, in parallel
with `files/parallel`), `dump` (pg_dump → gzip and its progress), `pg` (connection strings, PostgreSQL
client programs and facts), `crypto` (age); small modules at the root: `problems` (ConfigError),
`draining`, `links`, `clientaddress`, `timefmt`, `demo`. No room imports one above it. Importing this
package loads nothing heavy: `verify` and `restore` never load Flask.
"""
