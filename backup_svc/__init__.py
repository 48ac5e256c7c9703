"""backup_svc: streamed PostgreSQL backups, served over HTTP and kept in object storage.

Rooms: `pg` (PostgreSQL client programs and facts), `dump` (pg_dump → gzip), `files` (reading,
verifying and restoring backup files), `web` (the Flask app under gunicorn). Importing this package
loads nothing heavy: `verify` and `restore` never load Flask.
"""
