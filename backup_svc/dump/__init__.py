"""The dump path: the pg_dump command (`invocation`), pg_dump → gzip as a stream (`pipeline`), one
attempt's record and how it ends (`attempt`), the options it takes (`options`), its completion check,
row counts and progress, and this process's running dumps (`registry`). Knows nothing of HTTP and takes
`DumpOptions`, never the whole Settings."""
