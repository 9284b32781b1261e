"""ANI-1x as a static-shape PyTorch module, loaded offline from the weights torchani 2.2.4 ships.

:class:`ANI1x` evaluates the ANI-1x ensemble (Smith et al., J. Chem. Phys. 148, 241733 (2018);
8 networks, elements H, C, N, O, wB97X/6-31G(d)) on a fixed list of atoms with static-shape
neighbour lists: the pairs and triples inside the cutoffs are packed into arrays whose sizes (the
capacities) are set on the first evaluation and grown when needed, never dropping a neighbour, so
the cost grows with the number of neighbours, not with n^3.  There is no ``nonzero()`` and no
data-dependent shape, the module is scriptable with ``torch.jit.script``, and after its first
evaluation on a GPU it needs no host synchronization, so a CUDA graph can capture it.  It takes
positions in nm and returns kJ/mol, the contract of :class:`openmmhybrid.MLForce`.

:func:`torchaniANI1x` builds torchani's own ANI-1x ensemble from the same files, as a reference
for tests and benchmarks.

torchani is needed only to read the weight files when a model is built (``pip install
torchani==2.2.4``; it also needs ``setuptools<81``, ``importlib_metadata`` and ``lark``).  The
module that :class:`ANI1x` builds does not use torchani when it runs, and a scripted copy
(``torch.jit.save``) loads without it.
"""
import glob
import importlib.util
import math
import os
import warnings
from typing import List, Optional, Sequence

import torch
from torch import Tensor

__all__ = ["ANI1x", "torchaniANI1x", "defaultWeightsDir", "HARTREE_TO_KJ_PER_MOL"]

# torchani.units.HARTREE_TO_KJOULEMOL, built from the same CODATA 2014 values so that the energies
# agree with torchani's to the last bit (the tests check that the two constants are equal).
_HARTREE_TO_EV = 27.211386024367243
_EV_TO_JOULE = 1.6021766208e-19
_AVOGADROS_NUMBER = 6.022140857e+23
HARTREE_TO_KJ_PER_MOL = _HARTREE_TO_EV * _EV_TO_JOULE * _AVOGADROS_NUMBER / 1000
"""Hartree to kJ/mol, equal to ``torchani.units.HARTREE_TO_KJOULEMOL`` (CODATA 2014)."""


_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se "
    "Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho "
    "Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm "
    "Md No Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og").split()

_INSTALL_HINT = ("Install it with `pip install torchani==2.2.4` (it also needs `setuptools<81`, "
                 "`importlib_metadata` and `lark`).")


def _symbol(z):
    return _SYMBOLS[z] if 0 < z < len(_SYMBOLS) else "not an element"


