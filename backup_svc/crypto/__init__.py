"""Stored backups encrypted with age (https://age-encryption.org): the keys (`keys`), the streaming
encryptor and decryptor (`stream`) and the settings (`settings`). Built on pyrage, the Rust `age`
crate's Python binding; the bytes are the standard age format the reference `age` tool reads.
Nothing here imports Flask, botocore or the config.
"""
