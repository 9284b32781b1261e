"""ML models by name.

A model name maps to a *factory*: a callable ``factory(topology, atoms, **kwargs)`` that returns a
``torch.nn.Module`` (or ``torch.jit.ScriptModule``) following the MLForce model contract for the
region ``atoms`` of ``topology``, in that order::

    forward(positions[, box]) -> energy        # nm in, kJ/mol out

Built in (the project's static-shape ANI, :class:`~openmmhybrid.models.ani.ANI`, with three
weight sets; ``openmm-hybrid models`` lists them with where their weights are):

``'ani1x'``
    :class:`~openmmhybrid.models.ani.ANI1x` (8-network ensemble, H/C/N/O), with the weights that
    ``torchani==2.2.4`` ships (no download).
``'ani1ccx'``
    :class:`~openmmhybrid.models.ani.ANI1ccx` (H/C/N/O), with the weights that
    ``python/fetch_ani_weights.py`` extracts from the torchani 2.0 wheel at set-up (``make
    build``) into :func:`~openmmhybrid.models.ani.weightsRoot`; never downloaded at run time.
``'ani2x'``
    :class:`~openmmhybrid.models.ani.ANI2x` (H/C/N/O/F/S/Cl), with weight files the user gives:
    ``modelArgs={'weightsDir': folder}``, or an ``ani-2x_8x`` folder under
    :func:`~openmmhybrid.models.ani.weightsRoot`.  No package on the package index ships them.

New backends need no edit of this package.  Either call :func:`registerModel` at import time, or
declare an entry point in the ``openmmhybrid.models`` group of your own package::

    [project.entry-points."openmmhybrid.models"]
    mymodel = "mypackage.openmm:create_my_model"

Entry points are looked up the first time a name is not found among the registered ones.
"""
import importlib
import importlib.metadata
import inspect
import os

import torch

__all__ = ["registerModel", "createModel", "availableModels", "atomicNumbers", "describeModels", "requireElements",
           "modelFile", "packedIndices", "takesCharge", "ADAPTERS", "EV_TO_KJ_PER_MOL", "KCAL_TO_KJ"]

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


def requireElements(topology, atoms, elements, label):
    """Raise ValueError naming the first atom of ``atoms`` whose element is not in ``elements``.

    Parameters
    ----------
    topology : openmm.app.Topology
    atoms : sequence of int
        The ML region (indices into ``topology``).
    elements : collection of str or int
        The element symbols (``'C'``) or atomic numbers the model covers.
    label : str
        The model's name in the message (``'ANI-1x'``, ``'the MACE model in x.model'``).

    Returns
    -------
    list of int
        The region's atomic numbers, in the order of ``atoms``.
    """
    from .ani import _listing
    covered = {e if isinstance(e, int) else _symbolNumber(e) for e in elements}
    numbers = atomicNumbers(topology, atoms)
    topologyAtoms = list(topology.atoms())
    for i, z in zip(atoms, numbers):
        if z not in covered:
            atom = topologyAtoms[i]
            symbols = [_numberSymbol(n) for n in sorted(covered)]
            raise ValueError(f"ML atom {i} ({atom.name} of residue {atom.residue.name} {atom.residue.id}) is "
                             f"{atom.element.symbol}; {label} covers only {_listing(symbols)}. Leave it out of the ML "
                             "region or choose a model that covers it.")
    return numbers


#: One electronvolt in kJ/mol (CODATA 2018: e * N_A / 1000).
EV_TO_KJ_PER_MOL = 96.48533212331002
#: One kcal/mol in kJ/mol (thermochemical calorie).
KCAL_TO_KJ = 4.184


