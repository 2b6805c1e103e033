"""``python -m dcrepro`` = the ``dcrepro`` command (for machines where the package is on PYTHONPATH only)."""
import sys

from .cli import main

sys.exit(main())
