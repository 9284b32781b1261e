"""ANI ensembles (ANI-1x, ANI-1ccx, ANI-2x) as static-shape PyTorch modules, loaded offline from
NeuroChem weight files.

:class:`ANI` evaluates an ANI ensemble stored in NeuroChem format (the layout of torchani's
``resources/ani-*_8x`` folders: a ``.params`` file of AEV constants, ``sae_linfit.dat``, and
``train0`` ... ``train<k>`` with one network per element) on a fixed list of atoms with
static-shape neighbour lists: the pairs and triples inside the cutoffs are packed into arrays
whose sizes (the capacities) are set on the first evaluation and grown when needed, never
dropping a neighbour, so the cost grows with the number of neighbours, not with n^3.  There is no
``nonzero()`` and no data-dependent shape, the module is scriptable with ``torch.jit.script``,
and after its first evaluation on a GPU it needs no host synchronization, so a CUDA graph can
capture it.  It takes positions in nm and returns kJ/mol, the contract of
:class:`openmmhybrid.MLForce`.  The elements, the AEV constants, the networks and the self
energies all come from the folder.

The named ensembles differ only in where their files are:

- :class:`ANI1x` (H, C, N, O): ``resources/ani-1x_8x`` of the installed torchani 2.2.4.
- :class:`ANI1ccx` (H, C, N, O): ``ani-1ccx_8x`` under :func:`weightsRoot`, extracted from the
  torchani 2.0 wheel at set-up by ``python/fetch_ani_weights.py`` (``make build`` runs it);
  never downloaded at run time.
- :class:`ANI2x` (H, C, N, O, F, S, Cl): files the user gives (``weightsDir=``, or
  ``ani-2x_8x`` under :func:`weightsRoot`); no package on the package index ships them.

:func:`torchaniEnsemble` (and :func:`torchaniANI1x`) builds torchani's own pipeline from the same
files, as a reference for tests and benchmarks.

torchani is needed only to read the weight files when a model is built (``pip install
torchani==2.2.4``; it also needs ``setuptools<81``, ``importlib_metadata`` and ``lark``).  The
module that :class:`ANI` builds does not use torchani when it runs, and a scripted copy
(``torch.jit.save``) loads without it.
"""
import bz2
import glob
import importlib.util
import math
import os
import re
import sys
import warnings
from typing import List, Optional, Sequence

import torch
from torch import Tensor

from . import packedIndices

__all__ = ["ANI", "ANI1x", "ANI1ccx", "ANI2x", "torchaniEnsemble", "torchaniANI1x", "defaultWeightsDir",
           "weightsRoot", "ani1ccxWeightsDir", "ani2xWeightsDir", "WEIGHTS_ENVIRONMENT_VARIABLE",
           "HARTREE_TO_KJ_PER_MOL"]

# torchani.units.HARTREE_TO_KJOULEMOL, built from the same CODATA 2014 values so that the energies
# agree with torchani's to the last bit (the tests check that the two constants are equal).
_HARTREE_TO_EV = 27.211386024367243
_EV_TO_JOULE = 1.6021766208e-19
_AVOGADROS_NUMBER = 6.022140857e+23
HARTREE_TO_KJ_PER_MOL = _HARTREE_TO_EV * _EV_TO_JOULE * _AVOGADROS_NUMBER / 1000
"""Hartree to kJ/mol, equal to ``torchani.units.HARTREE_TO_KJOULEMOL`` (CODATA 2014)."""

WEIGHTS_ENVIRONMENT_VARIABLE = "OPENMMHYBRID_WEIGHTS"
"""The environment variable that overrides :func:`weightsRoot`."""

_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho "
    "Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm "
    "Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()

_INSTALL_HINT = ("Install it with `pip install torchani==2.2.4` (it also needs `setuptools<81`, "
                 "`importlib_metadata` and `lark`).")

_SETUP_HINT = ("They are extracted from the torchani 2.0 wheel at set-up, not downloaded at run time: run `make build` "
               "in the openmm-hybrid source tree, or `python python/fetch_ani_weights.py` there with this "
               "environment's Python (a 22 MB download, once). Or set " + WEIGHTS_ENVIRONMENT_VARIABLE + " to a folder "
               "that holds ani-1ccx_8x, or pass weightsDir=.")

_LAYOUT = ("NeuroChem format, as torchani's resources/ani-2x_8x: one *.params file (the AEV constants), "
           "sae_linfit.dat (the self energies) and train0 ... train7, each with networks/ANN-<element>.nnf and the "
           ".wparam/.bparam files it names, for H, C, N, O, F, S and Cl")


def _symbol(z):
    return _SYMBOLS[z] if 0 < z < len(_SYMBOLS) else "not an element"


def _listing(symbols):
    """'H, C, N and O'."""
    symbols = list(symbols)
    return symbols[0] if len(symbols) == 1 else f"{', '.join(symbols[:-1])} and {symbols[-1]}"


