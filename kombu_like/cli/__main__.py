"""``python -m kombu_like.cli``: the ``kombu-like`` command."""

import sys

from . import main

sys.exit(main())
