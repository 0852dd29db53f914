"""``python -m pellucid`` = the ``pellucid`` command."""

import sys

from pellucid.cli.main import main

sys.exit(main())
