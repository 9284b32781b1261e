"""The end-of-run report: ``report.md`` with PNG plots of the energy components, the temperature and
the ligand RMSD over time, read back from the run's ``energies.csv`` and ``run.json``."""
import csv
import json
import math
import os

import numpy as np

from .outputs import (EMBEDDING, FILES, KINETIC, ML, MM, POTENTIAL, RMSD, STEP, TEMPERATURE, TIME, VOLUME,
                      outputPaths)

__all__ = ["writeReport", "readEnergies"]

#: The plots next to report.md.
PLOTS = {"energies": "energies.png", "temperature": "temperature.png", "rmsd": "rmsd.png"}


def readEnergies(path):
    """The columns of a run's ``energies.csv`` as {header: numpy array} (empty cells are NaN)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], [r for r in rows[1:] if r]
    return {name: np.array([float(r[i]) if r[i] != "" else math.nan for r in rows]) for i, name in enumerate(header)}


def _stats(values):
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return "n/a", "n/a", "n/a"
    return f"{finite.mean():.2f}", f"{finite.std():.2f}", f"{finite[-1]:.2f}"


def writeReport(folder):
    """Write ``report.md`` and its PNG plots into ``folder`` (a run's output); returns the report's path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = outputPaths(folder)
    data = readEnergies(paths["energies"])
    with open(paths["settings"]) as f:
        record = json.load(f)
    settings, segments = record["settings"], record.get("segments", [])
    summary = record.get("summary", {})
    t = data[TIME]
    split = np.isfinite(data[EMBEDDING]).any()
    electrostatic = settings.get("embedding") == "electrostatic"

    components = [(ML, "ML region (model)"), (MM, "MM"), (POTENTIAL, "potential")]
    if split:
        components.insert(1, (EMBEDDING, "ML-MM electrostatic embedding"))
    fig, axes = plt.subplots(len(components), 1, figsize=(7, 1.9 * len(components) + 0.6), sharex=True)
    for ax, (column, label) in zip(np.atleast_1d(axes), components):
        values = data[column]
        finite = values[np.isfinite(values)]
        first = finite[0] if finite.size else 0.0
        ax.plot(t, values - first, lw=1)
        ax.set_ylabel("kJ/mol")
        ax.set_title(f"{label}: change from {first:.1f} kJ/mol", fontsize=9, loc="left")
        ax.ticklabel_format(axis="y", useOffset=False, style="plain")
    np.atleast_1d(axes)[-1].set_xlabel(TIME)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, PLOTS["energies"]), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t, data[TEMPERATURE], lw=1)
    target = settings.get("temperature", "")
    try:
        ax.axhline(float(str(target).split()[0]), color="gray", ls="--", lw=0.8, label=f"thermostat {target}")
        ax.legend(fontsize=8)
    except ValueError:
        pass
    ax.set_xlabel(TIME)
    ax.set_ylabel(TEMPERATURE)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, PLOTS["temperature"]), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t, data[RMSD], lw=1)
    ax.set_xlabel(TIME)
    ax.set_ylabel("ML-region RMSD (Å)")
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, PLOTS["rmsd"]), dpi=110)
    plt.close(fig)

    steps = int(data[STEP][-1]) if data[STEP].size else 0
    lines = ["# openmm-hybrid run report", ""]
    lines += ["| setting | value |", "|---|---|"]
    lines += [f"| input | {summary.get('input', '')} |",
              f"| atoms (ML region) | {summary.get('atoms', '?')} ({summary.get('ml_atoms', '?')}) |",
              f"| model, embedding | {settings['model']}, {settings['embedding']} |",
              f"| model path | {'compiled (AOTInductor)' if settings.get('compile') else 'TorchScript'}, "
              f"{'float64' if settings.get('model_double') else 'float32'} inputs |",
              f"| lambda | {settings['lambda']} |",
              f"| time step | {settings['timestep']}" + (f", {settings['inner_steps']} MM steps inside (MTS)"
                                                          if settings["inner_steps"] > 1 else "") + " |",
              f"| temperature, pressure | {settings['temperature']}, {settings['pressure'] or 'constant volume'} |",
              f"| steps recorded | {steps} ({t[-1] if t.size else 0:.2f} ps) |"]
    for segment in segments:
        lines.append(f"| run {segment['first_step']}-{segment['last_step']} | {segment['ns_per_day']:.3g} ns/day on "
                     f"{segment['platform']} ({segment['machine']}), {segment['wall_seconds']:.0f} s, "
                     f"{segment['date']} |")
    lines += ["", "| quantity | mean | std | last |", "|---|---|---|---|"]
    for column in [POTENTIAL, ML, EMBEDDING, MM, KINETIC, TEMPERATURE, RMSD, VOLUME]:
        if np.isfinite(data[column]).any():
            lines.append(f"| {column} | " + " | ".join(_stats(data[column])) + " |")
    if split:
        meaning = ", embedding the ML-MM electrostatics the embedding terms add"
    elif electrostatic:
        meaning = " including its ML-MM electrostatics (the model takes the MM charges itself, so they cannot be split)"
    else:
        meaning = " (with mechanical embedding the ML-MM coupling is part of MM)"
    lines += ["", "The potential is ML + " + ("embedding + " if split else "") + "MM: ML is the model's energy "
              "of the region" + meaning
              + ", MM the force field without the region's internal terms.  The RMSD is that of the region's heavy "
              "atoms from the starting structure after superposing the protein's C-alpha atoms (the region itself "
              "when there is no protein).",
              "", "## Energy components", "", f"![energy components]({PLOTS['energies']})",
              "", "## Temperature", "", f"![temperature]({PLOTS['temperature']})",
              "", "## ML-region RMSD", "", f"![ligand RMSD]({PLOTS['rmsd']})", "",
              f"Files: `{FILES['trajectory']}` (view with `{FILES['structure']}` as topology), `{FILES['energies']}`, "
              f"`{FILES['checkpoint']}` (continue with `--resume`), `{FILES['final']}`, `{FILES['settings']}` "
              "(settings and timings)."]
    path = paths["report"]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path
