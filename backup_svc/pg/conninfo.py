"""Connection strings: a libpq URI parsed into what may be shown (argv, logs) and the password."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

_ENCODE_HINT = (
    "a '/', '?', '#', '@', '[' or ']' in the user name or password must be percent-encoded "
    "(%2F, %3F, %23, %40, %5B, %5D)"
)


@dataclass(frozen=True)
class ConnInfo:
    """A libpq URI split into what may be shown (argv, logs) and the password, which may not."""

    uri: str  # the URI without its password: safe for argv and logs
    password: str | None
    dbname: str
    host: str
    port: int | None
    user: str | None

    def libpq_env(self) -> dict[str, str]:
        """Environment variables that hand the password to a libpq client."""
        return {"PGPASSWORD": self.password} if self.password is not None else {}


def parse_database_url(url: str) -> ConnInfo:
    """Parse a `postgres://` / `postgresql://` URI; raise ValueError saying what is wrong."""
    # No message here may quote the URL: wherever parsing goes wrong, the text at hand may be part
    # of the password (urlsplit's own errors quote it, e.g. "could not be cast to integer value as 'pa'").
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"is not a valid URI; {_ENCODE_HINT}") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("must start with postgres:// or postgresql://")
    if "@" in parts.path or "@" in parts.query or "@" in parts.fragment:
        # `user:pa/ss@host` parses as host "user", port "pa", database "ss@host": the part after the
        # '/', '?' or '#' would end up in pg_dump's argv and in error messages.
        raise ValueError(f"has an '@' after its host part; {_ENCODE_HINT}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    password = unquote(parts.password) if parts.password is not None else None
    kept_query = []
    for key, value in query:
        if key == "password":  # libpq also accepts the password as a query parameter
            password = value
        else:
            kept_query.append((key, value))
    dbname = unquote(parts.path.lstrip("/"))
    params = dict(kept_query)
    dbname = params.get("dbname", dbname)
    if not dbname:
        raise ValueError("names no database (expected postgresql://user:password@host:port/dbname)")
    host = parts.hostname or params.get("host", "")
    if not host:
        raise ValueError("names no host")
    user = unquote(parts.username) if parts.username is not None else params.get("user")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if parts.username is not None:
        netloc = f"{quote(unquote(parts.username), safe='')}@{netloc}"
    safe_uri = f"postgresql://{netloc}{parts.path}"
    if kept_query:
        safe_uri += "?" + urlencode(kept_query)
    return ConnInfo(uri=safe_uri, password=password, dbname=dbname, host=host, port=port, user=user)
