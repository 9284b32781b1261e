"""Deprecated alias of :mod:`openmmhybrid.job.reporters`; import from there."""
from .reporters import *  # noqa: F401,F403
from .outputs import CSV_COLUMNS  # noqa: F401
