"""
``python -m systemflow``: the ``systemflow`` command.
"""

import sys

from ._cli import main

sys.exit(main())
