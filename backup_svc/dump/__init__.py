"""The dump path: pg_dump → gzip as a stream, its completion check and its progress. Knows nothing of HTTP."""
