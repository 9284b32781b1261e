"""The ``openmm-hybrid`` command (also ``python -m openmmhybrid``).

::

    openmm-hybrid run CONFIG.toml [--steps 1000 --platform CPU ...] [--resume] [--dry-run]
    openmm-hybrid prepare --protein P.pdb --ligand L.sdf --output DIR   # then: run --prepared DIR
    openmm-hybrid fe CONFIG.toml [--method mbar|neq] [--workers N | --scheduler ADDRESS] [--quick] [--resume]
                                           # MM -> ML/MM corrections of binding or hydration free energies
    openmm-hybrid template > run.toml      # every setting, its default and its help
    openmm-hybrid report OUTPUT_FOLDER     # rebuild report.md from a run's outputs
    openmm-hybrid models                   # the ML model names: elements, where the weights are
    openmm-hybrid --version                # openmm-hybrid, OpenMM and torch versions, torch's CPU kernels

Every key of the config file is also a flag (``inner_steps`` -> ``--inner-steps``); flags win.
Bad input stops the command before any long work with one line on stderr and exit status 2.
"""
import argparse
import os
import sys

from . import models, versionReport
from .job.config import SECTIONS, SETTINGS, ConfigError, loadConfig, preparesHere, templateConfig
from .job.preparing import prepareFromConfig
from .prepare.forcefields import PROTEIN_FORCEFIELDS
from .job.outputs import FILES, outputPaths
from .job.report import writeReport
from .job.runner import runJob

__all__ = ["main", "buildParser"]


