"""openmm-hybrid's models as openmm-ml potentials.

openmm-ml (``openmmml``) looks up potentials by name in the entry-point group
``openmmml.potentials``.  openmm-hybrid declares one entry per built-in model, named
``hybrid-<model>`` (``hybrid-ani1x``, ...), all served by :class:`HybridPotentialImplFactory`, so
that openmm-ml's own API runs the project's models inside an :class:`~openmmhybrid.MLForce` (no
Python callback, no host round trip)::

    from openmmml import MLPotential
    potential = MLPotential("hybrid-ani1x")
    system = potential.createSystem(topology)                          # the whole System is ML
    mixed = potential.createMixedSystem(topology, mmSystem, ligandAtoms)  # openmm-ml's embedding

The ``hybrid-`` prefix keeps the names apart from openmm-ml's own (its ``ani1x`` runs torchani
through a PythonForce).  Keyword arguments of ``createSystem``/``createMixedSystem`` that the
model factory takes (``weightsDir``, ...) go to it; ``precision='double'`` (or
``usesDoublePrecision=True``) hands the model float64 positions.  openmm-ml is not a dependency of
openmm-hybrid: this module is imported only through the entry point or by a user.
"""
from openmmml.mlpotential import MLPotentialImpl, MLPotentialImplFactory

from . import adapters, models
from .mlforce import MLForce
from .regionmodel import regionModel

__all__ = ["PREFIX", "HybridPotentialImplFactory", "HybridPotentialImpl"]

#: The prefix of openmm-hybrid's potential names in openmm-ml.
PREFIX = "hybrid-"

# Arguments openmm-ml's createSystem/createMixedSystem pass on that are not the model's.
_OPENMM_ML_ARGUMENTS = {"removeCMMotion", "linkAtomDistances", "mlLongRange", "returnInfo", "interpolate",
                        "embedding", "removeConstraints"}


class HybridPotentialImplFactory(MLPotentialImplFactory):
    """Creates a :class:`HybridPotentialImpl` for a name ``hybrid-<model>``."""

    def createImpl(self, name, **args):
        model = name[len(PREFIX):] if name.startswith(PREFIX) else name
        if model.lower() not in models.availableModels():
            raise ValueError(f"openmm-hybrid has no model {model!r} (from the openmm-ml name {name!r}). Available: "
                             f"{', '.join(PREFIX + m for m in models.availableModels())}")
        return HybridPotentialImpl(model, **args)


class HybridPotentialImpl(MLPotentialImpl):
    """An openmm-ml potential that adds one :class:`~openmmhybrid.MLForce` running the
    openmm-hybrid model ``model`` on the atoms openmm-ml gives (link-atom caps included: they are
    hydrogens in the Topology openmm-ml passes)."""

    def __init__(self, model, **args):
        self.model = model
        self.args = dict(args)

    def addForces(self, topology, system, atoms, forceGroup, **args):
        atoms = list(range(topology.getNumAtoms())) if atoms is None else list(atoms)
        options = dict(self.args)
        options.update(args)
        double = bool(options.pop("usesDoublePrecision", False)) or options.pop("precision", "single") == "double"
        modelArgs = {k: v for k, v in options.items() if k not in _OPENMM_ML_ARGUMENTS}
        module = models.createModel(self.model, topology, atoms, **modelArgs)
        periodic = system.usesPeriodicBoundaryConditions()
        force = MLForce(regionModel(adapters.scriptModule(module, f"MLPotential({PREFIX}{self.model})"), periodic,
                                    interpolate=False), atoms, usesPeriodicBoundaryConditions=periodic,
                        usesDoublePrecision=double)
        force.setForceGroup(forceGroup)
        force.setName(f"openmm-hybrid {self.model} (openmm-ml potential {PREFIX}{self.model})")
        system.addForce(force)

    def getMLLongRange(self):
        """The built-in models are local (finite cutoffs): no long-range ML interactions."""
        return False
