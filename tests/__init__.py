"""The test suite, by kind (unit, service, browser, image), with shared helpers in modules by role."""

from pathlib import Path

# The checkout: the package's files, docs/, artifacts/ (screenshots).
REPO = Path(__file__).resolve().parent.parent
