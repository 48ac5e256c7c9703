"""What the age encryptor and decryptor share: the format's magic line, the `.age` name, the exceptions
every caller catches, and the small bounded queue that joins a caller to pyrage's helper thread.

pyrage's `encrypt_io` / `decrypt_io` pull from a reader and push into a writer, releasing the GIL
while they work; a backup is pushed chunk by chunk and restores pull it. So each side runs pyrage
in one helper thread (encrypt.py, decrypt.py), joined to the caller by a queue of at most a few
chunks, and any error on either side is raised in the caller's thread.
"""

from __future__ import annotations

AGE_MAGIC = b"age-encryption.org/v1\n"
ENCRYPTED_SUFFIX = ".age"
# Chunks waiting between the caller and pyrage's thread: with the dump's ~64 KiB chunks, well under
# a megabyte in flight.
QUEUE_CHUNKS = 8
POLL_S = 0.2
EOF = None  # the queue item that ends a stream


class EncryptionFailed(Exception):
    """Encrypting stopped (or produced something that is not age); nothing may be stored."""


class DecryptionFailed(Exception):
    """The bytes cannot be decrypted to intact plaintext (wrong key, truncated, altered); one-line message."""


class IdentityNeeded(DecryptionFailed):
    """The backup is age-encrypted and no identity was given."""


class WrongIdentity(DecryptionFailed):
    """The backup is age-encrypted to keys none of the given identities match."""


def is_encrypted_name(name: str) -> bool:
    """Whether a backup's name says it is age-encrypted (`….sql.gz.age`)."""
    return name.endswith(ENCRYPTED_SUFFIX)


class Stopped(Exception):
    """The caller stopped the helper thread's work (abort, or closed early)."""
