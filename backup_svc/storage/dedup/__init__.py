"""Deduplicated stored backups (BACKUP_STORAGE_FORMAT=dedup): the plain SQL cut into content-defined
chunks stored once under keyed ids, plus one manifest per backup (docs/storage.md, "Stored format")."""
