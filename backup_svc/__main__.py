"""`python -m backup_svc`."""

import sys

from backup_svc.cli import main

sys.exit(main())
