"""PostgreSQL helpers: client binaries, server facts, error diagnosis, scrubbing, a throwaway cluster."""
