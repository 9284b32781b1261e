"""NequIP and Allegro models (nequip 0.19, nequip-allegro 0.8) from the user's compiled file, as
static-shape MLForce modules.

:func:`create` loads a model compiled by ``nequip-compile --mode torchscript`` (a
``*.nequip.pth`` TorchScript archive, with nequip's metadata -- ``type_names``, ``r_max``,
``model_dtype`` -- as extra files of the archive) and wraps it in :class:`NequIPModel`, which
builds nequip's ``AtomicDataDict`` from buffers fixed at set-up: the positions, the atom types,
and an ``edge_index`` of all ordered pairs ``i != j`` of the region (no cell: MLForce makes a
periodic region whole before calling the model).  All pairs are exact: nequip's and Allegro's
edge embeddings are multiplied by a polynomial cutoff that is ``0`` for ``r >= r_max`` (times
``x < 1``), and every later edge function is bias-free, so a pair beyond ``r_max`` adds exactly
zero to the energy and its gradient -- the tests compare with nequip's own neighbour-list
evaluation (its ASE calculator).  There is no ``nonzero``, boolean indexing or ``.item()`` in
:meth:`NequIPModel.forward`; the cost is ``n (n - 1)`` edges, meant for regions of tens to a few
hundred atoms.

Formats:

- ``*.nequip.pth`` (TorchScript, ``nequip-compile --mode torchscript``): served.  Loaded with
  ``torch.jit.load``, which has no ``weights_only`` mode: a TorchScript archive holds code (the
  model's compiled TorchScript program) that runs when the model runs.  Load only files you
  trust.  Its dtype is fixed at compile time (the TorchScript code holds the dtype), so the model
  runs in the file's ``model_dtype``; a ``precision`` that differs is refused.
- ``*.nequip.pt2`` (AOTInductor): not served.  It is a compiled shared library for one device and
  fixed input and output fields, run by ``torch._inductor.aoti_load_package``; it cannot be
  held inside a TorchScript module, which is what MLForce stores in the System.
- ``*.nequip.zip`` (``nequip-package``) and training checkpoints (``.ckpt``): not served.  They
  are ``torch.package`` archives and Lightning pickles (loading them runs pickled Python code,
  ``weights_only=False``) holding the eager model; compile them with ``nequip-compile --mode
  torchscript`` first.  nequip 0.19.1 refuses that mode under PyTorch >= 2.10, so compile in an
  environment with PyTorch < 2.10 (the ``.nequip.pth`` it writes loads here).

Units: nequip has none of its own; the model works in those of its training data.  ``lengthUnit``
and ``energyUnit`` (default Angstrom and eV, as openmm-ml's ``nequip`` potential) say which.

Types: a region atom's element symbol is looked up among the model's ``type_names``; a model
whose types are not element symbols needs ``typeNames={'C': 'C_sp3', ...}``.

Forces: the compiled model computes its own forces (autograd inside the TorchScript program);
:class:`NequIPModel` returns an energy whose gradient is exactly those forces (first derivatives
only: no Hessian through it).  NequIP and Allegro have no total-charge input.

nequip (``pip install nequip``; Allegro models also ``nequip-allegro``) is needed to build the
module; the scripted module that MLForce stores runs on PyTorch alone.
"""
import os
import warnings
from typing import Dict, Optional

import torch
from torch import Tensor

from . import EV_TO_KJ_PER_MOL, KCAL_TO_KJ, modelFile, requireElements

__all__ = ["NAMES", "NequIPModel", "create", "LENGTH_UNITS", "ENERGY_UNITS"]

_SOURCE = "your compiled model (nequip-compile --mode torchscript, *.nequip.pth)"

#: The model names this module serves.
NAMES = {
    "nequip": dict(elements=None, charge="neutral only (no charge input)",
                   source=_SOURCE + " of a NequIP model (nequip)", licence="that of the file you give",
                   file=None, url=None),
    "allegro": dict(elements=None, charge="neutral only (no charge input)",
                    source=_SOURCE + " of an Allegro model (nequip-allegro)", licence="that of the file you give",
                    file=None, url=None),
}

#: The Bohr radius in nm (CODATA 2018).
BOHR_IN_NM = 0.0529177210903
#: One Hartree in eV (CODATA 2018).
HARTREE_TO_EV = 27.211386245988

