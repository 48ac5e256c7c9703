"""Stored (off-site) backups in S3-compatible object storage.

One module per concern: `location` (where: s3:// URLs, object names), `client` (the S3 client from
the standard AWS_* variables, timeouts, retries), `upload` (a streaming multipart sink), `listing`,
`retention` (which backups to keep), `prune` (deleting the rest), `schedule` (cron times),
`reader` (an object as a stream) and `lock` (one stored backup at a time). Nothing here imports
Flask, and this file imports nothing: `verify` of a local file never loads boto3.
"""
