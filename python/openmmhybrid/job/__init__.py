"""Runs from a config file: what the ``openmm-hybrid`` command does, as a library.

- :mod:`~openmmhybrid.job.config`: the settings (TOML file and flags), checked and converted.
- :mod:`~openmmhybrid.job.inputs`: Amber, PDB + force field, serialized System, or SDF (openff) input.
- :mod:`~openmmhybrid.job.runner`: :func:`runJob` builds the ML/MM System and runs it.
- :mod:`~openmmhybrid.job.outputs`: the names of the output files and of the ``energies.csv`` columns.
- :mod:`~openmmhybrid.job.reporters`: the OpenMM reporters of a run (energy CSV, progress bar, checkpoints).
- :mod:`~openmmhybrid.job.report`: ``report.md`` with plots, written from a finished run's outputs.

Example::

    from openmmhybrid.job import loadConfig, runJob
    runJob(loadConfig("run.toml", {"steps": 1000}))
"""
from .config import ConfigError, loadConfig, templateConfig
from .runner import prepare, runJob
from .report import writeReport

__all__ = ["ConfigError", "loadConfig", "templateConfig", "prepare", "runJob", "writeReport"]
