"""Backup files: reading them, scanning their SQL, verify and restore (one psql, or N connections: `parallel`)."""
