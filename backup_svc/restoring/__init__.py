"""Getting a database back: restore a backup into a new database, check its rows, swap it in for the
live one under a deadline (every step undone on failure), undo that swap, drop what was kept.

Knows nothing of Flask: the web layer (web/restores.py) and the shell (`restore --replace`) call it
with plain arguments. Never imports `config`.
"""