def _import_torchani():
    """Import torchani with its import-time warnings (no ase, no cuaev, ...) silenced."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchani
            import torchani.neurochem  # noqa: F401
    except ImportError as error:
        raise ImportError(f"Reading the ANI-1x weights needs torchani, which could not be imported ({error}). "
                          + _INSTALL_HINT) from error
    return torchani


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


class _Files:
    """The paths of a NeuroChem ensemble folder: the AEV constants, the self energies and train<i>."""

    def __init__(self, weights_dir):
        if weights_dir is None:
            weights_dir = defaultWeightsDir()
        weights_dir = os.fspath(weights_dir)
        if not os.path.isdir(weights_dir):
            raise FileNotFoundError(f"The ANI-1x weights folder '{weights_dir}' does not exist. Pass the ani-1x_8x "
                                    "folder of torchani 2.2.4 (the default), which holds a .params file, "
                                    "sae_linfit.dat and train0 ... train7.")
        params = sorted(glob.glob(os.path.join(weights_dir, "*.params")))
        if len(params) != 1:
            raise FileNotFoundError(f"Expected exactly one AEV constants file (*.params) in '{weights_dir}', "
                                    f"found {len(params)}.")
        sae = os.path.join(weights_dir, "sae_linfit.dat")
        if not os.path.isfile(sae):
            raise FileNotFoundError(f"The self-energy file '{sae}' does not exist.")
        count = 0
        while os.path.isdir(os.path.join(weights_dir, f"train{count}", "networks")):
            count += 1
        if count == 0:
            raise FileNotFoundError(f"No networks in '{weights_dir}' (expected train0/networks, train1/networks, ...).")
        self.dir = weights_dir
        self.params = params[0]
        self.sae = sae
        self.prefix = os.path.join(weights_dir, "train")
        self.count = count

    def network(self, member, symbol):
        return os.path.join(f"{self.prefix}{member}", "networks", f"ANN-{symbol}.nnf")


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
        An ``ani-1x_8x`` folder; by default the one inside the installed torchani.

    Returns
    -------
    torchani.nn.Sequential
        The model, float32, on the CPU.
    """
    torchani = _import_torchani()
    files = _Files(weightsDir)
    neurochem = torchani.neurochem
    consts = neurochem.Constants(files.params)
    modules = []
    if periodicTableIndex:
        modules.append(torchani.nn.SpeciesConverter(consts.species))
    modules.append(torchani.AEVComputer(**consts))
    modules.append(neurochem.load_model_ensemble(consts.species, files.prefix, files.count))
    modules.append(neurochem.load_sae(files.sae))
    return torchani.nn.Sequential(*modules)


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
            slots = torch.full((capR + 1,), 1, dtype=torch.long, device=device)
            where = torch.where(inR, torch.cumsum(inR.to(torch.long), 0) - 1, torch.full_like(d2, capR, dtype=torch.long).reshape(-1))
            slots = slots.scatter(0, where, torch.arange(n * n, device=device))[:capR]
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
            where = torch.where(inside, torch.cumsum(inside.to(torch.long), 0) - 1,
                                torch.full((n * numP,), capA, dtype=torch.long, device=device))
            tslots = torch.zeros((capA + 1,), dtype=torch.long, device=device)
            tslots = tslots.scatter(0, where, torch.arange(n * numP, device=device))[:capA]
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


def _ensemble_layers(networks):
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
                raise NotImplementedError(f"ANI1x: unexpected layer {module} in a NeuroChem network "
                                          "(only Linear and CELU are supported)")
        per_member.append(layers)
    shapes = {tuple((tuple(w.shape), celu, alpha) for w, _, celu, alpha in layers) for layers in per_member}
    if len(shapes) != 1:
        raise ValueError("ANI1x: the ensemble members' networks for one element differ in architecture")
    return [(torch.stack([m[i][0] for m in per_member]), torch.stack([m[i][1] for m in per_member]),
             per_member[0][i][2], per_member[0][i][3]) for i in range(len(per_member[0]))]


