"""PostgreSQL helpers: connection strings (`conninfo`), client binaries and where to look for them
(`binaries`), server facts, error diagnosis, scrubbing, a throwaway cluster. Imports no settings."""
