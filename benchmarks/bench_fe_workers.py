"""Tasks per hour of ``openmm-hybrid fe`` with 1 and 2 Dask workers.

Runs the shipped p-xylene hydration calculation (examples/configs/fe_pxylene_hydration.toml) with
its quick protocol, by MBAR (6 windows of 1,200 steps: long tasks) and by NEQ (4 end-state
samplings and 64 switches of 20 steps: short tasks, where the per-task costs show), once in this
process (``--workers 1``: every core for one task) and once on a local Dask cluster of 2 worker
processes (``--workers 2``: one thread each).  Each run starts in a fresh output folder, so the
wall time counts the set-up (building the legs, minimizing, starting the cluster and each worker
building its legs again) as a user sees it; the task phase is timed apart (from the first task
submitted to the last finished, as the command's progress lines give it, so it includes each
worker's first build of its legs).  Prints a markdown table: wall time, task phase, tasks, tasks
per hour of the task phase, and the ratio to 1 worker.

Usage::

    python benchmarks/bench_fe_workers.py [--workers 1,2] [--methods mbar,neq]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import common

CONFIG = os.path.join(common.ROOT, "examples", "configs", "fe_pxylene_hydration.toml")


def run(method, workers, folder):
    out = os.path.join(folder, f"{method}-{workers}")
    command = [sys.executable, "-m", "openmmhybrid", "fe", CONFIG, "--quick", "--method", method,
               "--workers", str(workers), "--output", out]
    start = time.perf_counter()
    log = subprocess.run(command, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    wall = time.perf_counter() - start
    with open(os.path.join(out, "result.json")) as f:
        result = json.load(f)
    return wall, _taskPhase(log), result["tasks"]["done"], result["ddG"]


def _taskPhase(log):
    """Seconds of the task phases: the 'elapsed' of the last progress line of each phase, summed."""
    total, last = 0.0, None
    for line in log.splitlines():
        match = re.search(r"done; (?:(\d+) min )?(\d+) s elapsed", line)
        if match:
            seconds = 60 * int(match.group(1) or 0) + int(match.group(2))
            if last is not None and seconds < last:  # a new phase (NEQ: switches after end states)
                total += last
            last = seconds
    return total + (last or 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--methods", default="mbar,neq")
    args = parser.parse_args()
    print(common.machine_header())
    print()
    print("| method | workers | wall (s) | task phase (s) | tasks | tasks/hour (task phase) | vs 1 worker | ddG (kJ/mol) |")
    print("|---|---|---|---|---|---|---|---|")
    folder = tempfile.mkdtemp(prefix="bench-fe-")
    try:
        for method in args.methods.split(","):
            first = None
            for workers in [int(w) for w in args.workers.split(",")]:
                wall, phase, tasks, ddG = run(method, workers, folder)
                rate = tasks / phase * 3600
                first = first or rate
                print(f"| {method} | {workers} | {wall:.1f} | {phase:.0f} | {tasks} | {rate:.0f} | {rate / first:.2f}x | "
                      f"{ddG['value']:.2f} ± {ddG['stderr']:.2f} |", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