#: nm per model length unit, by name.
LENGTH_UNITS = {"angstrom": 0.1, "nm": 1.0, "bohr": BOHR_IN_NM}
#: kJ/mol per model energy unit, by name.
ENERGY_UNITS = {"ev": EV_TO_KJ_PER_MOL, "kcal/mol": KCAL_TO_KJ, "kj/mol": 1.0,
                "hartree": HARTREE_TO_EV * EV_TO_KJ_PER_MOL}

# nequip's metadata keys (nequip.nn.graph_model), the extra files of a .nequip.pth.
_METADATA_KEYS = ("r_max", "type_names", "model_dtype", "per_edge_type_cutoff", "allow_tf32")


class NequIPModel(torch.nn.Module):
    """A compiled NequIP or Allegro model on a fixed list of atoms, with static shapes (nm in,
    kJ/mol out).

    Built by :func:`create`, which reads the file and its metadata.

    Parameters
    ----------
    model : torch.jit.ScriptModule
        nequip's compiled model (``torch.jit.load`` of a ``*.nequip.pth``): takes nequip's
        ``AtomicDataDict`` and returns it with ``total_energy`` (and ``forces``).
    atomTypes : sequence of int
        The model's type index of each region atom, in order.
    dtype : torch.dtype
        The model's dtype (``model_dtype`` of the file).
    lengthToModel : float
        Model length units per nm (10 for Angstrom).
    energyToKJPerMol : float
        kJ/mol per model energy unit.
    modelForces : bool
        Whether the model returns ``forces`` (nequip's ``do_derivatives``, on by default): then
        the returned energy's gradient is the model's forces; otherwise autograd goes through
        the model's energy.
    """

    def __init__(self, model, atomTypes, dtype, lengthToModel, energyToKJPerMol, modelForces=True):
        super().__init__()
        n = len(atomTypes)
        # All ordered pairs i != j: row 0 the centre, row 1 the neighbour (nequip's convention).
        index = torch.arange(n, dtype=torch.long)
        centre = index.repeat_interleave(n)
        neighbour = index.repeat(n)
        keep = centre != neighbour
        self.register_buffer("edgeIndex", torch.stack([centre[keep], neighbour[keep]]))
        self.register_buffer("atomTypes", torch.tensor(list(atomTypes), dtype=torch.long))
        self.model = model
        self.dtype = dtype
        self.lengthToModel = float(lengthToModel)
        self.energyToKJPerMol = float(energyToKJPerMol)
        self.modelForces = bool(modelForces)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The model's energy of the region.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64 (the model runs in its own dtype whatever this
            one is).  The region must be whole.
        box : torch.Tensor, optional
            Ignored (the region is not periodic); accepted so that the model can be used with a
            periodic :class:`~openmmhybrid.MLForce`, which makes the region whole first.

        Returns
        -------
        torch.Tensor
            The energy in kJ/mol, a float64 scalar (0-dim).  Its gradient with respect to
            ``positions`` is the model's forces (first derivatives only).

        Notes
        -----
        Call it with autograd on (not inside ``torch.no_grad()``): the compiled model computes
        its forces with autograd even for the energy alone.  MLForce calls it so.
        """
        x = positions.to(self.dtype) * self.lengthToModel
        if self.modelForces:
            # The model differentiates itself: give it its own leaf, and hand its forces back to
            # autograd through a term that is zero in value and -forces in gradient.
            data: Dict[str, Tensor] = {"pos": x.detach(), "edge_index": self.edgeIndex,
                                       "atom_types": self.atomTypes}
            out = self.model(data)
            forces = out["forces"].detach()
            energy = out["total_energy"].sum().detach() - (forces * (x - x.detach())).sum()
        else:
            data = {"pos": x, "edge_index": self.edgeIndex, "atom_types": self.atomTypes}
            energy = self.model(data)["total_energy"].sum()
        return energy.to(torch.float64) * self.energyToKJPerMol


def _importNequip(name):
    try:
        import nequip  # noqa: F401
        if name == "allegro":
            import allegro  # noqa: F401  (registers nothing TorchScript needs, but says the package is there)
    except ImportError as error:
        package = "nequip-allegro" if name == "allegro" else "nequip"
        raise ImportError(f"{name}: the '{name}' model needs the {package} package (pip install {package}); "
                          f"importing it failed: {error}") from None


def _unitFactor(value, table, what, default):
    if value is None:
        value = default
    if isinstance(value, str):
        key = value.strip().lower().replace(" ", "")
        key = {"a": "angstrom", "å": "angstrom", "angstroms": "angstrom", "nanometer": "nm", "ev": "ev",
               "kcal": "kcal/mol", "kj": "kj/mol"}.get(key, key)
        if key not in table:
            raise ValueError(f"{what} {value!r} is not known; give one of {', '.join(sorted(table))} or an "
                             "openmm.unit unit.")
        return table[key]
    import openmm.unit as unit
    target = unit.nanometer if what == "lengthUnit" else unit.kilojoule_per_mole
    try:
        return (1.0 * value).value_in_unit(target)
    except Exception:
        raise ValueError(f"{what} {value!r} is not a unit of {'length' if what == 'lengthUnit' else 'energy'}") from None


def _readMetadata(path, name):
    """(ScriptModule, metadata dict of str) of a .nequip.pth file."""
    if path.endswith(".nequip.pt2") or path.endswith(".nequip.zip") or path.endswith(".ckpt"):
        kind = {".pt2": "an AOTInductor package (nequip-compile --mode aotinductor)",
                ".zip": "a nequip-package archive", "ckpt": "a training checkpoint"}[path[-4:]]
        raise ValueError(f"{name}: '{path}' is {kind}; only TorchScript models compiled with nequip-compile "
                         "--mode torchscript (*.nequip.pth) can run inside an MLForce (nequip-compile refuses that "
                         "mode under PyTorch >= 2.10: compile in an environment with an older PyTorch).")
    extra = {key: "" for key in _METADATA_KEYS}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.jit.*", category=DeprecationWarning)
        try:
            model = torch.jit.load(path, map_location="cpu", _extra_files=extra)
        except RuntimeError as error:
            raise ValueError(f"{name}: '{path}' is not a TorchScript archive ({error}); give a model compiled "
                             "with nequip-compile --mode torchscript (*.nequip.pth).") from None
    metadata = {k: (v.decode("utf-8") if isinstance(v, bytes) else (v or "")).strip() for k, v in extra.items()}
    for key in ("r_max", "type_names"):
        if not metadata[key]:
            raise ValueError(f"{name}: '{path}' has no '{key}' metadata: it is not a model compiled with "
                             "nequip-compile --mode torchscript.")
    return model, metadata


def create(topology, atoms, name="nequip", modelPath=None, charge=0, precision=None, lengthUnit=None,
           energyUnit=None, typeNames=None, **options):
    """A NequIP or Allegro model compiled to TorchScript, for the region ``atoms`` of ``topology``.

    Loading runs code from the file: a ``.nequip.pth`` is a TorchScript archive
    (``torch.jit.load``, which has no ``weights_only`` mode), whose program runs when the model
    runs.  Load only files you trust.

    Parameters
    ----------
    topology : openmm.app.Topology
        The System's topology (the region's elements are read from it).
    atoms : sequence of int
        The ML region, in the order the model sees the atoms.
    name : {"nequip", "allegro"}
        Which family the file is (the same file format; the name picks the package that must
        be installed and the label of messages).
    modelPath : str or os.PathLike
        The compiled model, ``*.nequip.pth`` (``nequip-compile --mode torchscript``).  Required.
    charge : int
        The region's total charge (e).  NequIP and Allegro have no charge input: a nonzero charge
        is warned about and the region treated as neutral.
    precision : {None, "single", "double"}
        None (the file's ``model_dtype``), or the dtype the file must have: a compiled
        TorchScript model holds its dtype in its code and cannot be converted, so a precision
        other than the file's raises ValueError.
    lengthUnit : str or openmm.unit.Unit, optional
        The model's length unit: ``"Angstrom"`` (default), ``"nm"``, ``"Bohr"``, or an
        ``openmm.unit`` length unit.
    energyUnit : str or openmm.unit.Unit, optional
        The model's energy unit: ``"eV"`` (default), ``"kcal/mol"``, ``"kJ/mol"``, ``"Hartree"``,
        or an ``openmm.unit`` energy unit (per mole).
    typeNames : dict, optional
        Element symbol -> the model's type name, for a model whose type names are not element
        symbols (or to override the match); elements it leaves out are matched by symbol.
    **options
        None are accepted; an unknown keyword raises TypeError.

    Returns
    -------
    NequIPModel
        ``forward(positions[, box]) -> energy``: nm in, kJ/mol (float64 0-dim) out.

    Raises
    ------
    FileNotFoundError
        No ``modelPath``, or it does not exist.
    ValueError
        A region atom's element has no type in the model (naming the atom), the file is not a
        ``.nequip.pth`` (an AOTInductor ``.nequip.pt2``, a ``.nequip.zip`` package or a
        checkpoint: the message says how to compile it), an unknown unit, or a ``precision``
        other than the file's dtype.
    ImportError
        nequip (or, for ``"allegro"``, nequip-allegro) is not installed.
    """
    if options:
        raise TypeError(f"{name}: unknown option(s) {', '.join(sorted(options))}; the options are modelPath, "
                        "charge, precision, lengthUnit, energyUnit and typeNames.")
    name = name.lower()
    if name not in NAMES:
        raise ValueError(f"nequip.create serves {', '.join(NAMES)}, not {name!r}")
    path = modelFile(name, modelPath, NAMES[name]["file"], NAMES[name]["url"])
    _importNequip(name)
    lengthToNm = _unitFactor(lengthUnit, LENGTH_UNITS, "lengthUnit", "angstrom")
    energyToKJ = _unitFactor(energyUnit, ENERGY_UNITS, "energyUnit", "ev")

    model, metadata = _readMetadata(os.fspath(path), name)
    modelTypes = metadata["type_names"].split()
    dtype = {"float32": torch.float32, "float64": torch.float64}.get(metadata["model_dtype"] or "float32")
    if dtype is None:
        raise ValueError(f"{name}: '{path}' has model_dtype {metadata['model_dtype']!r}; expected float32 or float64")
    if precision is not None:
        wanted = {"single": torch.float32, "double": torch.float64}.get(precision)
        if wanted is None:
            raise ValueError(f"{name}: precision must be None, 'single' or 'double', not {precision!r}")
        if wanted != dtype:
            raise ValueError(f"{name}: '{path}' was compiled in {metadata['model_dtype']}, and a compiled TorchScript "
                             f"model cannot run in another dtype; use precision=None or "
                             f"'{'single' if dtype == torch.float32 else 'double'}', or compile the model with "
                             f"model_dtype {'float64' if wanted == torch.float64 else 'float32'}.")

    from openmm.app import element as elements
    symbolToType = {}
    for i, typeName in enumerate(modelTypes):
        try:
            symbolToType[elements.get_by_symbol(typeName).symbol] = i
        except KeyError:
            pass
    for symbol, typeName in (typeNames or {}).items():
        if typeName not in modelTypes:
            raise ValueError(f"{name}: typeNames maps {symbol} to {typeName!r}, which is not one of the model's types "
                             f"({', '.join(modelTypes)}).")
        symbolToType[elements.get_by_symbol(symbol).symbol] = modelTypes.index(typeName)
    if not symbolToType:
        raise ValueError(f"{name}: the types of '{path}' ({', '.join(modelTypes)}) are not element symbols; give "
                         "typeNames={'C': '<the type of carbon>', ...}.")
    numbers = requireElements(topology, atoms, sorted(symbolToType), f"the {name} model in '{path}'")
    atomTypes = [symbolToType[elements.Element.getByAtomicNumber(z).symbol] for z in numbers]

    if charge:
        warnings.warn(f"{name}: the model has no total-charge input and treats the ML region (charge {charge}) as "
                      "neutral.", stacklevel=2)

    wrapped = NequIPModel(model, atomTypes, dtype, 1.0 / lengthToNm, energyToKJ)
    # Does the compiled model return forces (nequip's do_derivatives)?  Ask it once, on a line.
    n = len(atomTypes)
    probe = torch.zeros((n, 3), dtype=dtype)
    probe[:, 0] = torch.arange(n, dtype=dtype) * float(metadata["r_max"]) * 0.5
    with torch.enable_grad():
        out = model({"pos": probe.requires_grad_(True), "edge_index": wrapped.edgeIndex,
                     "atom_types": wrapped.atomTypes})
    if "total_energy" not in out:
        raise ValueError(f"{name}: the model in '{path}' returns no total_energy.")
    wrapped.modelForces = "forces" in out
    return wrapped