class ANI1x(torch.nn.Module):
    """The ANI-1x ensemble on a fixed list of atoms, with static shapes (nm in, kJ/mol out).

    ANI-1x (Smith et al., J. Chem. Phys. 148, 241733 (2018)) is an ensemble of 8 networks trained
    on wB97X/6-31G(d) energies of molecules made of H, C, N and O.  This module computes the same
    energy as torchani's ``ANI1x()`` (to about 1e-13 Hartree in float64) from the weight files that
    torchani 2.2.4 ships, but with every tensor shape fixed by the number of atoms:

    - the AEVs use the pairs ``(i, j)`` within the radial cutoff and the triples ``(i, j, k)``
      within the angular cutoff (5.2 and 3.5 Angstrom, read from the ``.params`` file), packed in
      a fixed order into arrays of a fixed capacity (a prefix sum and a scatter, no
      ``nonzero()``); unused slots are masked and kept finite in the backward pass.  The
      capacities (pairs, angular neighbours of one atom, triples) are sized on the first
      evaluation with 25% headroom and grown when an evaluation on the CPU finds more; on a GPU
      they are checked on the first evaluation only, and an evaluation that would need more
      returns NaN (MLForce then stops with an error; size them with ``setCapacity`` of
      ``core32``/``core64``).  Traced for :func:`~openmmhybrid.compileModel`, the arrays hold every
      pair and triple, which holds for any geometry;
    - the elements are fixed when the module is built, so the element of every atom and the
      atom indices of each element are precomputed buffers;
    - the angular term uses ``cos(theta - ShfZ) = cos(theta) cos(ShfZ) + sin(theta) sin(ShfZ)``
      instead of ``acos`` and ``x^Zeta = exp(Zeta log(x))``: the same function as torchani's,
      rounded differently (about 1e-14 relative in float64), and much cheaper on a CPU;
    - the 8 ensemble members are evaluated together: per element, one matmul for the first layer
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

    atomicNumbers: List[int]
    selfEnergy: float
    hartreeToKJPerMol: float

    def __init__(self, atomicNumbers: Optional[Sequence[int]] = None, weightsDir=None, **deprecated):
        super().__init__()
        atomicNumbers, weightsDir = _renamedArguments("ANI1x", deprecated, {"atomic_numbers": atomicNumbers,
                                                                             "weights_dir": weightsDir})
        if atomicNumbers is None:
            raise TypeError("ANI1x: give atomicNumbers, the atomic number of every atom of the ML region")
        numbers = []
        for i, z in enumerate(atomicNumbers):
            try:
                value = int(z)
            except (TypeError, ValueError):
                raise TypeError(f"ANI1x: atomicNumbers must be integers; atom {i} is {z!r}") from None
            numbers.append(value)
        if not numbers:
            raise ValueError("ANI1x: atomicNumbers is empty; give the atomic number of every atom of the ML region.")
        supported = {1: "H", 6: "C", 7: "N", 8: "O"}
        for i, z in enumerate(numbers):
            if z not in supported:
                raise ValueError(f"atom {i} is {_symbol(z)} (Z={z}); ANI-1x covers only H, C, N and O. Choose a model "
                                 "that covers it or leave the atom out of the ML region.")

        files = _Files(weightsDir)
        torchani = _import_torchani()
        neurochem = torchani.neurochem
        consts = neurochem.Constants(files.params)
        _, sae = neurochem.load_sae(files.sae, return_dict=True)
        symbols = [supported[z] for z in numbers]
        for symbol in set(symbols):
            if symbol not in consts.species or symbol not in sae:
                raise ValueError(f"ANI1x: the weights in '{files.dir}' do not cover {symbol}")
        species = [consts.species.index(s) for s in symbols]

        networks = []
        for index, symbol in enumerate(consts.species):
            atoms = [i for i, s in enumerate(species) if s == index]
            if atoms:
                members = [neurochem.load_atomic_network(files.network(m, symbol)) for m in range(files.count)]
                networks.append((atoms, _ensemble_layers(members)))

        self.atomicNumbers = numbers
        self.hartreeToKJPerMol = HARTREE_TO_KJ_PER_MOL
        # Summed in float64 (Python floats) once; forward adds it to the float64 network energy.
        self.selfEnergy = math.fsum(sae[s] for s in symbols) * HARTREE_TO_KJ_PER_MOL
        self.core32 = _Core(torch.float32, species, consts, networks, files.count)
        self.core64 = _Core(torch.float64, species, consts, networks, files.count)

    def forward(self, positions: Tensor, box: Optional[Tensor] = None) -> Tensor:
        """The ANI-1x energy of the region.

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
        """The atomic environment vectors, ``[n, 384]``, in torchani's feature order.

        Parameters
        ----------
        positions : torch.Tensor
            ``[n, 3]`` in nm, float32 or float64 (computed in that dtype).

        Returns
        -------
        torch.Tensor
            64 radial features (16 per neighbour element H, C, N, O) followed by 320 angular
            features (32 per element pair in torchani's upper-triangle order HH, HC, HN, HO, CC,
            ...), as torchani's ``AEVComputer`` gives them for coordinates in Angstrom.
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
        _deprecated("ANI1x.network_energy", "ANI1x.networkEnergy")
        return self.networkEnergy(positions)


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
