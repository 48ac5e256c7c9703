"""`python -m backup_svc`."""
import sys

from .cli import main

sys.exit(main())
