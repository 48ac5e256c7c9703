"""Stored backups run inside the web worker, on BACKUP_SCHEDULE or by hand: the one room that ties
`storage` (the upload), `notify` (what an admin is told) and `history` (what is recorded) together, so
that none of those three imports another's runs. Never loads Flask."""
