"""openmm-hybrid: fast hybrid ML/MM molecular dynamics for OpenMM.

Importing this package loads the plugin libraries into OpenMM (no environment variables needed)
and provides:

- :class:`MLForce`: a PyTorch model evaluated on a subset of atoms (the ML region) inside an OpenMM
  Context, on the Reference, CPU and CUDA platforms.  It is a real :class:`openmm.Force`.
- :func:`createMixedSystem`: an ML/MM System from an MM System (mechanical embedding, optional
  lambda interpolation, the correction in its own force group for multiple time steps) or
  electrostatic embedding, with
  :func:`selectAtoms`, :func:`interpolationEnergies` and :func:`mtsGroups`.
- :class:`MTSIntegrator` and :class:`MTSLangevinIntegrator`: native multiple-time-step integrators
  (drop-in for OpenMM's Python ones), and :func:`createMTSIntegrator` for mixed Systems.
- :mod:`openmmhybrid.embedding`: electrostatic embedding terms (fixed-charge Coulomb, Thole
  polarization) for ``createMixedSystem(..., embedding='electrostatic')``.
- :mod:`openmmhybrid.models`: models by name (``'ani1x'``) and the registry for new ones.

This build is bound to the OpenMM and torch versions in :data:`build_info`.
"""
import torch  # noqa: F401  (loads libtorch before the plugin libraries that link it)
import openmm  # noqa: F401

from ._version import __version__
from ._loader import load_plugins, plugin_directory, build_info
from .mlforce import MLForce
from .mixed import createMixedSystem, interpolationEnergies
from .utils import LAMBDA_PARAMETER
from .selection import selectAtoms
from .integrators import MTSIntegrator, MTSLangevinIntegrator, createMTSIntegrator, mtsGroups
from .compiled import compileModel
from . import models
from . import embedding

load_plugins()


def versionReport():
    """The versions a bug report needs, one per line: openmm-hybrid, OpenMM and torch (each with the
    version this build was compiled against) and the CPU kernels torch uses
    (``torch.backends.cpu.get_cpu_capability()``, set by the processor or ``ATEN_CPU_CAPABILITY``)."""
    import torch as _torch
    built = build_info or {}
    return "\n".join([
        f"openmm-hybrid {__version__}",
        f"OpenMM {openmm.__version__} (built against {built.get('openmm', 'unknown')})",
        f"torch {_torch.__version__} (built against {built.get('torch', 'unknown')}), "
        f"CPU capability {_torch.backends.cpu.get_cpu_capability()}",
    ])

__all__ = ["MLForce", "compileModel", "createMixedSystem", "selectAtoms", "interpolationEnergies", "mtsGroups", "LAMBDA_PARAMETER",
           "MTSIntegrator", "MTSLangevinIntegrator", "createMTSIntegrator",
           "models", "embedding", "build_info", "plugin_directory", "versionReport"]
