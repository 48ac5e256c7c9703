"""The dump path: pg_dump → gzip as a stream (`pipeline`), the options it takes (`options`), its
completion check, row counts and progress, and this process's running dumps (`registry`). Knows
nothing of HTTP and takes `DumpOptions`, never the whole Settings."""
