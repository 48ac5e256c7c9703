"""The command-line subcommands of the storage and notification rooms (`upload`, `list`, `prune`,
`notify-test`, `drill`, ...). They sit above `config`: they load the settings and call the rooms below."""
