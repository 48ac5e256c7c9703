"""The command-line subcommands of the storage and notification rooms (`upload`, `list`, `prune`,
`notify-test`, `drill`, ...) and `check` (can this process do its job? `check.py`). They sit above `config`: they load the settings and call the rooms below."""
