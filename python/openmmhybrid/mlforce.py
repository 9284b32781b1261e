"""MLForce: a PyTorch model evaluated on the ML region inside an OpenMM Context."""
import io
import os
import warnings

import openmm
import openmm.unit as unit
import torch

from . import _openmmhybrid as _core
from .adapters import scriptModule
from .utils import atomIndices, mdValue


def _model_bytes(model):
    """The bytes of a TorchScript archive for a ScriptModule or nn.Module (scripted here)."""
    scripted = scriptModule(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
        torch.jit.save(scripted, buffer)
    return buffer.getvalue()


class MLForce(openmm.Force):
    """A force computed by a PyTorch model on a subset of the System's particles (the ML region).

    Parameters
    ----------
    model : str, os.PathLike, torch.nn.Module, torch.jit.ScriptModule or bytes
        A TorchScript file written by ``torch.jit.save``, a package written by
        :func:`~openmmhybrid.compileModel` (``.pt2``), a module (scripted with ``torch.jit.script``
        for you), or the bytes of either kind of file.  The model is stored inside the force, so
        serializing the System keeps it.
    atoms : sequence of int
        The particle indices of the ML region, in the order the model sees them.
    usesPeriodicBoundaryConditions, outputsForces, usesDoublePrecision : bool, optional
        Shortcuts for the setters of the same names.

    The model computes the region's energy, ``forward(positions[, box][, p1, p2, ...]) -> energy``
    (positions ``[n, 3]`` in nm in the order of ``atoms``, the box ``[3, 3]`` in nm when periodic,
    one scalar per global parameter; energy in kJ/mol), or ``(energy, forces)`` with
    :meth:`setOutputsForces`; with :meth:`setEmbedding` it also takes ``mm_positions, mm_charges,
    mm_mask`` after the box.  The full contract is section 4 of ``docs/user_guide.md``.

    Inputs are float32 unless :meth:`setUsesDoublePrecision` is on.  Every problem (bad atom
    indices, unreadable model, wrong signature or output, non-finite energy) raises
    :class:`openmm.OpenMMException` (or ``TypeError``/``ValueError``) with a message that says what
    is wrong.

    Examples
    --------
    >>> force = MLForce("model.pt", atoms=range(18))
    >>> force.setForceGroup(1)
    >>> system.addForce(force)
    """

    def __init__(self, model, atoms, usesPeriodicBoundaryConditions=None, outputsForces=None, usesDoublePrecision=None):
        atoms = atomIndices(atoms, "MLForce")
        if isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if not os.path.exists(path):
                raise FileNotFoundError(f"MLForce: the model file '{path}' does not exist. Give the path of a TorchScript "
                                        "file written by torch.jit.save(), or pass the torch.nn.Module itself.")
            handle = _core.MLForce_fromFile(path, atoms)
        elif isinstance(model, (bytes, bytearray)):
            handle = _core.MLForce_fromBytes(bytes(model), atoms)
        else:
            handle = _core.MLForce_fromBytes(_model_bytes(model), atoms)
        self.this = handle.this
        if usesPeriodicBoundaryConditions is not None:
            self.setUsesPeriodicBoundaryConditions(usesPeriodicBoundaryConditions)
        if outputsForces is not None:
            self.setOutputsForces(outputsForces)
        if usesDoublePrecision is not None:
            self.setUsesDoublePrecision(usesDoublePrecision)

    @staticmethod
    def isinstance(force):
        """Whether ``force`` (any :class:`openmm.Force`) is an MLForce underneath."""
        return isinstance(force, openmm.Force) and _core.isMLForce(force)

    @classmethod
    def cast(cls, force):
        """The typed MLForce behind an :class:`openmm.Force`, e.g. one from ``System.getForce(i)``.

        The result refers to the same C++ object (changes affect the System); raises ``TypeError``
        if ``force`` is not an MLForce.
        """
        if isinstance(force, cls):
            return force
        if not cls.isinstance(force):
            raise TypeError(f"MLForce.cast: {force!r} is not an MLForce (it is a {type(force).__name__} named "
                            f"'{force.getName() if isinstance(force, openmm.Force) else '?'}')")
        typed = cls.__new__(cls)
        typed.this = force.this
        return typed

    def __repr__(self):
        return f"<openmmhybrid.MLForce with {len(self.getAtoms())} ML atoms, group {self.getForceGroup()}>"

    def getModelData(self):
        """The bytes of the TorchScript archive stored in the force (``torch.jit.load(io.BytesIO(data))``)."""
        return _core.getModelData(self)

    def getModel(self):
        """A copy of the stored model as a ``torch.jit.ScriptModule``."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
            return torch.jit.load(io.BytesIO(self.getModelData()))

    def getFile(self):
        """The file the model was read from, or ``''`` if it was given as a module."""
        return _core.getFile(self)

    def getAtoms(self):
        """The particle indices of the ML region, in the order the model sees them."""
        return list(_core.getAtoms(self))

    def setAtoms(self, atoms):
        """Replace the ML region (non-empty, no duplicates).  Reinitialize Contexts to apply it."""
        _core.setAtoms(self, atomIndices(atoms, "MLForce.setAtoms"))

    def setUsesPeriodicBoundaryConditions(self, periodic):
        """Pass the box vectors ([3, 3], nm) to the model as its second argument and make the
        region whole before the model sees it."""
        _core.setUsesPeriodicBoundaryConditions(self, bool(periodic))

    def setOutputsForces(self, outputsForces):
        """Whether the model returns ``(energy, forces)`` rather than the energy alone."""
        _core.setOutputsForces(self, bool(outputsForces))

    def getOutputsForces(self):
        """Whether the model returns ``(energy, forces)``."""
        return _core.getOutputsForces(self)

    def setUsesDoublePrecision(self, useDouble):
        """Hand the model float64 tensors (True) or float32 tensors (False, the default)."""
        _core.setUsesDoublePrecision(self, bool(useDouble))

    def getUsesDoublePrecision(self):
        """Whether the model receives float64 tensors."""
        return _core.getUsesDoublePrecision(self)

    def getNumGlobalParameters(self):
        """The number of global parameters."""
        return _core.getNumGlobalParameters(self)

    def addGlobalParameter(self, name, defaultValue):
        """Add a global parameter, passed to the model as a scalar tensor after positions (and box).

        ``defaultValue`` may be a number or an ``openmm.unit`` Quantity (converted to MD units).
        Change it in a Context with ``context.setParameter(name, value)``.  Returns its index.
        """
        return _core.addGlobalParameter(self, name, mdValue(defaultValue))

    def getGlobalParameterName(self, index):
        """The name of a global parameter."""
        return _core.getGlobalParameterName(self, index)

    def setGlobalParameterName(self, index, name):
        """Rename a global parameter."""
        _core.setGlobalParameterName(self, index, name)

    def getGlobalParameterDefaultValue(self, index):
        """The default value of a global parameter (MD units)."""
        return _core.getGlobalParameterDefaultValue(self, index)

    def setGlobalParameterDefaultValue(self, index, defaultValue):
        """Set the default value of a global parameter (number or Quantity)."""
        _core.setGlobalParameterDefaultValue(self, index, mdValue(defaultValue))

    def addEnergyParameterDerivative(self, name):
        """Report dE/d(name) in ``State.getEnergyParameterDerivatives()`` (computed by autograd)."""
        _core.addEnergyParameterDerivative(self, name)

    def getNumEnergyParameterDerivatives(self):
        """The number of requested energy parameter derivatives."""
        return _core.getNumEnergyParameterDerivatives(self)

    def getEnergyParameterDerivativeName(self, index):
        """The name of the index'th requested energy parameter derivative."""
        return _core.getEnergyParameterDerivativeName(self, index)

    def setProperty(self, name, value):
        """Set a platform property.  Unknown names raise; :meth:`getSupportedProperties` lists the
        known ones:

        - ``modelThreads`` (Reference/CPU): CPU threads the model runs on; ``0`` keeps torch's
          setting.  Default 1 on the CPU platform (OpenMM's own threads compute PME and the
          nonbonded forces at the same time), 0 on Reference.
        - ``useCUDAGraphs`` (CUDA): ``"true"`` runs the whole evaluation as one CUDA graph.
        - ``CUDAGraphWarmupSteps`` (CUDA): eager evaluations before the capture (default 3).
        """
        if isinstance(value, bool):
            value = "true" if value else "false"
        _core.setProperty(self, name, str(value))

    def getProperties(self):
        """The properties set with :meth:`setProperty`, as a dict."""
        return dict(_core.getProperties(self))

    def setEmbedding(self, cutoff, charges):
        """Turn on electrostatic embedding.

        Parameters
        ----------
        cutoff : float or openmm.unit.Quantity
            A particle enters the environment when it is within this distance (nm) of any ML atom.
        charges : sequence of float or Quantity
            One charge (e) per particle of the System, usually the NonbondedForce's charges
            (:func:`openmmhybrid.embedding.systemCharges`).  ML atoms' entries are ignored;
            particles with zero charge are never passed to the model.
        """
        if unit.is_quantity(charges):
            charges = charges.value_in_unit(unit.elementary_charge)
        values = [mdValue(q) for q in charges]
        _core.setEmbedding(self, mdValue(cutoff), values)

    def usesEmbedding(self):
        """Whether electrostatic embedding is on."""
        return _core.usesEmbedding(self)

    def getEmbeddingCutoff(self):
        """The embedding cutoff as a Quantity in nm (0 nm when embedding is off)."""
        return _core.getEmbeddingCutoff(self) * unit.nanometer

    def getEmbeddingCharges(self):
        """The per-particle embedding charges (plain floats, e)."""
        return list(_core.getEmbeddingCharges(self))

    def setEmbeddingCapacity(self, capacity):
        """The initial size of the environment arrays (0: from the first evaluation, +25%)."""
        _core.setEmbeddingCapacity(self, int(capacity))

    def getEmbeddingCapacity(self):
        """The initial capacity set with :meth:`setEmbeddingCapacity`."""
        return _core.getEmbeddingCapacity(self)

    def getNumEnvironmentAtoms(self, context):
        """The number of MM particles the model saw at the last evaluation in ``context``."""
        return _core.getNumEnvironmentAtoms(self, context)

    def getEnvironmentCapacity(self, context):
        """The current size of the environment arrays in ``context`` (it grows when needed)."""
        return _core.getEnvironmentCapacity(self, context)

    def getNumModelCalls(self, context):
        """How many times the model has been evaluated in ``context`` (an :class:`openmm.Context`
        whose System holds this force).  With a multiple-time-step integrator it shows that the ML
        force runs only on the outer steps."""
        return _core.getNumModelCalls(self, context)

    @staticmethod
    def getSupportedProperties():
        """The property names :meth:`setProperty` accepts."""
        return list(_core.getSupportedProperties())
