"""The durable history: audit entries and outcomes as small immutable JSON objects under
`<prefix>_history/<YYYY>/<MM>/<DD>/` in the backups' bucket, written in the background, read back as one
merged view by every process (event, bucket, writer, reader, trail, summary, hooks, check, retention)."""
