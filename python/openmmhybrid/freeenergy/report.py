"""The report of an ``openmm-hybrid fe`` calculation: the MM -> ML/MM free-energy corrections of
binding or hydration, as ``report.md`` with PNG plots next to it and ``results.csv``.

- :func:`writeReport`: everything from the calculation's result (the dict that is also
  ``result.json``).

The report has the ddG of every ligand and the dG of each of its legs (kJ/mol with the standard
error, and kcal/mol), then per leg the checks of its estimate: for MBAR the overlap matrix, the
smallest neighbour overlap, <dU/dlambda> along lambda and the forward/reverse convergence; for
nonequilibrium switching the work distributions, BAR with Jarzynski beside it and the spread of
the works.  A quick (CI-sized) protocol and a partial calculation are said at the top.
"""
import csv
import json
import math
import os
import re

import numpy as np

__all__ = ["writeReport"]

#: kJ per kcal.
KCAL = 4.184
#: Gas constant, kJ/mol/K (kT when the result does not give it).
R_KJ = 0.0083144626
#: Below this, a neighbour overlap of MBAR windows is reported as too small.
OVERLAP_WARNING = 0.03
#: Above this many kT, a work standard deviation is reported (BAR may be unreliable).
WORK_SPREAD_KT = 2.0
#: The files next to report.md.
FILES = {"report": "report.md", "csv": "results.csv"}
CSV_COLUMNS = ["ligand", "leg", "value_kJ_per_mol", "stderr_kJ_per_mol", "done", "total"]


def _safe(name):
    """``name`` with anything but letters, digits, '.', '_' and '-' turned into '_' (a file name)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    return safe or "ligand"


def _safeNames(names):
    """{name: a distinct _safe file name} (a number added where two names would clash)."""
    used, out = set(), {}
    for name in names:
        base = candidate = _safe(name)
        i = 2
        while candidate in used:
            candidate = f"{base}-{i}"
            i += 1
        used.add(candidate)
        out[name] = candidate
    return out


def _number(x):
    """``x`` as a finite float, or None."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _pm(value, stderr=None, scale=1.0):
    """'value ± stderr' (2 decimals) of ``value / scale``; '' when there is no value."""
    value, stderr = _number(value), _number(stderr)
    if value is None:
        return ""
    text = f"{value / scale:.2f}"
    return text + (f" ± {stderr / scale:.2f}" if stderr is not None else "")