def _import_torchani():
    """Import torchani with its import-time warnings (no ase, no cuaev, ...) silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchani
            import torchani.neurochem  # noqa: F401
    except ImportError as error:
        raise ImportError(f"Reading the ANI weights needs torchani, which could not be imported ({error}). "
                          + _INSTALL_HINT) from error
    return torchani


def weightsRoot():
    """The folder of the weight sets that are installed at set-up, not shipped in a package.

    ``$OPENMMHYBRID_WEIGHTS`` if set, else ``<sys.prefix>/share/openmmhybrid/weights`` (inside the
    virtual environment).  ``python/fetch_ani_weights.py`` extracts ANI-1ccx into
    ``ani-1ccx_8x`` there; an ``ani-2x_8x`` folder put there is :class:`ANI2x`'s default.

    Returns
    -------
    str
        The folder's path (it need not exist).
    """
    value = os.environ.get(WEIGHTS_ENVIRONMENT_VARIABLE)
    if value:
        return os.path.abspath(os.path.expanduser(value))
    return os.path.join(sys.prefix, "share", "openmmhybrid", "weights")


def defaultWeightsDir():
    """The ``resources/ani-1x_8x`` folder of the installed torchani package.

    torchani 2.2.4 ships the ANI-1x weights there (``train0`` ... ``train7``).  The folder is found
    without importing torchani.

    Returns
    -------
    str
        The folder's path.

    Raises
    ------
    ImportError
        torchani is not installed.
    FileNotFoundError
        The installed torchani has no ``resources/ani-1x_8x`` folder.
    """
    spec = importlib.util.find_spec("torchani")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("ANI-1x needs torchani for its weight files, and torchani is not installed. " + _INSTALL_HINT)
    folder = os.path.join(list(spec.submodule_search_locations)[0], "resources", "ani-1x_8x")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The installed torchani has no ANI-1x weights at '{folder}'. torchani 2.2.4 ships "
                                "them; " + _INSTALL_HINT[0].lower() + _INSTALL_HINT[1:] +
                                " Or pass weightsDir= pointing at an ani-1x_8x folder.")
    return folder


def ani1ccxWeightsDir():
    """The ANI-1ccx weights folder, ``ani-1ccx_8x`` under :func:`weightsRoot`.

    ``python/fetch_ani_weights.py`` (run by ``make build``) extracts it from the torchani 2.0
    wheel, the one package on the package index that ships these weights.

    Raises
    ------
    FileNotFoundError
        The folder is not there; the message names the set-up command.
    """
    folder = os.path.join(weightsRoot(), "ani-1ccx_8x")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"The ANI-1ccx weights are not installed: '{folder}' does not exist. " + _SETUP_HINT)
    return folder


def ani2xWeightsDir():
    """The default ANI-2x weights folder, ``ani-2x_8x`` under :func:`weightsRoot`, if it exists.

    No package on the package index ships ANI-2x's weights (torchani 2.2.x holds empty placeholder
    files), so they are the user's: pass ``weightsDir=`` or put the folder there.

    Raises
    ------
    FileNotFoundError
        The folder is not there; the message says what to give.
    """
    folder = os.path.join(weightsRoot(), "ani-2x_8x")
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            "ANI-2x needs its weight files, and none were given: no package on the package index ships them "
            "(torchani 2.2.x's are empty placeholders) and nothing is downloaded at run time. Pass the folder: "
            "createMixedSystem(..., model='ani2x', modelArgs={'weightsDir': folder}) or ANI2x(atomicNumbers, "
            f"weightsDir=folder), or put it at '{folder}' (under ${WEIGHTS_ENVIRONMENT_VARIABLE} if set). It is "
            f"{_LAYOUT} (torchani's ANI-2x files are at github.com/aiqm/ani-model-zoo, tag ani-2x).")
    return folder


class _Spec:
    """What a named ensemble is: its name, its elements, and where its folder is by default."""

    def __init__(self, name, elements, default, hint):
        self.name = name
        self.elements = tuple(elements)
        self.default = default      # () -> folder, raising a clear error; or None: weightsDir is required
        self.hint = hint            # what the folder should be, for the errors


_ANY = _Spec("ANI", (), None, "a NeuroChem ensemble folder (a .params file, sae_linfit.dat and train0 ... train<k>)")
_ANI1X_SPEC = _Spec("ANI-1x", ("H", "C", "N", "O"), defaultWeightsDir,
                    "Pass the ani-1x_8x folder of torchani 2.2.4 (the default), which holds a .params file, "
                    "sae_linfit.dat and train0 ... train7.")
_ANI1CCX_SPEC = _Spec("ANI-1ccx", ("H", "C", "N", "O"), ani1ccxWeightsDir,
                      "Pass an ani-1ccx_8x folder (a .params file, sae_linfit.dat and train0 ... train7), "
                      "or use the default that python/fetch_ani_weights.py installs.")
_ANI2X_SPEC = _Spec("ANI-2x", ("H", "C", "N", "O", "F", "S", "Cl"), ani2xWeightsDir, f"The folder is {_LAYOUT}.")

_PARAM_FILE = re.compile(r"(?:weights|biases)\s*=\s*FILE:([A-Za-z0-9_.\-]+)\[(\d+)\]")


def _readNnf(path):
    """The text of a NeuroChem ``.nnf`` network file (a header up to '=', a newline, then bzip2), or None."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        start = data.index(b"=") + 2
        return bz2.decompress(data[start:])[:-1].decode("ascii")
    except (OSError, ValueError, EOFError):
        return None


