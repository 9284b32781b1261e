"""The ``openmm-hybrid`` command (also ``python -m openmmhybrid``).

::

    openmm-hybrid run CONFIG.toml [--steps 1000 --platform CPU ...] [--resume] [--dry-run]
    openmm-hybrid template > run.toml      # every setting, its default and its help
    openmm-hybrid report OUTPUT_FOLDER     # rebuild report.md from a run's outputs
    openmm-hybrid models                   # the registered ML model names
    openmm-hybrid --version                # openmm-hybrid, OpenMM and torch versions, torch's CPU kernels

Every key of the config file is also a flag (``inner_steps`` -> ``--inner-steps``); flags win.
Bad input stops the command before any long work with one line on stderr and exit status 2.
"""
import argparse
import os
import sys

from . import models, versionReport
from .job.config import SECTIONS, SETTINGS, ConfigError, loadConfig, templateConfig
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
            default = s.default
            if default is not None and s.unit is not None:
                default = f"{default.value_in_unit(s.unit):g} {s.unit.get_symbol()}"
            help = s.help + (f" [{s.unit.get_symbol()}]" if s.unit is not None else "")
            if s.choices:
                help += f" {{{', '.join(s.choices)}}}"
            help += f" (default: {default})"
            group.add_argument(s.flag, dest=s.name, default=argparse.SUPPRESS, metavar="VALUE",
                               help=help.replace("%", "%%"))
    commands.add_parser("template", help="print a config file with every setting and its default")
    report = commands.add_parser("report", help="rebuild report.md and its plots from a run's output folder")
    report.add_argument("folder")
    commands.add_parser("models", help="list the registered ML models")
    return parser


def _fail(message, status=2):
    print(f"openmm-hybrid: error: {' '.join(str(message).split())}", file=sys.stderr)
    return status


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
        print("\n".join(models.availableModels()))
        return 0
    if args.command == "report":
        paths = outputPaths(args.folder)
        for role in ("energies", "settings"):
            if not os.path.isfile(paths[role]):
                return _fail(f"'{args.folder}' has no {FILES[role]}; give the output folder of a run")
        print(writeReport(args.folder))
        return 0
    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config", "resume", "dry_run")}
    try:
        config = loadConfig(args.config, overrides)
        runJob(config, resume=args.resume, dryRun=args.dry_run, log=lambda line: print(line, flush=True))
    except ConfigError as error:
        return _fail(error)
    except KeyboardInterrupt as error:
        return _fail(error if str(error) else "interrupted", 130)
    except RuntimeError as error:
        return _fail(error, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
