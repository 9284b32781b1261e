"""Free-energy estimators on reduced potentials and works, all in units of kT.

- :func:`mbarEstimate`: MBAR (pymbar) over lambda windows, with the overlap matrix.
- :func:`barEstimate`: BAR (pymbar) on forward and reverse nonequilibrium works.
- :func:`jarzynskiEstimate`: the one-sided exponential average of forward works.
- :func:`decorrelatedIndices`: the statistically independent samples of a time series.

Each returns an :class:`Estimate` (value and standard error in kT); ``Estimate.kJ(temperature)``
converts.
"""
import math
from dataclasses import dataclass, field

import numpy as np
import openmm.unit as unit

__all__ = ["Estimate", "mbarEstimate", "barEstimate", "jarzynskiEstimate", "decorrelatedIndices", "kT"]


def kT(temperature):
    """kT in kJ/mol at ``temperature`` (a Quantity or kelvin)."""
    kelvin = temperature.value_in_unit(unit.kelvin) if unit.is_quantity(temperature) else float(temperature)
    return (unit.MOLAR_GAS_CONSTANT_R * kelvin * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)


@dataclass
class Estimate:
    """A free-energy difference and its standard error, in kT."""

    value: float
    stderr: float
    #: 'mbar', 'bar' or 'jarzynski'.
    method: str
    #: Samples or works used, and anything else the method reports (e.g. the overlap matrix).
    details: dict = field(default_factory=dict)

    def kJ(self, temperature):
        """(value, stderr) in kJ/mol."""
        scale = kT(temperature)
        return self.value * scale, self.stderr * scale


def _pymbar():
    """pymbar, imported without the banner it prints when JAX is missing (it works without it), and
    without its warning on every use of the timeseries module."""
    import contextlib
    import io
    import logging
    import warnings
    logging.getLogger("pymbar").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pymbar
        from pymbar import timeseries, other_estimators  # noqa: F401
    return pymbar


def decorrelatedIndices(series):
    """Indices of statistically independent samples of ``series`` (pymbar's statistical
    inefficiency, with its default settings)."""
    timeseries = _pymbar().timeseries
    series = np.asarray(series, dtype=float)
    if len(series) < 3 or np.ptp(series) == 0:
        return list(range(len(series)))
    return list(timeseries.subsample_correlated_data(series))


def mbarEstimate(u_kn, N_k):
    """MBAR over K states from reduced potentials.

    Parameters
    ----------
    u_kn : array (K, N)
        u_kn[k, n]: the reduced potential (energy / kT) of sample n in state k; the samples are
        grouped by the state they were drawn from, in order.
    N_k : array (K,)
        How many samples come from each state.

    Returns
    -------
    Estimate
        f(last) - f(first), with ``details``: 'f' (every state, kT), 'df', 'overlap' (K x K),
        'N_k'.
    """
    MBAR = _pymbar().MBAR
    u_kn, N_k = np.asarray(u_kn, dtype=float), np.asarray(N_k, dtype=int)
    if u_kn.shape[0] != len(N_k) or u_kn.shape[1] != N_k.sum():
        raise ValueError(f"mbarEstimate: u_kn is {u_kn.shape} for N_k summing to {N_k.sum()} over {len(N_k)} states")
    mbar = MBAR(u_kn, N_k, solver_protocol="robust")
    result = mbar.compute_free_energy_differences()
    f, df = result["Delta_f"][0], result["dDelta_f"][0]
    overlap = mbar.compute_overlap()["matrix"]
    return Estimate(float(f[-1]), float(df[-1]), "mbar",
                    {"f": [float(v) for v in f], "df": [float(v) for v in df], "overlap": np.asarray(overlap).tolist(),
                     "N_k": [int(n) for n in N_k]})


def barEstimate(forward, reverse):
    """BAR on forward works (state 0 -> 1, kT) and reverse works (1 -> 0, kT): f(1) - f(0)."""
    other_estimators = _pymbar().other_estimators
    forward, reverse = np.asarray(forward, dtype=float), np.asarray(reverse, dtype=float)
    if len(forward) == 0 or len(reverse) == 0:
        raise ValueError("barEstimate: BAR needs forward and reverse works")
    result = other_estimators.bar(forward, reverse, uncertainty_method="BAR")
    return Estimate(float(result["Delta_f"]), float(result["dDelta_f"]), "bar",
                    {"forward": len(forward), "reverse": len(reverse)})


def jarzynskiEstimate(forward):
    """The one-sided Jarzynski estimate -ln <exp(-w)> of forward works (kT), with the standard
    error of the delta method; biased when the work distribution is wide (a few kT)."""
    w = np.asarray(forward, dtype=float)
    if len(w) < 2:
        raise ValueError("jarzynskiEstimate: at least two works are needed")
    shift = w.min()
    x = np.exp(-(w - shift))
    mean = x.mean()
    value = shift - math.log(mean)
    stderr = float(x.std(ddof=1) / math.sqrt(len(w)) / mean)
    return Estimate(float(value), stderr, "jarzynski", {"forward": len(w), "work_std": float(w.std(ddof=1))})
