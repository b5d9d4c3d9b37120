"""
``python -m systemflow._cli``: the ``systemflow`` command.
"""

import sys

from ._app import main

sys.exit(main())
