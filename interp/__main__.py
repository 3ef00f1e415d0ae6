"""`python -m interp ...`: see interp.cli."""
import sys

from .cli import main

sys.exit(main())
