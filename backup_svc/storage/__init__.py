"""Stored (off-site) backups in S3-compatible object storage.

One module per concern: `location` (where: s3:// URLs, object names), `client` (the S3 client from
the standard AWS_* variables, timeouts, retries), `upload` (a streaming multipart sink) and
`metadata` (its end: the sha256 attached, size and sha256 read back), `listing`, `retention`
(which backups to keep), `prune` (deleting the rest), `schedule` (cron times), `reader` (an object
as a stream), `lock` (one stored backup at a time), `run` (one stored backup, start to finish),
`settings` (validated by config.py), and the commands: `commands` (upload, list, prune) and
`from_bucket` (verify and restore of s3:// URLs). Nothing here imports
Flask, and this file imports nothing: `verify` of a local file never loads boto3.
"""
