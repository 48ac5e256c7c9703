"""Parallel restore of a plain pg_dump `.sql.gz` into a new database (`restore --create --jobs N`):
the script split into its sections as it streams, table data and index builds on N connections."""
