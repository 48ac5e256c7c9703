"""Backup files: reading them, scanning their SQL, verify and restore."""