def _cell(text):
    """Text for a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _duration(seconds):
    seconds = _number(seconds)
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{seconds:.1f} s"


def _legOrder(result, ligands):
    """The leg names: ``legNames`` first, then any other leg a ligand has."""
    names = list(result.get("legNames") or [])
    for ligand in ligands.values():
        for leg in (ligand.get("legs") or {}):
            if leg not in names:
                names.append(leg)
    return names


def _tasks(leg):
    return f"{leg.get('done', 0)} of {leg.get('total', '?')} tasks"


def _notDone(leg):
    return f"not done ({_tasks(leg)})"


def _isMBAR(leg, method):
    if "overlap" in leg or "lambdas" in leg:
        return True
    if "forwardWorks" in leg:
        return False
    return (leg.get("estimator") or method) == "mbar"


def _figureModule():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _neighbourOverlap(overlap):
    """(smallest neighbour overlap, its index k: between windows k and k+1), or (None, None)."""
    O = np.asarray(overlap, dtype=float)
    if O.ndim != 2 or O.shape[0] < 2 or O.shape[0] != O.shape[1]:
        return None, None
    pairs = [min(O[k, k + 1], O[k + 1, k]) for k in range(O.shape[0] - 1)]
    k = int(np.argmin(pairs))
    return float(pairs[k]), k


def _plotOverlap(plt, path, overlap, lambdas, title):
    O = np.asarray(overlap, dtype=float)
    K = O.shape[0]
    size = min(12.0, max(3.5, 0.55 * K + 1.5))
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    image = ax.imshow(O, vmin=0.0, vmax=1.0, cmap="Blues")
    fontsize = max(4.0, min(9.0, 90.0 / K))
    for i in range(K):
        for j in range(K):
            ax.text(j, i, f"{O[i, j]:.2f}", ha="center", va="center", fontsize=fontsize,
                    color="white" if O[i, j] > 0.5 else "black")
    labels = [f"{x:g}" for x in lambdas] if lambdas is not None and len(lambdas) == K else [str(k) for k in range(K)]
    ax.set_xticks(range(K))
    ax.set_yticks(range(K))
    ax.set_xticklabels(labels, rotation=90 if K > 8 else 0, fontsize=fontsize + 1)
    ax.set_yticklabels(labels, fontsize=fontsize + 1)
    ax.set_xlabel("λ")
    ax.set_ylabel("λ")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plotDudl(plt, path, lambdas, dudl, title):
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(lambdas, dudl, "o-", lw=1)
    ax.set_xlabel("λ")
    ax.set_ylabel("<dU/dλ> (kJ/mol)")
    ax.set_title(title, fontsize=9)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _series(pairs):
    """[[value, stderr], ...] -> (values, stderrs) arrays (NaN where missing)."""
    values, errors = [], []
    for pair in pairs or []:
        pair = list(pair) if isinstance(pair, (list, tuple)) else [pair]
        v = _number(pair[0]) if pair else None
        e = _number(pair[1]) if len(pair) > 1 else None
        values.append(math.nan if v is None else v)
        errors.append(0.0 if e is None else e)
    return np.array(values), np.array(errors)


def _plotConvergence(plt, path, convergence, value, stderr, title):
    fractions = np.asarray(convergence.get("fractions") or [], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key, label, marker in (("forward", "forward (first fraction)", "o"),
                               ("reverse", "reverse (last fraction)", "s")):
        values, errors = _series(convergence.get(key))
        n = min(len(values), len(fractions))
        if n:
            ax.errorbar(fractions[:n], values[:n], yerr=errors[:n], marker=marker, capsize=3, lw=1, label=label)
    value, stderr = _number(value), _number(stderr)
    if value is not None:
        ax.axhline(value, color="gray", lw=0.8, ls="--", label="all data")
        if stderr is not None:
            ax.axhspan(value - stderr, value + stderr, color="gray", alpha=0.15, lw=0)
    ax.set_xlabel("fraction of the data")
    ax.set_ylabel("ΔG (kJ/mol)")
    ax.set_xlim(0, 1.05)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plotWorks(plt, path, forward, reverse, value, title):
    both = np.concatenate([forward, -reverse])
    bins = np.histogram_bin_edges(both, bins=int(min(40, max(6, math.sqrt(both.size) * 2))))
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if forward.size:
        ax.hist(forward, bins=bins, alpha=0.55, label=f"forward W, MM → ML/MM (n = {forward.size})")
    if reverse.size:
        ax.hist(-reverse, bins=bins, alpha=0.55, label=f"−reverse W, ML/MM → MM (n = {reverse.size})")
    value = _number(value)
    if value is not None:
        ax.axvline(value, color="black", lw=1.2, ls="--", label=f"BAR ΔG = {value:.2f}")
    ax.set_xlabel("work (kJ/mol)")
    ax.set_ylabel("switches")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mbarSection(plt, folder, stem, ligand, legName, leg, kT):
    lines = []
    lambdas = leg.get("lambdas")
    overlap = leg.get("overlap")
    title = f"{ligand}, {legName}"
    if overlap is not None and np.asarray(overlap, dtype=float).ndim == 2 and len(overlap):
        name = f"overlap-{stem}.png"
        _plotOverlap(plt, os.path.join(folder, name), overlap, lambdas, f"MBAR overlap: {title}")
        lines += [f"![overlap matrix]({name})", ""]
        smallest, k = _neighbourOverlap(overlap)
        if smallest is not None:
            between = (f"λ = {lambdas[k]:g} and {lambdas[k + 1]:g}" if lambdas is not None and len(lambdas) > k + 1
                       else f"windows {k} and {k + 1}")
            lines += [f"Smallest neighbour overlap: {smallest:.3f} (between {between}).", ""]
            if smallest < OVERLAP_WARNING:
                lines += [f"**Warning: the overlap between {between} is {smallest:.3f}, below {OVERLAP_WARNING}: "
                          "the MBAR estimate may be unreliable; add windows there or sample longer.**", ""]
    dudl, samples = leg.get("dudlMean"), leg.get("samples")
    if lambdas is not None and len(lambdas):
        if dudl is not None and len(dudl) == len(lambdas):
            name = f"dudl-{stem}.png"
            _plotDudl(plt, os.path.join(folder, name), lambdas, [_number(x) if _number(x) is not None else math.nan
                                                                 for x in dudl], f"<dU/dλ>: {title}")
            lines += [f"![dU/dlambda]({name})", ""]
        lines += ["| λ | samples (decorrelated) | ⟨dU/dλ⟩ (kJ/mol) |", "|---|---|---|"]
        for i, lam in enumerate(lambdas):
            n = samples[i] if samples is not None and i < len(samples) else ""
            d = _number(dudl[i]) if dudl is not None and i < len(dudl) else None
            lines.append(f"| {lam:g} | {n} | {'' if d is None else f'{d:.2f}'} |")
        lines.append("")
    convergence = leg.get("convergence")
    if convergence and convergence.get("fractions"):
        name = f"convergence-{stem}.png"
        _plotConvergence(plt, os.path.join(folder, name), convergence, leg.get("value"), leg.get("stderr"),
                         f"Forward/reverse convergence: {title}")
        lines += [f"![convergence]({name})", "",
                  "| fraction | forward (kJ/mol) | reverse (kJ/mol) |", "|---|---|---|"]
        forward, reverse = convergence.get("forward") or [], convergence.get("reverse") or []
        for i, fraction in enumerate(convergence["fractions"]):
            cells = []
            for series in (forward, reverse):
                pair = series[i] if i < len(series) else None
                pair = list(pair) if isinstance(pair, (list, tuple)) else [pair]
                cells.append(_pm(pair[0], pair[1] if len(pair) > 1 else None))
            lines.append(f"| {fraction:g} | {cells[0]} | {cells[1]} |")
        lines += ["", "Forward uses the first fraction of every window's samples, reverse the last; "
                  "where they meet within their errors well before the whole data, the estimate is converged.", ""]
    return lines


def _neqSection(plt, folder, stem, ligand, legName, leg, kT):
    lines = []
    forward = np.array([x for x in (_number(w) for w in leg.get("forwardWorks") or []) if x is not None])
    reverse = np.array([x for x in (_number(w) for w in leg.get("reverseWorks") or []) if x is not None])
    if forward.size or reverse.size:
        name = f"works-{stem}.png"
        _plotWorks(plt, os.path.join(folder, name), forward, reverse, leg.get("value"), f"Work distributions: "
                   f"{ligand}, {legName}")
        lines += [f"![work distributions]({name})", ""]
    jarzynski = leg.get("jarzynski") or {}
    if isinstance(jarzynski, (list, tuple)):
        jarzynski = {"value": jarzynski[0] if jarzynski else None,
                     "stderr": jarzynski[1] if len(jarzynski) > 1 else None}
    oneSided = leg.get("estimator") == "jarzynski"
    lines += ["| estimate | ΔG (kJ/mol) | ΔG (kcal/mol) |", "|---|---|---|"]
    if not oneSided:
        lines.append(f"| BAR (forward and reverse) | {_pm(leg.get('value'), leg.get('stderr'))} | "
                     f"{_pm(leg.get('value'), leg.get('stderr'), KCAL)} |")
    if _number(jarzynski.get("value")) is not None:
        lines.append(f"| Jarzynski (forward only) | {_pm(jarzynski.get('value'), jarzynski.get('stderr'))} | "
                     f"{_pm(jarzynski.get('value'), jarzynski.get('stderr'), KCAL)} |")
    lines.append("")
    rows, spreads = [], []
    for label, works in (("forward W", forward), ("−reverse W", -reverse)):
        if works.size:
            std = float(works.std(ddof=1)) if works.size > 1 else 0.0
            spreads.append((label, std))
            rows.append(f"| {label} | {works.size} | {works.mean():.2f} | {std:.2f} | {std / kT:.2f} |")
    if rows:
        lines += ["| works | switches | mean (kJ/mol) | std (kJ/mol) | std (kT) |", "|---|---|---|---|---|"] + rows
        value = _number(leg.get("value"))
        if value is not None and forward.size and reverse.size:
            lines += ["", f"Dissipated work: forward {forward.mean() - value:.2f}, reverse "
                      f"{reverse.mean() + value:.2f} kJ/mol (mean work less ±ΔG)."]
        lines.append("")
        wide = [(label, std) for label, std in spreads if std > WORK_SPREAD_KT * kT]
        if wide:
            which = ", ".join(f"{label} {std:.2f} kJ/mol = {std / kT:.1f} kT" for label, std in wide)
            lines += [f"**Note: the work standard deviation exceeds {WORK_SPREAD_KT:g} kT ({which}): "
                      f"{'Jarzynski' if oneSided else 'BAR'} may be unreliable; use more or longer switches"
                      + ("" if not oneSided else ", or both directions (BAR)") + ".**", ""]
    return lines


def writeReport(folder, result):
    """Write the report of an ``openmm-hybrid fe`` calculation.

    Parameters
    ----------
    folder : str
        Where to write (created if missing): ``report.md``, its PNG plots
        (``overlap-<ligand>-<leg>.png``, ``dudl-<ligand>-<leg>.png`` and
        ``convergence-<ligand>-<leg>.png`` for MBAR legs, ``works-<ligand>-<leg>.png`` for
        nonequilibrium legs; ligand and leg names made file-safe) and ``results.csv``
        (columns ligand, leg, value_kJ_per_mol, stderr_kJ_per_mol, done, total: a row per leg
        and one with leg 'ddG' per ligand; empty value cells where there is no estimate yet).
    result : dict
        The calculation's result, the dict that is also ``result.json``: 'calculation'
        ('binding' or 'hydration'), 'method', 'quick', 'temperature_K', 'kT_kJ_per_mol',
        'legNames', 'ddG', 'ligands' (per ligand its 'ddG' and its 'legs', each with 'value',
        'stderr', 'done', 'total' and the estimator's details), 'tasks', 'workers',
        'wallSeconds', 'machine', 'date', 'versions', 'settings', 'embedding', 'model'.
        Energies in kJ/mol; missing keys are left out of the report.

    Returns
    -------
    str
        The path of ``report.md``.
    """
    os.makedirs(folder, exist_ok=True)
    ligands = result.get("ligands") or {}
    legNames = _legOrder(result, ligands)
    mainLegs = list(result.get("legNames") or legNames)
    temperature = _number(result.get("temperature_K"))
    kT = _number(result.get("kT_kJ_per_mol")) or R_KJ * (temperature or 300.0)
    calculation = result.get("calculation") or "?"
    what = f"{result['calculation']} free energy" if result.get("calculation") else "free energy"
    stems = _safeNames(list(ligands))
    legStems = _safeNames(legNames)

    # results.csv
    with open(os.path.join(folder, FILES["csv"]), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for name, ligand in ligands.items():
            legs = ligand.get("legs") or {}
            for legName in legNames:
                if legName in legs:
                    leg = legs[legName]
                    writer.writerow([name, legName, _csvNumber(leg.get("value")), _csvNumber(leg.get("stderr")),
                                     leg.get("done", ""), leg.get("total", "")])
            ddG = ligand.get("ddG") or {}
            writer.writerow([name, "ddG", _csvNumber(ddG.get("value")), _csvNumber(ddG.get("stderr")),
                             sum(int(leg.get("done") or 0) for leg in legs.values()),
                             sum(int(leg.get("total") or 0) for leg in legs.values())])

    # Header
    title = f"# ML/MM correction of the {what}"
    details = ", ".join(x for x in (result.get("model"), f"{result['embedding']} embedding"
                                    if result.get("embedding") else None) if x)
    lines = [title + (f" ({details})" if details else ""), ""]
    if result.get("quick"):
        lines += ["**Quick protocol (sized for CI): these numbers are NOT converged. Do not use them as results.**",
                  ""]
    tasks = result.get("tasks") or {}
    missing = []
    for name, ligand in ligands.items():
        legs = ligand.get("legs") or {}
        for legName in legNames:
            leg = legs.get(legName)
            if leg is None:
                if legName in mainLegs:
                    missing.append(f"{name}/{legName} (no tasks)")
            elif _number(leg.get("value")) is None:
                missing.append(f"{name}/{legName} ({_notDone(leg)})")
    done, total = tasks.get("done"), tasks.get("total")
    partial = bool(missing) or (done is not None and total is not None and done < total)
    if partial:
        lines.append(f"**Partial calculation: {done if done is not None else '?'} of "
                     f"{total if total is not None else '?'} tasks done.**"
                     + (" Legs without a result: " + "; ".join(_cell(m) for m in missing) + "." if missing else ""))
        lines.append("")
    lines += ["| | |", "|---|---|"]
    lines.append(f"| calculation | {calculation}, legs {' − '.join(mainLegs) if mainLegs else '?'} |")
    method = result.get("method")
    if method:
        described = {"mbar": "MBAR over λ windows", "neq": "nonequilibrium switching"}.get(method, method)
        lines.append(f"| method | {_cell(described)} |")
    if result.get("model") or result.get("embedding"):
        lines.append(f"| model, embedding | {result.get('model', '?')}, {result.get('embedding', '?')} |")
    if temperature is not None:
        lines.append(f"| temperature | {temperature:g} K (kT = {kT:.3f} kJ/mol) |")
    lines.append(f"| tasks | {done if done is not None else '?'} of {total if total is not None else '?'} done"
                 + (" (partial)" if partial else "") + " |")
    for key, label in (("date", "date"), ("machine", "machine"), ("workers", "workers")):
        if result.get(key) is not None:
            lines.append(f"| {label} | {_cell(result[key])} |")
    if result.get("wallSeconds") is not None:
        lines.append(f"| wall time | {_duration(result['wallSeconds'])} |")
    versions = result.get("versions") or {}
    if versions:
        lines.append("| versions | " + ", ".join(f"{_cell(k)} {_cell(v)}" for k, v in versions.items()) + " |")
    lines.append("")

    # Results table
    lines += ["## Results", ""]
    header = ["ligand", "ΔΔG (kJ/mol)", "ΔΔG (kcal/mol)"] + [f"ΔG {_cell(leg)} (kJ/mol)" for leg in legNames]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, ligand in ligands.items():
        ddG = ligand.get("ddG") or {}
        legs = ligand.get("legs") or {}
        kj = _pm(ddG.get("value"), ddG.get("stderr")) or "not done"
        kcal = _pm(ddG.get("value"), ddG.get("stderr"), KCAL) or "not done"
        cells = []
        for legName in legNames:
            leg = legs.get(legName)
            if leg is None:
                cells.append("—")
            else:
                cells.append(_pm(leg.get("value"), leg.get("stderr")) or _notDone(leg))
        lines.append("| " + " | ".join([_cell(name), kj, kcal] + cells) + " |")
    lines.append("")
    first, second = (mainLegs + ["?", "?"])[:2]
    lines += [f"ΔΔG = ΔG({first}) − ΔG({second}); each ΔG is the free energy of switching the ligand from MM "
              "(λ = 0) to ML/MM (λ = 1) in that leg, less a constant that cancels in ΔΔG (the ML region's ML − "
              f"MM energy difference at the start of the {first} leg, the same for both legs; result.json holds it "
              f"as each leg's offset).  Adding ΔΔG to the MM {what} gives the {what} with the "
              "ML/MM potential.  Errors are one standard error.", ""]

    # Per leg
    plt = None
    for name, ligand in ligands.items():
        legs = ligand.get("legs") or {}
        for legName in legNames:
            if legName not in legs:
                continue
            leg = legs[legName]
            lines += [f"## {_cell(name)}: {_cell(legName)}", ""]
            particles = [f"{leg['particles']} particles" if leg.get("particles") is not None else None,
                         f"{leg['mlAtoms']} ML atoms" if leg.get("mlAtoms") is not None else None]
            about = ", ".join(x for x in particles if x)
            estimator = leg.get("estimator") or ("mbar" if _isMBAR(leg, method) else "bar")
            estimator = {"mbar": "MBAR", "bar": "BAR", "jarzynski": "Jarzynski"}.get(estimator, estimator)
            if _number(leg.get("value")) is None:
                lines += [f"{estimator}: not done ({_tasks(leg)})" + (f"; {about}." if about else "."), ""]
                continue
            lines += [f"ΔG = {_pm(leg.get('value'), leg.get('stderr'))} kJ/mol "
                      f"({_pm(leg.get('value'), leg.get('stderr'), KCAL)} kcal/mol) by {estimator}, "
                      f"{_tasks(leg)}" + (f"; {about}" if about else "") + ".", ""]
            if plt is None:
                plt = _figureModule()
            stem = f"{stems[name]}-{legStems[legName]}"
            if _isMBAR(leg, method):
                lines += _mbarSection(plt, folder, stem, name, legName, leg, kT)
            else:
                lines += _neqSection(plt, folder, stem, name, legName, leg, kT)

    # Settings
    lines += ["## Settings", "", "```json", json.dumps(result.get("settings") or {}, indent=2, default=str), "```", "",
              f"Files: `{FILES['csv']}` (the numbers above), `result.json` (everything)."]
    path = os.path.join(folder, FILES["report"])
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _csvNumber(x):
    x = _number(x)
    return "" if x is None else repr(x)