def modelFile(name, modelPath, fileName=None, url=None):
    """The path of the weight or model file of the model ``name``.

    ``modelPath`` (what the user gave: ``modelArgs={'modelPath': ...}``, the config's
    ``[ml] model_path``) if given; else ``fileName`` under the weights root
    (:func:`~openmmhybrid.models.ani.weightsRoot`) if it is there.

    Raises
    ------
    FileNotFoundError
        ``modelPath`` does not exist, or none was given and the default file is not installed;
        the message says where to get the file (``url``) and how to pass it.
    """
    if modelPath is not None:
        path = os.path.expanduser(os.fspath(modelPath))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{name}: the model file '{path}' does not exist. Give the path of the model's file "
                                    "(modelArgs={'modelPath': ...}; [ml] model_path in a config).")
        return path
    if fileName is not None:
        from .ani import weightsRoot
        path = os.path.join(weightsRoot(), fileName)
        if os.path.isfile(path):
            return path
        where = f" Download it{' from ' + url if url else ''} (nothing is downloaded at run time) and either pass" \
                f" it, or put it at '{path}'."
    else:
        where = ""
    raise FileNotFoundError(f"{name}: no model file given. Pass the path of the model's file with "
                            f"modelArgs={{'modelPath': ...}} (in a config: [ml] model_path = ...).{where}")


def packedIndices(inside, capacity: int, fill: int):
    """The indices of the True entries of ``inside`` (a 1-D bool tensor), in order, packed into
    ``capacity`` slots, the free slots holding ``fill``: a prefix sum and a scatter, so the shape
    does not depend on the data (no ``nonzero``) and a CUDA graph can capture it.  Entries beyond
    the capacity are dropped (the caller compares the count with the capacity).  TorchScript
    compiles it where a scripted model calls it; the static-shape ANI and MACE's edge list use it.
    """
    device = inside.device
    where = torch.where(inside, torch.cumsum(inside.to(torch.long), 0) - 1,
                        torch.full(inside.shape, capacity, dtype=torch.long, device=device))
    slots = torch.full((capacity + 1,), fill, dtype=torch.long, device=device)
    return slots.scatter(0, where, torch.arange(inside.shape[0], device=device))[:capacity]


def _symbolNumber(symbol):
    from openmm.app import element
    return element.get_by_symbol(symbol).atomic_number


def _numberSymbol(number):
    from openmm.app import element
    return element.Element.getByAtomicNumber(number).symbol


def _aniFactory(className, label, elements):
    """The factory of a built-in ANI model: checks the region's size and elements against the
    topology (naming the atom and its residue), then builds ``ani.<className>``."""

    def factory(topology, atoms, **kwargs):
        from . import ani
        need, have = ANI_BYTES_PER_ATOM_SQUARED * len(atoms) ** 2, _physical_memory()
        if have is not None and need > 0.5 * have:
            raise ValueError(f"the ML region has {len(atoms)} atoms; {label} here holds an n x n distance matrix and "
                             f"would need about {need / 2**30:.0f} GiB for one evaluation (this machine has "
                             f"{have / 2**30:.0f} GiB). Choose a smaller region: {label} is meant for a ligand, a pocket "
                             "or a reaction centre.")
        return getattr(ani, className)(requireElements(topology, atoms, elements, label), **kwargs)

    factory.__name__ = factory.__qualname__ = f"_{className.lower()}"
    return factory


_ani1x = _aniFactory("ANI1x", "ANI-1x", ("H", "C", "N", "O"))
_ani1ccx = _aniFactory("ANI1ccx", "ANI-1ccx", ("H", "C", "N", "O"))
_ani2x = _aniFactory("ANI2x", "ANI-2x", ("H", "C", "N", "O", "F", "S", "Cl"))

registerModel("ani1x", _ani1x)
registerModel("ani1ccx", _ani1ccx)
registerModel("ani2x", _ani2x)


#: The adapter modules of this package (``openmmhybrid.models.<module>``).  Each serves the names of
#: its ``NAMES`` (with their elements, charge support, weight source and licence) through its
#: ``create(topology, atoms, name=..., modelPath=..., ...)``, and imports its library only when a
#: model is built.
ADAPTERS = ("mace", "aimnet2", "torchmdnet", "nequip")


def _adapterModule(module):
    return importlib.import_module(f"{__name__}.{module}")


