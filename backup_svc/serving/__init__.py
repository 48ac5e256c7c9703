"""Serving the web app under gunicorn: its configuration and worker (with what it reads, sends and caps: arrival, outbox, clientcap), the access log, and the socket-level
probes a download uses (bytes the client acknowledged, is the client still connected). No Flask here."""
