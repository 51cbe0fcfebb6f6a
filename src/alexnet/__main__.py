"""`python -m alexnet` works like the `alexnet` command."""

import sys

from alexnet.cli import main

sys.exit(main())
