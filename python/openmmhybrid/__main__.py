"""``python -m openmmhybrid`` is the ``openmm-hybrid`` command."""
import sys

from .cli import main

sys.exit(main())
