"""backup_svc: streamed PostgreSQL backups, served over HTTP and kept in object storage.

Rooms, from the top: `cli` and `commands` (the command line), `web` (the Flask app) and `serving`
(gunicorn around it), `config` (the settings, composing each room's), then the rooms below it,
which never import `config`: `pg` (connection strings, PostgreSQL client programs and facts), `dump`
(pg_dump → gzip and its progress), `files` (reading, verifying and restoring backup files),
`storage` (stored backups in S3-compatible object storage, and their scheduler), `notify` (mail,
webhook, heartbeat, staleness, restore drills); small modules at the root: `problems`
(ConfigError), `draining`, `links`, `timefmt`, `demo`. Importing this package loads nothing heavy:
`verify` and `restore` never load Flask.
"""