class _VersionAction(argparse.Action):
    """--version: prints :func:`openmmhybrid.versionReport` and exits."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(versionReport())
        parser.exit()


#: Settings outside [prepare] that `openmm-hybrid prepare` takes too.
_PREPARE_ALSO = ("nonbonded_cutoff", "constraints", "temperature", "pressure", "seed", "platform", "threads")


def _flagHelp(s):
    default = s.default
    if default is not None and s.unit is not None:
        default = f"{default.value_in_unit(s.unit):g} {s.unit.get_symbol()}"
    help = s.help + (f" [{s.unit.get_symbol()}]" if s.unit is not None else "")
    if s.choices:
        help += f" {{{', '.join(s.choices)}}}"
    help += f" (default: {default})"
    return help.replace("%", "%%")


def _forcefieldTable():
    lines = ["protein force fields and their water models (OpenMM's files; the first is the default):"]
    for ff in PROTEIN_FORCEFIELDS.values():
        waters = [ff.defaultWater] + [w for w in ff.waters if w != ff.defaultWater]
        lines.append(f"  {ff.name:<10}{ff.file:<18}{', '.join(waters)}")
    lines.append("ligands: gaff2 (GAFF2 types, AM1-BCC charges: AmberTools, cached), or openff-2.x.y (needs "
                 "openff-toolkit); charmm36 takes no ligand (its 1-4 scaling differs)")
    lines.append("example: openmm-hybrid prepare --protein protein.pdb --ligand ligand.sdf --output prepared")
    return "\n".join(lines)


def buildParser():

    parser = argparse.ArgumentParser(prog="openmm-hybrid", description="Hybrid ML/MM molecular dynamics with OpenMM.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="docs/user_guide.md explains every setting; `openmm-hybrid template` "
                                            "prints a config file to start from.")
    parser.add_argument("--version", action=_VersionAction, help="print the versions of openmm-hybrid, OpenMM and "
                        "torch, and the CPU kernels torch uses, then exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser("run", help="run an ML/MM simulation", description="Run an ML/MM simulation from a "
                              "TOML config; every key is also a flag, and flags override the file.")
    run.add_argument("config", nargs="?", help="the TOML config file (optional when flags give the input and region)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoint in the output folder up to "
                     "steps; the outputs are continued, not rewritten")
    run.add_argument("--dry-run", action="store_true", help="read and check everything, evaluate the energy once, "
                     "and stop")
    for section in SECTIONS:
        group = run.add_argument_group(f"[{section}] settings")
        for s in SETTINGS:
            if s.section != section:
                continue
            group.add_argument(s.flag, dest=s.name, default=argparse.SUPPRESS, metavar="VALUE", help=_flagHelp(s))
    prepare = commands.add_parser(
        "prepare", help="set up a protein-ligand System: PDBFixer, GAFF2/AM1-BCC ligands, water and ions, "
        "equilibration", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prepare a protein PDB and ligand SDF/MOL2/PDB files for ML/MM: the folder it writes "
        "(System, topology, equilibrated state, the ligands' parameters, prepare.log) is what `openmm-hybrid run "
        "--prepared DIR` starts from, with the ligands as the ML region. The settings may also come from the "
        "[prepare] table of a config file.",
        epilog=_forcefieldTable())
    prepare.add_argument("config", nargs="?", help="a TOML config with a [prepare] table (optional)")
    prepare.add_argument("--output", dest="prepared", default=argparse.SUPPRESS, metavar="DIR",
                         help="the folder to write (default: [input] prepared, else prepared-system)")
    prepare.add_argument("--overwrite", action="store_true", help="replace a folder prepared from other settings")
    for s in SETTINGS:
        if s.section != "prepare" and s.name not in _PREPARE_ALSO:
            continue
        kwargs = dict(dest=s.name, default=argparse.SUPPRESS, metavar="VALUE", help=_flagHelp(s))
        if s.kind in ("files", "strings"):
            kwargs.update(action="append", help=_flagHelp(s) + "; repeat the flag for more")
        prepare.add_argument(s.flag, **kwargs)
    fe = commands.add_parser(
        "fe", help="MM -> ML/MM corrections of binding or hydration free energies (MBAR or NEQ, on Dask)",
        description="Compute the MM -> ML/MM free-energy correction of each leg of a binding (complex, solvent) or "
        "hydration (water, vacuum) calculation and ddG = dG(first leg) - dG(second), with uncertainties, by MBAR "
        "over lambda windows or by nonequilibrium switching with BAR. Every window, end-state sampling and switch "
        "is a task, run here or on Dask; each result is written into OUTPUT/tasks as it finishes. Writes "
        "OUTPUT/result.json, results.csv and report.md. docs/free_energy.md explains the config.")
    fe.add_argument("config", help="the TOML config of the calculation (examples/configs/fe_*.toml)")
    fe.add_argument("--method", choices=["mbar", "neq"], default=None, help="MBAR over lambda windows, or "
                    "bidirectional nonequilibrium switching with BAR (default: [fe] method, else mbar)")
    fe.add_argument("--workers", type=int, default=None, metavar="N", help="run the tasks on a local Dask cluster "
                    "of N worker processes, on 127.0.0.1 only; 1: in this process (default: [fe] workers, else one per "
                    "core, or one per GPU on CUDA)")
    fe.add_argument("--scheduler", default=None, metavar="ADDRESS", help="run the tasks on the Dask scheduler at "
                    "ADDRESS (e.g. tls://10.0.0.5:8786; see docs/free_energy.md for a batch cluster and TLS)")
    fe.add_argument("--output", default=None, metavar="DIR", help="the output folder (default: [fe] output)")
    fe.add_argument("--embedding", choices=["mechanical", "electrostatic"], default=None, help="the ML-MM coupling "
                    "of every leg (default: [ml] embedding, else mechanical)")
    fe.add_argument("--platform", choices=["Reference", "CPU", "CUDA", "OpenCL"], default=None, help="the OpenMM "
                    "platform of every leg (default: [platform] platform, else CPU)")
    fe.add_argument("--threads", type=int, default=None, metavar="N", help="threads of each task, torch's and the CPU "
                    "platform's (default: all cores, shared among the local workers)")
    fe.add_argument("--dry-run", action="store_true", help="set up and check every leg (inputs, ML regions, "
                    "models), then stop")
    fe.add_argument("--seed", type=int, default=None, help="the random seed of the calculation (default: [fe] seed)")
    fe.add_argument("--resume", action="store_true", help="continue the calculation in the output folder: finished "
                    "tasks are not rerun")
    fe.add_argument("--quick", action="store_true", help="the quick protocol ([quick.*] tables): small enough for "
                    "CI, and NOT converged")
    fe.add_argument("--analyze", action="store_true", help="only analyse the tasks that are done (also while a "
                    "calculation runs elsewhere) and rewrite result.json and report.md")
    commands.add_parser("template", help="print a config file with every setting and its default")
    report = commands.add_parser("report", help="rebuild report.md and its plots from a run's output folder")
    report.add_argument("folder")
    models_ = commands.add_parser("models", help="list the registered ML models, their elements and where their "
                                  "weights come from", description="List every registered ML model name with its "
                                  "elements, total-charge support, where its weights come from (and whether that "
                                  "folder is there), and their licence.")
    models_.add_argument("--names", action="store_true", help="print the names only, one per line")
    return parser


def _modelTable():
    """The text of `openmm-hybrid models`: one block per registered name."""
    lines, rows = [], models.describeModels()
    width = max([len(row["name"]) for row in rows] + [8]) + 2
    for row in rows:
        adapter = row.get("modelFile", False)
        unknown = "those of the model file (checked when it is read)" if adapter else "not known here (a registered factory)"
        fields = [("elements", " ".join(row["elements"]) if row["elements"] else unknown),
                  ("charge", row["charge"] or "not known here"), ("weights", row["source"])]
        if row["folder"] is not None:
            fields.append(("file" if adapter else "folder",
                           f"{row['folder']} ({'present' if row['present'] else 'not there'})"))
        elif row["present"] is False:
            fields.append(("folder", "not found (is torchani installed?)"))
        if row["licence"]:
            fields.append(("licence", row["licence"]))
        for i, (key, value) in enumerate(fields):
            lines.append(f"{row['name'] if i == 0 else '':<{width}}{key + ':':<10}{value}")
        lines.append("")
    lines.append("A name goes to `[ml] model` (or --model) and to createMixedSystem(..., model=name). Weights that are "
                 "not there: ani1ccx's are extracted at set-up (`make build`, or `python python/fetch_ani_weights.py`); "
                 "ani2x's are your files (modelArgs={'weightsDir': folder}, or the folder shown); the adapters' are your files "
                 "too ([ml] model_path, --model-path or modelArgs={'modelPath': file}, or the file shown). Pickled "
                 "(.model) and TorchScript (.pth) model files run code when loaded: use files you trust. "
                 "docs/user_guide.md, 'Models', has the table.")
    return "\n".join(lines)


def _fail(message, status=2):
    print(f"openmm-hybrid: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


def _freeEnergy(args):
    from .freeenergy.config import loadFEConfig
    from .freeenergy.workflow import runFreeEnergy
    if args.workers is not None and args.workers < 1:
        return _fail(f"--workers must be at least 1, not {args.workers}")
    if args.workers is not None and args.scheduler is not None:
        return _fail("give --workers (a local cluster) or --scheduler (a running one), not both")
    overrides = {"method": args.method, "workers": args.workers, "scheduler": args.scheduler, "output": args.output,
                 "seed": args.seed, "threads": args.threads}
    runOverrides = {k: v for k, v in (("embedding", args.embedding), ("platform", args.platform)) if v is not None}

    def run():
        fe = loadFEConfig(args.config, overrides, quick=args.quick, mlOverrides=runOverrides)
        runFreeEnergy(fe, resume=args.resume, analyzeOnly=args.analyze, dryRun=args.dry_run, log=_print)

    return _guarded(run)


def _print(line):
    print(line, flush=True)


def _guarded(action):
    """``action()``, with its errors as the command's one line on stderr and exit status: 2 for bad
    input, 130 for Ctrl-C, 1 for a failure while running; otherwise what it returns, or 0."""
    try:
        return action() or 0
    except ConfigError as error:
        return _fail(error)
    except KeyboardInterrupt as error:
        return _fail(error if str(error) else "interrupted", 130)
    except RuntimeError as error:
        return _fail(error, 1)


def main(argv=None):
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = buildParser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "template":
        sys.stdout.write(templateConfig())
        return 0
    if args.command == "models":
        print("\n".join(models.availableModels()) if args.names else _modelTable())
        return 0
    if args.command == "report":
        paths = outputPaths(args.folder)
        for role in ("energies", "settings"):
            if not os.path.isfile(paths[role]):
                return _fail(f"'{args.folder}' has no {FILES[role]}; give the output folder of a run")
        print(writeReport(args.folder))
        return 0
    if args.command == "fe":
        return _freeEnergy(args)
    if args.command == "prepare":
        return _guarded(lambda: _prepare(args))
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "dry_run")}
    return _guarded(lambda: runJob(loadConfig(args.config, overrides), resume=args.resume, dryRun=args.dry_run,
                                   log=_print) and 0)


def _prepare(args):
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "overwrite")}
    config = loadConfig(args.config, overrides)
    if not preparesHere(config):
        return _fail("nothing to prepare: give --protein and/or --ligand (or a config with a [prepare] table)")
    prepared = prepareFromConfig(config, log=_print, overwrite=args.overwrite)
    print(f"openmm-hybrid prepare: done; run it with `openmm-hybrid run --prepared {prepared.folder}` "
          f"(ML region: {', '.join(prepared.ligandResidues) or 'give one'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
