"""ML models by name.

A model name maps to a *factory*: a callable ``factory(topology, atoms, **kwargs)`` that returns a
``torch.nn.Module`` (or ``torch.jit.ScriptModule``) following the MLForce model contract for the
region ``atoms`` of ``topology``, in that order::

    forward(positions[, box]) -> energy        # nm in, kJ/mol out

Built in:

``'ani1x'``
    :class:`~openmmhybrid.models.ani.ANI1x`, the project's static-shape ANI-1x (8-network
    ensemble, H/C/N/O), with the weights that ``torchani==2.2.4`` ships (no download).

ANI-1ccx and ANI-2x are not built in: torchani 2.2.x on PyPI carries no usable weights for them
and nothing can be downloaded at run time.

New backends need no edit of this package.  Either call :func:`registerModel` at import time, or
declare an entry point in the ``openmmhybrid.models`` group of your own package::

    [project.entry-points."openmmhybrid.models"]
    mymodel = "mypackage.openmm:create_my_model"

Entry points are looked up the first time a name is not found among the registered ones.
"""
import importlib.metadata
import os

__all__ = ["registerModel", "createModel", "availableModels", "atomicNumbers"]

_factories = {}
_entry_points_loaded = False


def registerModel(name, factory):
    """Register ``factory(topology, atoms, **kwargs) -> torch.nn.Module`` under ``name``.

    Parameters
    ----------
    name : str
        The name users pass to :func:`createModel` and :func:`openmmhybrid.createMixedSystem`
        (case-insensitive).
    factory : callable
        Called as ``factory(topology, atoms, **kwargs)``; returns a module following the MLForce
        model contract for the atoms ``atoms`` of ``topology`` in that order.
    """
    if not callable(factory):
        raise TypeError(f"registerModel: the factory for {name!r} must be callable")
    _factories[name.lower()] = factory


def _load_entry_points():
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group="openmmhybrid.models"):
        if entry.name.lower() not in _factories:
            _factories[entry.name.lower()] = entry.load()


def availableModels():
    """The names :func:`createModel` accepts, sorted."""
    _load_entry_points()
    return sorted(_factories)


def createModel(name, topology, atoms, **kwargs):
    """Build the model registered as ``name`` for the region ``atoms`` of ``topology``.

    Parameters
    ----------
    name : str
        A registered name (see :func:`availableModels`), case-insensitive.
    topology : openmm.app.Topology
        The System's topology; the factory reads the region's elements from it.
    atoms : sequence of int
        The ML region, in the order the model sees the atoms.
    **kwargs
        Passed on to the factory.

    Returns
    -------
    torch.nn.Module
    """
    key = name.lower()
    if key not in _factories:
        _load_entry_points()
    if key not in _factories:
        raise ValueError(f"No ML model is registered under the name {name!r}. Available: "
                         f"{', '.join(availableModels()) or 'none'}. Pass a torch.nn.Module or a TorchScript file "
                         "instead, or register one with openmmhybrid.models.registerModel().")
    return _factories[key](topology, atoms, **kwargs)


def atomicNumbers(topology, atoms):
    """The atomic numbers of ``atoms`` of ``topology``; raises ValueError for a particle with no element."""
    topologyAtoms = list(topology.atoms())
    numbers = []
    for i in atoms:
        atom = topologyAtoms[i]
        if atom.element is None:
            raise ValueError(f"Atom {i} ({atom.name} of residue {atom.residue.name} {atom.residue.id}) has no element "
                             "(a virtual site or extra particle?); an ML model needs real atoms.")
        numbers.append(atom.element.atomic_number)
    return numbers


#: Peak memory of an ANI-1x forward + backward per squared region size, in bytes: the distance
#: matrix and the integer bookkeeping that packs the pairs inside the cutoff (the packed pairs and
#: triples themselves grow only linearly).
ANI_BYTES_PER_ATOM_SQUARED = 48.0


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _ani1x(topology, atoms, **kwargs):
    from .ani import ANI1x
    need, have = ANI_BYTES_PER_ATOM_SQUARED * len(atoms) ** 2, _physical_memory()
    if have is not None and need > 0.5 * have:
        raise ValueError(f"the ML region has {len(atoms)} atoms; ANI-1x here holds an n x n distance matrix and would "
                         f"need about {need / 2**30:.0f} GiB for one evaluation (this machine has {have / 2**30:.0f} "
                         "GiB). Choose a smaller region: ANI-1x is meant for a ligand, a pocket or a reaction centre.")
    topologyAtoms = list(topology.atoms())
    for i in atoms:
        atom = topologyAtoms[i]
        if atom.element is not None and atom.element.symbol not in ("H", "C", "N", "O"):
            raise ValueError(f"ML atom {i} ({atom.name} of residue {atom.residue.name} {atom.residue.id}) is "
                             f"{atom.element.symbol}; ANI-1x covers only H, C, N and O. Leave it out of the ML region "
                             "or choose a model that covers it.")
    return ANI1x(atomicNumbers(topology, atoms), **kwargs)


registerModel("ani1x", _ani1x)
