"""``python -m skcgcnn``: the command line, where the ``skcgcnn`` script is not on the path."""

import sys

from .cli import main

sys.exit(main())
