"""Serving the web app under gunicorn: its configuration and worker, the access log, and the socket-level
probes a download uses (bytes the client acknowledged, is the client still connected). No Flask here."""