def _adapterFactory(module, name):
    create = _adapterModule(module).create

    def factory(topology, atoms, **kwargs):
        return create(topology, atoms, name=name, **kwargs)

    factory.__name__ = factory.__qualname__ = f"_{module}_{name}"
    factory.adapter = module
    factory.create = create
    return factory


for _module in ADAPTERS:
    for _name in _adapterModule(_module).NAMES:
        registerModel(_name, _adapterFactory(_module, _name))
del _module, _name


def takesCharge(name):
    """Whether the model registered as ``name`` takes the region's total charge (a ``charge``
    keyword): :func:`~openmmhybrid.createMixedSystem` then passes the region's MM charge, rounded,
    unless ``modelArgs`` gives one."""
    key = name.lower()
    if key not in _factories:
        _load_entry_points()
    factory = _factories.get(key)
    if factory is None:
        return False
    try:
        parameters = inspect.signature(getattr(factory, "create", factory)).parameters
    except (TypeError, ValueError):
        return False
    return "charge" in parameters


def _folderState(locate):
    """(folder, present) from ``locate()``, which returns the folder or raises with its path in the message."""
    try:
        return locate(), True
    except (FileNotFoundError, ImportError) as error:
        return str(error), False


def _builtInDescriptions():
    from . import ani
    rows = {}
    folder, present = _folderState(ani.defaultWeightsDir)
    rows["ani1x"] = dict(elements=["H", "C", "N", "O"], charge="neutral only (no charge input)",
                         source="the torchani 2.2.4 wheel (installed from requirements.lock)",
                         folder=folder if present else None, present=present,
                         licence="MIT (torchani)")
    folder = os.path.join(ani.weightsRoot(), "ani-1ccx_8x")
    rows["ani1ccx"] = dict(elements=["H", "C", "N", "O"], charge="neutral only (no charge input)",
                           source="the torchani 2.0 wheel, extracted at set-up (python/fetch_ani_weights.py, run by "
                                  "`make build`)", folder=folder, present=os.path.isdir(folder),
                           licence="MIT (torchani)")
    folder = os.path.join(ani.weightsRoot(), "ani-2x_8x")
    rows["ani2x"] = dict(elements=["H", "C", "N", "O", "F", "S", "Cl"], charge="neutral only (no charge input)",
                         source="your files: modelArgs={'weightsDir': folder}, or this default folder",
                         folder=folder, present=os.path.isdir(folder), licence="that of the files you give")
    return rows


def _adapterDescription(name, entry):
    from .ani import weightsRoot
    folder = os.path.join(weightsRoot(), entry["file"]) if entry.get("file") else None
    source = entry["source"]
    if entry.get("url"):
        source += f"; download: {entry['url']}"
    return dict(name=name, elements=entry.get("elements"), charge=entry.get("charge"), source=source, folder=folder,
                present=os.path.isfile(folder) if folder else None, licence=entry.get("licence"), modelFile=True)


def describeModels():
    """Every registered name with its elements and where its weights come from.

    Returns
    -------
    list of dict
        One per name, sorted: ``name``, ``elements`` (symbols, or None when unknown),
        ``charge`` (total-charge support), ``source`` (where the weights come from), ``folder``
        (the weights folder, or None), ``present`` (whether that folder exists; None when there is
        none) and ``licence``; for the adapters' names also ``modelFile`` (True: ``folder`` is the
        default model file, and elements None means those of the file).  Names registered by other
        packages say which factory they use.
    """
    builtIn = _builtInDescriptions()
    rows = []
    for name in availableModels():
        if name in builtIn and _factories[name] is globals()[f"_{name}"]:
            rows.append(dict(name=name, **builtIn[name]))
            continue
        adapter = getattr(_factories[name], "adapter", None)
        if adapter is not None:
            rows.append(_adapterDescription(name, _adapterModule(adapter).NAMES[name]))
            continue
        factory = _factories[name]
        where = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"
        rows.append(dict(name=name, elements=None, charge=None, source=f"registered: {where}", folder=None,
                         present=None, licence=None))
    return rows