def _constantsSpecies(params):
    """The elements (``Atyp``) of a ``.params`` file, or None when it holds none."""
    try:
        with open(params) as f:
            for line in f:
                name, _, value = line.partition("=")
                if name.strip() == "Atyp":
                    return [s.strip() for s in value.replace("[", "").replace("]", "").split(",") if s.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    return None


class _Files:
    """The paths of a NeuroChem ensemble folder (the AEV constants, the self energies and
    train<i>), checked to be complete: every missing or empty file is named."""

    def __init__(self, weights_dir, spec=_ANI1X_SPEC):
        if weights_dir is None:
            if spec.default is None:
                raise TypeError(f"{spec.name}: give weightsDir, {spec.hint}")
            weights_dir = spec.default()
        weights_dir = os.fspath(weights_dir)
        if not os.path.isdir(weights_dir):
            raise FileNotFoundError(f"The {spec.name} weights folder '{weights_dir}' does not exist. {spec.hint}")
        missing, empty = [], []

        def check(relative):
            path = os.path.join(weights_dir, relative)
            if not os.path.isfile(path):
                missing.append(relative)
                return False
            if os.path.getsize(path) == 0:
                empty.append(relative)
                return False
            return True

        params = sorted(glob.glob(os.path.join(weights_dir, "*.params")))
        species = None
        if len(params) > 1:
            raise FileNotFoundError(f"Expected exactly one AEV constants file (*.params) in '{weights_dir}', "
                                    f"found {len(params)}.")
        if not params:
            missing.append("*.params (the AEV constants)")
        elif check(os.path.basename(params[0])):
            species = _constantsSpecies(params[0])
            if not species:
                raise ValueError(f"{spec.name}: the AEV constants file '{params[0]}' names no elements (Atyp = [...]).")
            if spec.elements and sorted(species) != sorted(spec.elements):
                raise ValueError(f"{spec.name}: the weights in '{weights_dir}' cover {_listing(species)} "
                                 f"({os.path.basename(params[0])}), not {spec.name}'s {_listing(spec.elements)}. "
                                 f"{spec.hint}")
        sae = os.path.join(weights_dir, "sae_linfit.dat")
        check("sae_linfit.dat")
        count = 0
        while os.path.isdir(os.path.join(weights_dir, f"train{count}", "networks")):
            count += 1
        if count == 0:
            missing.append("train0/networks/ (the networks of the first ensemble member; train1, ... the others)")
        for member in range(count):
            for symbol in species or spec.elements:
                nnf = os.path.join(f"train{member}", "networks", f"ANN-{symbol}.nnf")
                if not check(nnf):
                    continue
                text = _readNnf(os.path.join(weights_dir, nnf))
                if text is None:
                    raise ValueError(f"{spec.name}: '{os.path.join(weights_dir, nnf)}' is not a NeuroChem network "
                                     "file (a header, then bzip2-compressed text).")
                for name, size in _PARAM_FILE.findall(text):
                    relative = os.path.join(os.path.dirname(nnf), name)
                    if check(relative) and os.path.getsize(os.path.join(weights_dir, relative)) != 4 * int(size):
                        raise ValueError(f"{spec.name}: '{os.path.join(weights_dir, relative)}' holds "
                                         f"{os.path.getsize(os.path.join(weights_dir, relative))} bytes; "
                                         f"{os.path.basename(nnf)} says {size} float32 values ({4 * int(size)} bytes).")
        if missing or empty:
            problems = []
            for label, names in (("missing", missing), ("empty", empty)):
                if names:
                    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                    problems.append(f"{label} ({len(names)}): {shown}")
            placeholder = (" (empty files are placeholders, as torchani 2.2.x ships for ANI-2x and ANI-1ccx: they are "
                           "not the weights)" if empty else "")
            raise FileNotFoundError(f"The {spec.name} weights folder '{weights_dir}' is incomplete; "
                                    f"{'; '.join(problems)}{placeholder}. {spec.hint}")
        self.dir = weights_dir
        self.params = params[0]
        self.sae = sae
        self.prefix = os.path.join(weights_dir, "train")
        self.count = count
        self.species = species

    def network(self, member, symbol):
        return os.path.join(f"{self.prefix}{member}", "networks", f"ANN-{symbol}.nnf")


def _torchaniPipeline(files, periodicTableIndex):
    torchani = _import_torchani()
    neurochem = torchani.neurochem
    consts = neurochem.Constants(files.params)
    modules = []
    if periodicTableIndex:
        modules.append(torchani.nn.SpeciesConverter(consts.species))
    modules.append(torchani.AEVComputer(**consts))
    modules.append(neurochem.load_model_ensemble(consts.species, files.prefix, files.count))
    modules.append(neurochem.load_sae(files.sae))
    return torchani.nn.Sequential(*modules)


def torchaniEnsemble(weightsDir, periodicTableIndex=True):
    """torchani's own pipeline for any NeuroChem ensemble folder (ANI-1x, ANI-1ccx, ANI-2x, ...).

    ``[SpeciesConverter ->] AEVComputer -> Ensemble (one ANIModel per train<i>) -> EnergyShifter``,
    assembled as a ``torchani.nn.Sequential`` from ``torchani.neurochem.Constants``,
    ``load_model_ensemble`` and ``load_sae``: what ``torchani.models.ANI1x()``, ``ANI1ccx()`` and
    ``ANI2x()`` build from their folders, without the download.  Meant as the reference for tests
    and benchmarks of :class:`ANI`; the conventions are :func:`torchaniANI1x`'s.

    Parameters
    ----------
    weightsDir : str or os.PathLike
        The folder.
    periodicTableIndex : bool, optional
        Species are atomic numbers (True, the default) or torchani's indices in the ``.params``
        file's element order.

    Returns
    -------
    torchani.nn.Sequential
        The model, float32, on the CPU.
    """
    return _torchaniPipeline(_Files(weightsDir, _ANY), periodicTableIndex)


def torchaniANI1x(periodicTableIndex=True, weightsDir=None):
    """torchani's own ANI-1x ensemble, built from the shipped files without downloading anything.

    The same pipeline as ``torchani.models.ANI1x()``: ``[SpeciesConverter ->] AEVComputer ->
    Ensemble (8 ANIModels) -> EnergyShifter``, assembled as a ``torchani.nn.Sequential`` from
    ``torchani.neurochem.Constants``, ``load_model_ensemble`` and ``load_sae``.  (torchani 2.2.4's
    ``ani-1x_8x.info`` index is empty, so ``torchani.models.ANI1x()`` would try to download.)  Meant
    as the reference for tests and benchmarks of :class:`ANI1x`.

    torchani conventions apply: call it as ``model((species, coordinates))`` with ``species`` an
    integer tensor ``[molecules, atoms]`` and ``coordinates`` ``[molecules, atoms, 3]`` in
    **Angstrom**; it returns ``(species, energies)`` with ``energies`` ``[molecules]`` in
    **Hartree** (float64, self energies included).  Use ``model.double()`` for float64 networks;
    do not call ``.float()`` or ``.to(torch.float32)`` on it, which would round the self energies
    (held in float64) to float32.

    Parameters
    ----------
    periodicTableIndex : bool, optional
        Species are atomic numbers (True, the default) or torchani's indices 0-3 for H, C, N, O.
    weightsDir : str or os.PathLike, optional
        An ``ani-1x_8x`` folder; by default the one inside the installed torchani.  Any NeuroChem
        folder of H, C, N, O works (an ``ani-1ccx_8x`` one gives torchani's ANI-1ccx).

    Returns
    -------
    torchani.nn.Sequential
        The model, float32, on the CPU.
    """
    return _torchaniPipeline(_Files(weightsDir, _ANI1X_SPEC), periodicTableIndex)


class _FirstLayer(torch.nn.Module):
    """The first layer of all ensemble members at once: ``[atoms, in] -> [members, atoms, out]``.

    One matmul with the members' weights side by side (``[in, members * out]``).
    """

    members: int
    celu: bool
    alpha: float

    def __init__(self, weights, biases, celu, alpha, dtype):
        super().__init__()
        # weights: [members, out, in] (torch.nn.Linear layout), biases: [members, out]
        members, out_size, in_size = weights.shape
        self.members = members
        self.celu = celu
        self.alpha = alpha
        stacked = weights.permute(2, 0, 1).reshape(in_size, members * out_size)  # [in, members * out]
        self.register_buffer("weight", stacked.to(dtype).contiguous())
        self.register_buffer("bias", biases.reshape(members * out_size).to(dtype).contiguous())

    def forward(self, x: Tensor) -> Tensor:
        y = torch.addmm(self.bias, x, self.weight)
        if self.celu:
            y = torch.nn.functional.celu(y, self.alpha)
        return y.view(x.shape[0], self.members, -1).transpose(0, 1)


class _Layer(torch.nn.Module):
    """A later layer of all ensemble members at once: ``[members, atoms, in] -> [members, atoms, out]``."""

    celu: bool
    alpha: float

    def __init__(self, weights, biases, celu, alpha, dtype):
        super().__init__()
        self.celu = celu
        self.alpha = alpha
        self.register_buffer("weight", weights.transpose(1, 2).to(dtype).contiguous())  # [members, in, out]
        self.register_buffer("bias", biases.unsqueeze(1).to(dtype).contiguous())  # [members, 1, out]

    def forward(self, x: Tensor) -> Tensor:
        y = torch.baddbmm(self.bias, x, self.weight)
        if self.celu:
            y = torch.nn.functional.celu(y, self.alpha)
        return y


class _SpeciesEnsemble(torch.nn.Module):
    """The networks of one element for all ensemble members, applied to that element's atoms.

    Returns the sum over the element's atoms and over the members (the caller divides by the
    number of members).
    """

    def __init__(self, atoms, layers, dtype):
        super().__init__()
        self.register_buffer("atoms", torch.tensor(atoms, dtype=torch.long))
        first, rest = layers[0], layers[1:]
        self.first = _FirstLayer(*first, dtype=dtype)
        self.rest = torch.nn.ModuleList([_Layer(*layer, dtype=dtype) for layer in rest])

    def forward(self, aev: Tensor) -> Tensor:
        x = self.first(aev.index_select(0, self.atoms))
        for layer in self.rest:
            x = layer(x)
        return x.sum()


def _tracing() -> bool:
    """Whether the module is being traced for export (compileModel): then the neighbour lists take
    every atom, since a capacity read from the example positions would not hold for others."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode
    return bool(torch.compiler.is_compiling() or get_proxy_mode() is not None)


class _Core(torch.nn.Module):
    """AEVs and networks for one dtype: positions ``[n, 3]`` (Angstrom) -> ensemble-mean network
    energy (Hartree, same dtype, self energies not included).

    The AEVs come from static-shape neighbour lists: for each atom its ``kR`` nearest atoms
    (``torch.topk`` of the distances, so sorted by distance), of which the first ``kA`` are its
    angular neighbours, and every pair of those.  The cutoffs are masks.  The capacities ``kR`` and
    ``kA`` are set on the first evaluation (the largest number of neighbours within each cutoff,
    25% headroom) and grown whenever an evaluation on the CPU finds more, so no neighbour is ever
    dropped; on a GPU they are checked on the first evaluation only (no host synchronization
    afterwards, so a CUDA graph can capture the evaluation) and an evaluation that would need more
    returns NaN, which MLForce reports as an error.  Cost: O(n kR + n kA^2) time and memory, plus
    O(n^2) for the distances the lists are chosen from.
    """

    Rcr: float
    Rca: float
    num_species: int
    num_pairs: int
    members: float
    capacityR: int
    capacityK: int
    capacityA: int
    sized: bool

    def __init__(self, dtype, species, consts, networks, members):
        super().__init__()
        n = len(species)
        num_species = consts.num_species
        self.Rcr = float(consts.Rcr)
        self.Rca = float(consts.Rca)
        self.num_species = num_species
        self.num_pairs = num_species * (num_species + 1) // 2
        self.members = float(members)
        self.capacityR = 0
        self.capacityK = 0
        self.capacityA = 0
        self.sized = False

        # The constants as torchani's Constants holds them (float32 values read from the text file),
        # then cast, as torchani's AEVComputer does after .double().
        def const(name):
            return getattr(consts, name).to(torch.float32).to(dtype).flatten()

        self.register_buffer("EtaR", const("EtaR").view(-1, 1))                 # [EtaR, 1]
        self.register_buffer("ShfR", const("ShfR").view(1, -1))                 # [1, ShfR]
        self.register_buffer("EtaA", const("EtaA").view(-1, 1))                 # [EtaA, 1]
        self.register_buffer("ShfA", const("ShfA").view(1, -1))                 # [1, ShfA]
        self.register_buffer("Zeta", const("Zeta").view(-1, 1))                 # [Zeta, 1]

        species_t = torch.tensor(species, dtype=torch.long)
        self.register_buffer("species", species_t)
        # Keeps an atom out of its own neighbour list (squared distances in Angstrom^2).
        self.register_buffer("self_penalty", 1e12 * torch.eye(n, dtype=dtype))
        self.register_buffer("species_onehot", torch.nn.functional.one_hot(species_t, num_species).to(dtype))
        s1, s2 = torch.triu_indices(num_species, num_species)
        triu = torch.zeros(num_species, num_species, dtype=torch.long)  # torchani's aev.triu_index
        triu[s1, s2] = torch.arange(s1.shape[0])
        triu[s2, s1] = torch.arange(s1.shape[0])
        self.register_buffer("pair_index", triu)
        # cos(theta - ShfZ) = cos(theta) cos(ShfZ) + sin(theta) sin(ShfZ): rows cos, sin; halved.
        shfz = consts.ShfZ.to(torch.float32).to(torch.float64).flatten()
        self.register_buffer("half_trig_shfz", (0.5 * torch.stack([torch.cos(shfz), torch.sin(shfz)])).to(dtype))
        self.register_buffer("half_one", torch.full((shfz.numel(),), 0.5, dtype=dtype))

        self.networks = torch.nn.ModuleList(
            [_SpeciesEnsemble(atoms, layers, dtype) for atoms, layers in networks])

    def forward(self, coordinates: Tensor) -> Tensor:
        aev, overflow = self.aev_and_overflow(coordinates)
        energy = torch.zeros((), dtype=coordinates.dtype, device=coordinates.device)
        for network in self.networks:
            energy = energy + network(aev)
        energy = energy / self.members
        return torch.where(overflow, torch.full_like(energy, float("nan")), energy)

    @torch.jit.export
    def setCapacity(self, radialPairs: int, angularNeighbours: int, angularTriples: int):
        """Fix the capacities (and mark them sized): the radial pairs within the cutoff, the angular
        neighbours of one atom, and the angular triples; for a GPU run whose region may become
        denser than at the first evaluation."""
        n = self.species.shape[0]
        self.capacityR = max(0, min(n * (n - 1), radialPairs))
        self.capacityK = max(0, min(n - 1, angularNeighbours))
        self.capacityA = max(0, min(n * self.capacityK * (self.capacityK - 1) // 2, angularTriples))
        self.sized = True

    def _capacities(self, numRadial: Tensor, angularCounts: Tensor, numTriples: Tensor) -> List[int]:
        """(radial pairs, angular neighbours per atom, angular triples), after checking (and growing)
        the capacities against this evaluation's counts."""
        n = angularCounts.shape[0]
        full = False
        if not torch.jit.is_scripting():
            full = _tracing()
        if full:
            return [n * (n - 1), n - 1, n * (n - 1) * (n - 2) // 2]
        if not angularCounts.is_cuda or not self.sized:
            counts: List[int] = torch.stack([numRadial, angularCounts.max(), numTriples]).tolist()
            if not self.sized or counts[0] > self.capacityR or counts[1] > self.capacityK or counts[2] > self.capacityA:
                self.capacityR = min(n * (n - 1), max(self.capacityR, counts[0] + counts[0] // 4 + 16))
                self.capacityK = min(n - 1, max(self.capacityK, counts[1] + counts[1] // 4 + 2))
                self.capacityA = min(n * self.capacityK * (self.capacityK - 1) // 2,
                                     max(self.capacityA, counts[2] + counts[2] // 4 + 16))
                self.sized = True
        return [self.capacityR, self.capacityK, self.capacityA]

    @torch.jit.export
    def compute_aev(self, coordinates: Tensor) -> Tensor:
        """AEVs ``[n, radial + angular]`` in torchani's feature order, from coordinates in Angstrom."""
        return self.aev_and_overflow(coordinates)[0]

    @torch.jit.export
    def aev_and_overflow(self, coordinates: Tensor):
        """The AEVs and whether a capacity overflowed (a bool tensor; only possible on a GPU after
        the first evaluation, see :meth:`setCapacity`)."""
        n = coordinates.shape[0]
        device = coordinates.device
        # Which pairs and triples are inside the cutoffs (no gradient: integer bookkeeping).
        with torch.no_grad():
            c = coordinates.detach()
            separation = c.unsqueeze(0) - c.unsqueeze(1)
            d2 = (separation * separation).sum(-1) + self.self_penalty          # [i, j]
            inR = (d2 < self.Rcr * self.Rcr).reshape(-1)                        # [i * n + j]
            inA = d2 < self.Rca * self.Rca
            angularCounts = inA.sum(1)
            numRadial = inR.sum()
            numTriples = (angularCounts * (angularCounts - 1) // 2).sum()
        capacities = self._capacities(numRadial, angularCounts, numTriples)
        capR, kA, capA = capacities[0], capacities[1], capacities[2]
        with torch.no_grad():
            # The radial pairs within the cutoff, packed into capR slots in a fixed order (a prefix
            # sum and a scatter: no data-dependent shape); the free slots hold pair (0, 1), masked.
            slots = packedIndices(inR, capR, 1)
            usedR = torch.arange(capR, device=device) < numRadial
            ri = torch.div(slots, n, rounding_mode="floor")
            rj = slots - ri * n
            # The angular triples: each atom's kA nearest atoms, every pair j < k of them inside the
            # cutoff, packed the same way into capA slots.
            nearest = torch.topk(d2, kA, dim=1, largest=False, sorted=True).indices  # [i, kA]
            pairs = torch.triu_indices(kA, kA, 1, device=device)
            candJ = nearest.index_select(1, pairs[0])                                # [i, P]
            candK = nearest.index_select(1, pairs[1])
            inside = (inA.gather(1, candJ) & inA.gather(1, candK)).reshape(-1)
            numP = pairs.shape[1]
            tslots = packedIndices(inside, capA, 0)
            usedA = torch.arange(capA, device=device) < numTriples
            ti = torch.div(tslots, max(numP, 1), rounding_mode="floor")
            tj = candJ.reshape(-1).index_select(0, tslots)
            tk = candK.reshape(-1).index_select(0, tslots)
            overflow = (numRadial > capR) | (angularCounts.max() > kA) | (numTriples > capA)

        # Radial: 0.25 exp(-EtaR (r - ShfR)^2) fc(r), added into row (i, element of j).  Unused
        # slots get a harmless stand-in distance, so that they give exact zeros and zero gradients.
        vr = coordinates.index_select(0, rj) - coordinates.index_select(0, ri)
        dr = torch.sqrt((vr * vr).sum(-1))
        unusedR = ~usedR
        dr = dr.masked_fill(unusedR, 0.5 * self.Rcr)
        fcR = (0.5 * torch.cos(dr * (math.pi / self.Rcr)) + 0.5).masked_fill(unusedR, 0.0)
        radial = 0.25 * torch.exp(-self.EtaR * (dr.view(-1, 1, 1) - self.ShfR) ** 2) * fcR.view(-1, 1, 1)
        numRadialFeatures = radial.shape[1] * radial.shape[2]
        rowsR = ri * self.num_species + self.species.index_select(0, rj)
        radialAev = torch.zeros((n * self.num_species, numRadialFeatures), dtype=coordinates.dtype, device=device)
        radialAev = radialAev.index_add(0, rowsR, radial.view(-1, numRadialFeatures)).view(n, -1)

        # Angular, for each packed triple (centre i, neighbours j and k).
        centre = coordinates.index_select(0, ti)
        vj = coordinates.index_select(0, tj) - centre
        vk = coordinates.index_select(0, tk) - centre
        d_j = torch.sqrt((vj * vj).sum(-1))
        d_k = torch.sqrt((vk * vk).sum(-1))
        dot = (vj * vk).sum(-1)
        # theta = acos(0.95 cos(angle)) as in torchani/NeuroChem (the 0.95 keeps it off 0 and pi);
        # cos(theta - ShfZ) is expanded so that no acos is needed: sin(theta) >= 0.31, a safe sqrt.
        cos_theta = 0.95 * dot / torch.clamp(d_j * d_k, min=1e-10)
        sin_theta = torch.sqrt(1 - cos_theta * cos_theta)
        # factor1 = ((1 + cos(theta - ShfZ)) / 2)^Zeta                              [T, Zeta, ShfZ]
        trig = torch.stack([cos_theta, sin_theta], dim=1)
        half_one_plus_cos = torch.addmm(self.half_one, trig, self.half_trig_shfz).view(capA, 1, -1)
        # x^Zeta as exp(Zeta log x), much faster than pow on CPU.  The log is safe: theta lies in
        # [acos(0.95), acos(-0.95)] and ShfZ in [0, pi], so x >= (1 - 0.95) / 2 > 0.
        factor1 = torch.exp(torch.log(half_one_plus_cos) * self.Zeta)
        # 2 exp(-EtaA ((r_ij + r_ik)/2 - ShfA)^2) fc(r_ij) fc(r_ik)                  [T, EtaA, ShfA]
        unusedA = ~usedA
        d_j = d_j.masked_fill(unusedA, 0.5 * self.Rca)
        d_k = d_k.masked_fill(unusedA, 0.5 * self.Rca)
        fc_j = 0.5 * torch.cos(d_j * (math.pi / self.Rca)) + 0.5
        fc_k = 0.5 * torch.cos(d_k * (math.pi / self.Rca)) + 0.5
        fc_a = (fc_j * fc_k).masked_fill(unusedA, 0.0)
        mean_d = ((d_j + d_k) / 2).view(capA, 1, 1)
        factor2 = torch.exp(-self.EtaA * (mean_d - self.ShfA) ** 2) * (2 * fc_a).view(capA, 1, 1)
        num_eta = factor2.shape[1]
        num_shfa = factor2.shape[2]
        num_zeta = factor1.shape[1]
        num_shfz = factor1.shape[2]
        width = num_eta * num_shfa * num_zeta * num_shfz
        # Each triple's product of the two factors, added into row (i, element pair of j and k).
        pairSpecies = self.pair_index[self.species.index_select(0, tj), self.species.index_select(0, tk)]
        rowsA = ti * self.num_pairs + pairSpecies
        products = torch.bmm(factor2.view(capA, num_eta * num_shfa, 1), factor1.view(capA, 1, num_zeta * num_shfz))
        angular = torch.zeros((n * self.num_pairs, width), dtype=coordinates.dtype, device=device)
        angular = angular.index_add(0, rowsA, products.view(capA, width))
        # torchani's order inside an element pair: (EtaA, Zeta, ShfA, ShfZ).
        angular = angular.view(n, self.num_pairs, num_eta, num_shfa, num_zeta, num_shfz)
        angularAev = angular.permute(0, 1, 2, 4, 3, 5).reshape(n, -1)
        return torch.cat([radialAev, angularAev], dim=1), overflow


def _ensemble_layers(networks, who="ANI"):
    """``[(weights [members, out, in], biases [members, out], celu, alpha), ...]`` from one
    ``torch.nn.Sequential`` (Linear, CELU, ..., Linear) per ensemble member."""
    per_member = []
    for sequential in networks:
        layers = []
        for module in sequential:
            if isinstance(module, torch.nn.Linear):
                layers.append([module.weight.detach(), module.bias.detach(), False, 1.0])
            elif isinstance(module, torch.nn.CELU) and layers and not layers[-1][2]:
                layers[-1][2] = True
                layers[-1][3] = float(module.alpha)
            else:
                raise NotImplementedError(f"{who}: unexpected layer {module} in a NeuroChem network "
                                          "(only Linear and CELU are supported)")
        per_member.append(layers)
    shapes = {tuple((tuple(w.shape), celu, alpha) for w, _, celu, alpha in layers) for layers in per_member}
    if len(shapes) != 1:
        raise ValueError(f"{who}: the ensemble members' networks for one element differ in architecture")
    return [(torch.stack([m[i][0] for m in per_member]), torch.stack([m[i][1] for m in per_member]),
             per_member[0][i][2], per_member[0][i][3]) for i in range(len(per_member[0]))]


def _aevWidth(consts):
    """The AEV length the constants give: radial (elements x EtaR x ShfR) + angular (element
    pairs x EtaA x Zeta x ShfA x ShfZ)."""
    s = consts.num_species
    radial = s * consts.EtaR.numel() * consts.ShfR.numel()
    angular = s * (s + 1) // 2 * consts.EtaA.numel() * consts.Zeta.numel() * consts.ShfA.numel() * consts.ShfZ.numel()
    return radial + angular


class ANI(torch.nn.Module):
    """An ANI ensemble on a fixed list of atoms, with static shapes (nm in, kJ/mol out), from any
    NeuroChem weights folder.

    The model is the one torchani builds from the same folder (``torchaniEnsemble``;
    ``torchani.models.ANI1x()``, ``ANI1ccx()`` and ``ANI2x()`` are such folders), computed to about
    1e-13 Hartree of torchani's energy in float64, but with every tensor shape fixed by the number
    of atoms.  The folder gives everything: the elements and AEV constants (its ``.params`` file),
    the self energies (``sae_linfit.dat``) and the networks (``train0`` ... ``train<k>``, one per
    element each).  :class:`ANI1x`, :class:`ANI1ccx` and :class:`ANI2x` are this class with their
    own folders.

    - the AEVs use the pairs ``(i, j)`` within the radial cutoff and the triples ``(i, j, k)``
      within the angular cutoff (read from the ``.params`` file: 5.2 and 3.5 Angstrom for ANI-1x
      and ANI-1ccx, 5.1 and 3.5 for ANI-2x), packed in a fixed order into arrays of a fixed
      capacity (a prefix sum and a scatter, no ``nonzero()``); unused slots are masked and kept
      finite in the backward pass.  The capacities (pairs, angular neighbours of one atom,
      triples) are sized on the first evaluation with 25% headroom and grown when an evaluation
      on the CPU finds more; on a GPU they are checked on the first evaluation only, and an
      evaluation that would need more returns NaN (MLForce then stops with an error; size them
      with ``setCapacity`` of ``core32``/``core64``).  Traced for
      :func:`~openmmhybrid.compileModel`, the arrays hold every pair and triple, which holds for
      any geometry;
    - the elements are fixed when the module is built, so the element of every atom and the
      atom indices of each element are precomputed buffers;
    - the angular term uses ``cos(theta - ShfZ) = cos(theta) cos(ShfZ) + sin(theta) sin(ShfZ)``
      instead of ``acos`` and ``x^Zeta = exp(Zeta log(x))``: the same function as torchani's,
      rounded differently (about 1e-14 relative in float64), and much cheaper on a CPU;
    - the ensemble members are evaluated together: per element, one matmul for the first layer
      and one batched matmul per later layer.

    No ``nonzero()``, boolean-mask indexing or data-dependent shape is used, so the module works
    with ``torch.jit.script`` (and ``torch.jit.save``/``load``) and plugs into
    :class:`openmmhybrid.MLForce` as it is.  Its cost grows with the number of pairs and triples
    inside the cutoffs plus an ``n^2`` distance matrix (``benchmarks/bench_ani1x.py`` has the
    figures against torchani from 18 to 300 atoms).

    **Precision.**  The networks run in the dtype of the positions (float32 or float64).  The
    self energies of the atoms (``sae_linfit.dat``), which make up nearly all of the total (about
    -816,000 kJ/mol for p-xylene, where float32 resolves only 0.0625 kJ/mol), are summed in
    float64 once, when the module is built.  ``forward`` converts the ensemble-mean network energy
    (a few hundred kJ/mol) to float64 and adds that constant, so a float32 evaluation keeps the
    accuracy of its network part: the float32 and float64 totals typically agree to 1e-3 kJ/mol
    (up to 1e-2 kJ/mol in distorted geometries: about 1e-5 of the network energy, much as for
    torchani's float32 model), not to the 0.0625 kJ/mol resolution that adding the self energies
    in float32 would leave.

    The module holds a float32 and a float64 copy of its weights and picks the one that matches
    the positions, so there is no need to convert it; do not call ``.float()``, ``.double()`` or
    ``.to(dtype)`` on it (moving it with ``.to(device)`` is fine).

    Parameters
    ----------
    atomicNumbers : sequence of int
        The elements of the region's atoms, in the order the model sees them (the order of
        :class:`~openmmhybrid.MLForce`'s ``atoms``); each one the folder covers.
    weightsDir : str or os.PathLike
        The NeuroChem folder: one ``.params`` file, ``sae_linfit.dat`` and ``train0`` ...
        ``train<k>``, each with ``networks/ANN-<element>.nnf`` and the ``.wparam``/``.bparam`` files
        it names.  torchani (``pip install torchani==2.2.4``) is needed to read the files; it is
        not used afterwards.

    Raises
    ------
    ValueError
        ``atomicNumbers`` is empty or holds an element the folder does not cover; a network whose
        input width is not the AEV length of the constants.
    ImportError
        torchani is not installed.
    FileNotFoundError
        The folder does not exist or is incomplete (the message names every missing or empty file).
    """

    atomicNumbers: List[int]
    selfEnergy: float
    hartreeToKJPerMol: float

    _spec = _ANY

    def __init__(self, atomicNumbers: Optional[Sequence[int]] = None, weightsDir=None):
        super().__init__()
        self._build(atomicNumbers, weightsDir)

    def _build(self, atomicNumbers, weightsDir):
        spec = self._spec
        who = type(self).__name__
        if atomicNumbers is None:
            raise TypeError(f"{who}: give atomicNumbers, the atomic number of every atom of the ML region")
        numbers = []
        for i, z in enumerate(atomicNumbers):
            try:
                value = int(z)
            except (TypeError, ValueError):
                raise TypeError(f"{who}: atomicNumbers must be integers; atom {i} is {z!r}") from None
            numbers.append(value)
        if not numbers:
            raise ValueError(f"{who}: atomicNumbers is empty; give the atomic number of every atom of the ML region.")

        def covered(elements, name):
            for i, z in enumerate(numbers):
                if _symbol(z) not in elements:
                    raise ValueError(f"atom {i} is {_symbol(z)} (Z={z}); {name} covers only {_listing(elements)}. "
                                     "Choose a model that covers it or leave the atom out of the ML region.")

        if spec.elements:
            covered(spec.elements, spec.name)  # before reading any file
        files = _Files(weightsDir, spec)
        torchani = _import_torchani()
        neurochem = torchani.neurochem
        consts = neurochem.Constants(files.params)
        _, sae = neurochem.load_sae(files.sae, return_dict=True)
        if not spec.elements:
            covered(consts.species, f"the ensemble in '{files.dir}'")
        symbols = [_symbol(z) for z in numbers]
        for symbol in set(symbols):
            if symbol not in consts.species or symbol not in sae:
                raise ValueError(f"{who}: the weights in '{files.dir}' do not cover {symbol}")
        species = [consts.species.index(s) for s in symbols]

        width = _aevWidth(consts)
        networks = []
        for index, symbol in enumerate(consts.species):
            atoms = [i for i, s in enumerate(species) if s == index]
            if atoms:
                members = [neurochem.load_atomic_network(files.network(m, symbol)) for m in range(files.count)]
                layers = _ensemble_layers(members, who)
                if layers[0][0].shape[2] != width:
                    raise ValueError(f"{who}: the network '{files.network(0, symbol)}' takes {layers[0][0].shape[2]} "
                                     f"inputs, but the AEV constants ({os.path.basename(files.params)}) give {width} "
                                     "features: the networks and the constants are not from the same model.")
                networks.append((atoms, layers))

        self.atomicNumbers = numbers
        self.hartreeToKJPerMol = HARTREE_TO_KJ_PER_MOL
        # Summed in float64 (Python floats) once; forward adds it to the float64 network energy.
        self.selfEnergy = math.fsum(sae[s] for s in symbols) * HARTREE_TO_KJ_PER_MOL
        self.core32 = _Core(torch.float32, species, consts, networks, files.count)
        self.core64 = _Core(torch.float64, species, consts, networks, files.count)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The ensemble's energy of the region.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64 (the networks run in this dtype; other floating
            dtypes run in float32).  The region must be whole.
        box : torch.Tensor, optional
            Ignored (the region is not periodic); accepted so that the model can be used with a
            periodic :class:`~openmmhybrid.MLForce`, which makes the region whole first.

        Returns
        -------
        torch.Tensor
            The energy in kJ/mol, a float64 scalar (0-dim): the ensemble-mean network energy,
            converted to float64, plus the float64 sum of the self energies.
        """
        if positions.dtype == torch.float64:
            energy = self.core64(positions * 10.0)  # nm -> Angstrom
        else:
            energy = self.core32(positions.to(torch.float32) * 10.0)
        return energy.to(torch.float64) * self.hartreeToKJPerMol + self.selfEnergy

    @torch.jit.export
    def aev(self, positions: Tensor) -> Tensor:
        """The atomic environment vectors in torchani's feature order (``[n, 384]`` for ANI-1x and
        ANI-1ccx, ``[n, 1008]`` for ANI-2x).

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64 (computed in that dtype).

        Returns
        -------
        torch.Tensor
            The radial features (16 per neighbour element, in the ``.params`` file's element
            order) followed by the angular features (per element pair in torchani's
            upper-triangle order HH, HC, HN, HO, CC, ...), as torchani's ``AEVComputer`` gives
            them for coordinates in Angstrom.
        """
        if positions.dtype == torch.float64:
            return self.core64.compute_aev(positions * 10.0)
        return self.core32.compute_aev(positions.to(torch.float32) * 10.0)

    @torch.jit.export
    def networkEnergy(self, positions: Tensor) -> Tensor:
        """The ensemble-mean network energy in Hartree, without self energies, in the positions' dtype.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm.

        Returns
        -------
        torch.Tensor
            A scalar (0-dim) in Hartree.
        """
        if positions.dtype == torch.float64:
            return self.core64(positions * 10.0)
        return self.core32(positions.to(torch.float32) * 10.0)

    @torch.jit.unused
    def network_energy(self, positions: Tensor) -> Tensor:
        """Deprecated alias of :meth:`networkEnergy`."""
        _deprecated(f"{type(self).__name__}.network_energy", f"{type(self).__name__}.networkEnergy")
        return self.networkEnergy(positions)


class ANI1x(ANI):
    """The ANI-1x ensemble on a fixed list of atoms, with static shapes (nm in, kJ/mol out).

    ANI-1x (Smith et al., J. Chem. Phys. 148, 241733 (2018)) is an ensemble of 8 networks trained
    on wB97X/6-31G(d) energies of molecules made of H, C, N and O.  This module computes the same
    energy as torchani's ``ANI1x()`` (to about 1e-13 Hartree in float64) from the weight files that
    torchani 2.2.4 ships.  It is :class:`ANI` with that folder: the static shapes, the precision
    and the conversions are described there.

    Parameters
    ----------
    atomicNumbers : sequence of int
        The elements of the region's atoms, in the order the model sees them (the order of
        :class:`~openmmhybrid.MLForce`'s ``atoms``).  Only H, C, N and O (1, 6, 7, 8).
    weightsDir : str or os.PathLike, optional
        An ``ani-1x_8x`` folder in NeuroChem format (a ``.params`` file, ``sae_linfit.dat`` and
        ``train0`` ... ``train7``).  By default the one inside the installed torchani.  torchani
        (``pip install torchani==2.2.4``) is needed to read the files; it is not used afterwards.

    Raises
    ------
    ValueError
        ``atomicNumbers`` is empty or holds an element other than H, C, N, O.
    ImportError
        torchani is not installed.
    FileNotFoundError
        The weight files are missing.

    Examples
    --------
    >>> residue = [a for a in topology.atoms() if a.residue.name == "TMP"]
    >>> model = ANI1x([a.element.atomic_number for a in residue])
    >>> force = MLForce(model, [a.index for a in residue])
    """

    _spec = _ANI1X_SPEC

    def __init__(self, atomicNumbers: Optional[Sequence[int]] = None, weightsDir=None, **deprecated):
        torch.nn.Module.__init__(self)
        atomicNumbers, weightsDir = _renamedArguments("ANI1x", deprecated, {"atomic_numbers": atomicNumbers,
                                                                             "weights_dir": weightsDir})
        self._build(atomicNumbers, weightsDir)


class ANI1ccx(ANI):
    """The ANI-1ccx ensemble on a fixed list of atoms, with static shapes (nm in, kJ/mol out).

    ANI-1ccx (Smith et al., Nat. Commun. 10, 2903 (2019)) is ANI-1x transfer-learned to
    CCSD(T)*/CBS energies: 8 networks, H, C, N and O, the same AEV constants as ANI-1x, its own
    networks and self energies (all read from its folder).  It is :class:`ANI` with that folder.

    The weights are not in any package installed from the lock: ``python/fetch_ani_weights.py``
    (run by ``make build``, so by the README's commands) extracts them at set-up from the torchani
    2.0 wheel into ``ani-1ccx_8x`` under :func:`weightsRoot` (``$OPENMMHYBRID_WEIGHTS``, or
    ``<sys.prefix>/share/openmmhybrid/weights``).  Nothing is downloaded at run time.

    Parameters
    ----------
    atomicNumbers : sequence of int
        The elements of the region's atoms, in order.  Only H, C, N and O.
    weightsDir : str or os.PathLike, optional
        An ``ani-1ccx_8x`` folder; by default :func:`ani1ccxWeightsDir`.

    Raises
    ------
    FileNotFoundError
        The weights are not installed (the message names the set-up command) or incomplete.
    ValueError, ImportError
        As :class:`ANI`.
    """

    _spec = _ANI1CCX_SPEC


class ANI2x(ANI):
    """The ANI-2x ensemble on a fixed list of atoms, with static shapes (nm in, kJ/mol out), from
    weight files the user gives.

    ANI-2x (Devereux et al., J. Chem. Theory Comput. 16, 4192 (2020)) extends ANI-1x to H, C, N,
    O, F, S and Cl: 8 networks on a 1008-feature AEV (5.1 Angstrom radial, 3.5 Angstrom angular
    cutoff), wB97X/6-31G(d).  It is :class:`ANI` with that folder.  No package on the package
    index ships its weights (torchani 2.2.x holds empty placeholder files), so the folder is the
    user's: torchani's ``resources/ani-2x_8x`` layout (github.com/aiqm/ani-model-zoo, tag
    ``ani-2x``), passed as ``weightsDir`` or put at ``ani-2x_8x`` under :func:`weightsRoot`.

    Parameters
    ----------
    atomicNumbers : sequence of int
        The elements of the region's atoms, in order: H, C, N, O, F, S, Cl.
    weightsDir : str or os.PathLike, optional
        The ``ani-2x_8x`` folder; by default :func:`ani2xWeightsDir` (if it exists).

    Raises
    ------
    FileNotFoundError
        No folder given and none at the default place, or the folder is incomplete: the message
        names what is missing (the constants, the self energies, which network files, and empty
        placeholder files).
    ValueError
        The folder's constants cover other elements than ANI-2x's, a network does not fit the
        constants, or an element ANI-2x does not cover.
    ImportError
        As :class:`ANI`.
    """

    _spec = _ANI2X_SPEC


def _deprecated(old, new):
    warnings.warn(f"{old} is deprecated and will be removed in the next release; use {new}", DeprecationWarning,
                  stacklevel=3)


def _renamedArguments(who, deprecated, current):
    """The values of renamed keyword arguments: the new name's value, or the old snake_case one
    (with a DeprecationWarning)."""
    values = dict(current)
    for old, value in deprecated.items():
        if old not in current:
            raise TypeError(f"{who}() got an unexpected keyword argument {old!r}")
        new = "".join(part.capitalize() if i else part for i, part in enumerate(old.split("_")))
        _deprecated(f"{who}({old}=)", f"{who}({new}=)")
        values[old] = value
    return list(values.values())


def default_weights_dir():
    """Deprecated alias of :func:`defaultWeightsDir`."""
    _deprecated("default_weights_dir()", "defaultWeightsDir()")
    return defaultWeightsDir()


def torchani_ani1x(periodic_table_index=True, weights_dir=None):
    """Deprecated alias of :func:`torchaniANI1x`."""
    _deprecated("torchani_ani1x()", "torchaniANI1x()")
    return torchaniANI1x(periodicTableIndex=periodic_table_index, weightsDir=weights_dir)
