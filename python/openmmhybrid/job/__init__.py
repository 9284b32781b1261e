"""Runs from a config file: what the ``openmm-hybrid`` command does, as a library.

- :mod:`~openmmhybrid.job.config`: the settings (TOML file and flags), checked and converted.
- :mod:`~openmmhybrid.job.inputs`: Amber, PDB + force field, serialized System, or SDF (openff) input.
- :mod:`~openmmhybrid.job.runner`: :func:`runJob` builds the ML/MM System and runs it.
- :mod:`~openmmhybrid.job.reporting`: CSV of energy components, progress bar, checkpoints.
- :mod:`~openmmhybrid.job.report`: ``report.md`` with plots.

Example::

    from openmmhybrid.job import loadConfig, runJob
    runJob(loadConfig("run.toml", {"steps": 1000}))
"""
from .config import ConfigError, loadConfig, templateConfig
from .runner import prepare, runJob
from .report import writeReport

__all__ = ["ConfigError", "loadConfig", "templateConfig", "prepare", "runJob", "writeReport"]
