"""`python -m interp ...`: see interp.cli.main."""
import sys

from interp.cli.main import main

sys.exit(main())
