"""The free-energy engine on a system whose answer is analytic: harmonic oscillators
(openmmhybrid.freeenergy.analytic), sampled by Langevin dynamics on the Reference platform.

MBAR over windows and BAR on nonequilibrium switches go through the same Leg and the same code;
each must land within 4 of its standard errors of the exact value.  The tasks' durable results:
resuming reruns nothing finished, and two Dask workers give what one process gives.
"""
import math
import os

import numpy as np
import openmm
import openmm.unit as unit
import pytest

from openmmhybrid.freeenergy import (Leg, barEstimate, checkSchedule, decorrelatedIndices, jarzynskiEstimate,
                                     mbarEstimate, sampleEndState, sampleWindow, switch)
from openmmhybrid.freeenergy.analytic import HARMONIC, harmonicExact, harmonicLeg, harmonicTask
from openmmhybrid.freeenergy.tasks import ResultStore, Task, runTasks

K0, K1 = HARMONIC["k0"], HARMONIC["k1"]  # kJ/mol/nm^2
EXACT = harmonicExact()  # kT: (3 * 4 / 2) ln 2 = 4.159


def oscillators(linear=True):
    return harmonicLeg(linear=linear)


@pytest.mark.parametrize("linear", [True, False], ids=["linear", "by-state"])
def test_mbar_windows_give_the_analytic_answer(linear):
    leg = oscillators(linear)
    lambdas = [0.0, 0.25, 0.5, 0.75, 1.0]
    blocks, counts = [], []
    for window in range(len(lambdas)):
        result = sampleWindow(leg, window, lambdas, equilibrationSteps=500, samples=400, interval=25,
                              seed=101 + window)
        keep = decorrelatedIndices(result["dudl"])
        blocks.append(result["u_kn"][:, keep])
        counts.append(len(keep))
    estimate = mbarEstimate(np.concatenate(blocks, axis=1), counts)
    assert estimate.stderr < 0.15
    assert abs(estimate.value - EXACT) < 4 * estimate.stderr, (estimate.value, estimate.stderr, EXACT)
    overlap = np.array(estimate.details["overlap"])
    assert overlap.shape == (5, 5) and np.allclose(overlap.sum(axis=1), 1.0)
    assert all(overlap[i, i + 1] > 0.03 for i in range(4))


def test_nonequilibrium_switching_gives_the_analytic_answer():
    leg = oscillators()
    forward = [switch(leg, s, True, 50, seed=300 + i)
               for i, s in enumerate(sampleEndState(leg, 0.0, 500, 150, 40, seed=7))]
    reverse = [switch(leg, s, False, 50, seed=700 + i)
               for i, s in enumerate(sampleEndState(leg, 1.0, 500, 150, 40, seed=8))]
    estimate = barEstimate(forward, reverse)
    assert estimate.stderr < 0.15
    assert abs(estimate.value - EXACT) < 4 * estimate.stderr, (estimate.value, estimate.stderr, EXACT)
    # second law: the mean forward work is at least dF, the mean reverse work at least -dF
    assert np.mean(forward) >= EXACT - 4 * np.std(forward) / math.sqrt(len(forward))
    assert -np.mean(reverse) <= EXACT + 4 * np.std(reverse) / math.sqrt(len(reverse))
    one_sided = jarzynskiEstimate(forward)
    assert abs(one_sided.value - EXACT) < 4 * one_sided.stderr + 0.1


def test_instantaneous_switch_is_the_energy_difference():
    """One step: lambda jumps at fixed coordinates, so the work is U1(x) - U0(x) exactly."""
    leg = oscillators()
    snapshot = sampleEndState(leg, 0.0, 10, 1, 1, seed=3)[0]
    r2 = np.sum(np.asarray(snapshot.getPositions().value_in_unit(unit.nanometer)) ** 2)
    kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert switch(leg, snapshot, True, 1) == pytest.approx(0.5 * (K1 - K0) * r2 / kT, rel=1e-9)


@pytest.mark.parametrize("schedule", [[0.1, 1.0], [0.0, 0.9], [0.0, 0.5, 0.5, 1.0], [0.0]])
def test_bad_schedules(schedule):
    with pytest.raises(ValueError, match="must rise from 0 to 1"):
        checkSchedule(schedule)


def test_switch_needs_a_step():
    leg = oscillators()
    snapshot = sampleEndState(leg, 0.0, 1, 1, 1, seed=3)[0]
    with pytest.raises(ValueError, match="at least one step"):
        switch(leg, snapshot, True, 0)


WINDOWS = [Task("oscillators", "window", i, 101 + i) for i in range(5)]


def test_resume_runs_only_what_is_missing(tmp_path):
    store = ResultStore(tmp_path, "settings-1")
    first = runTasks(WINDOWS[:2], harmonicTask, store, log=lambda line: None)  # a run killed after 2 tasks
    assert first == [t.name for t in WINDOWS[:2]]
    stamps = {t.name: os.stat(store.path(t)).st_mtime_ns for t in WINDOWS[:2]}
    rest = runTasks(WINDOWS, harmonicTask, store, log=lambda line: None)
    assert rest == [t.name for t in WINDOWS[2:]]
    assert {t.name: os.stat(store.path(t)).st_mtime_ns for t in WINDOWS[:2]} == stamps
    assert runTasks(WINDOWS, harmonicTask, store, log=lambda line: None) == []  # finished: no work
    assert store.progress(WINDOWS) == (5, 5)
    # the same tasks in one uninterrupted run give the same numbers
    fresh = ResultStore(tmp_path / "fresh", "settings-1")
    runTasks(WINDOWS, harmonicTask, fresh, log=lambda line: None)
    for t in WINDOWS:
        assert np.array_equal(store.load(t)["u_kn"], fresh.load(t)["u_kn"])
    # other settings: nothing is done
    assert ResultStore(tmp_path, "settings-2").progress(WINDOWS) == (0, 5)
    estimate = mbarEstimate(np.concatenate([store.load(t)["u_kn"] for t in WINDOWS], axis=1), [400] * 5)
    assert abs(estimate.value - EXACT) < 0.6


def test_a_damaged_result_is_run_again(tmp_path):
    store = ResultStore(tmp_path, "k")
    runTasks(WINDOWS[:1], harmonicTask, store, log=lambda line: None)
    with open(store.path(WINDOWS[0]), "wb") as f:
        f.write(b"not an npz")
    assert not store.done(WINDOWS[0])
    assert runTasks(WINDOWS[:1], harmonicTask, store, log=lambda line: None) == [WINDOWS[0].name]


def test_two_dask_workers_give_what_one_process_gives(tmp_path):
    pytest.importorskip("distributed")
    tasks = WINDOWS[:2] + [Task("oscillators", "forward", i, 900 + 2 * i) for i in range(2)]
    serial, parallel = ResultStore(tmp_path / "one", "k"), ResultStore(tmp_path / "two", "k")
    runTasks(tasks, harmonicTask, serial, log=lambda line: None)
    lines = []
    ran = runTasks(tasks, harmonicTask, parallel, workers=2, log=lines.append)
    assert sorted(ran) == sorted(t.name for t in tasks) and len(lines) == len(tasks)
    for t in tasks:
        a, b = serial.load(t), parallel.load(t)
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), (t.name, name)


def test_protocols_through_tasks_agree_with_the_analytic_answer(tmp_path):
    """MBAR windows and NEQ switches as tasks in one store: both estimates within 4 standard
    errors of the exact answer, and of each other within their combined error; the MBAR
    convergence curves end at the full estimate."""
    import functools
    from openmmhybrid.freeenergy.protocols import MBARProtocol, NEQProtocol, runProtocolTask
    store = ResultStore(tmp_path, "k")
    mbar = MBARProtocol(lambdas=(0.0, 0.25, 0.5, 0.75, 1.0), equilibrationSteps=500, samples=400, interval=25)
    neq = NEQProtocol(switches=100, switchSteps=50, equilibrationSteps=500, interval=40)
    leg = functools.partial(harmonicLeg)
    windows = mbar.tasks("oscillators-mbar", 11)
    runTasks(windows, functools.partial(runProtocolTask, mbar, leg, store.folder, store.key), store,
             log=lambda line: None)
    ends, switches = neq.endTasks("oscillators-neq", 21), neq.switchTasks("oscillators-neq", 21)
    run = functools.partial(runProtocolTask, neq, leg, store.folder, store.key)
    runTasks(ends, run, store, log=lambda line: None)
    partial = neq.analyze(store, ends + switches)
    assert partial["done"] == 2 and partial["estimate"] is None
    runTasks(switches, run, store, log=lambda line: None)
    a = mbar.analyze(store, windows)["estimate"]
    b = neq.analyze(store, ends + switches)["estimate"]
    for e in (a, b):
        assert e.stderr < 0.2 and abs(e.value - EXACT) < 4 * e.stderr, (e.method, e.value, e.stderr)
    assert abs(a.value - b.value) < 4 * math.hypot(a.stderr, b.stderr)
    convergence = a.details["convergence"]
    assert convergence["forward"][-1][0] == pytest.approx(a.value) == convergence["reverse"][-1][0]


@pytest.mark.parametrize("make, message", [
    (lambda P: P.MBARProtocol(lambdas=(0.0, 0.5, 0.9)), "must rise from 0 to 1"),
    (lambda P: P.MBARProtocol(lambdas=(0.1, 1.0)), "must rise from 0 to 1"),
    (lambda P: P.NEQProtocol(switchSteps=0), "at least one step"),
    (lambda P: P.NEQProtocol(switches=1), "at least 2 switches"),
])
def test_bad_protocols(make, message):
    from openmmhybrid.freeenergy import protocols
    with pytest.raises(ValueError, match=message):
        make(protocols)


def test_a_mixed_system_is_a_leg(pxylene):
    """createMixedSystem(..., interpolate=True) plugs into the engine as it is: an instantaneous
    switch's work is the ML-MM energy difference that interpolationEnergies gives (the same
    linear formula, so to rounding), and a short window's reduced potentials are finite."""
    from openmmhybrid import createMixedSystem, interpolationEnergies
    prmtop, inpcrd, system = pxylene
    atoms = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    mixed = createMixedSystem(prmtop.topology, system, atoms, "ani1x", interpolate=True)
    leg = Leg(system=mixed, positions=inpcrd.positions, box=inpcrd.boxVectors, temperature=300 * unit.kelvin,
              platform="CPU")
    snapshot = sampleEndState(leg, 0.0, 5, 1, 1, seed=4)[0]
    context, _ = leg.context(0.0, 4)
    context.setState(snapshot)
    e0, e1 = interpolationEnergies(context, [0.0, 1.0]).value_in_unit(unit.kilojoule_per_mole)
    kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    assert switch(leg, snapshot, True, 1) == pytest.approx((e1 - e0) / kT, rel=1e-9)
    window = sampleWindow(leg, 0, [0.0, 1.0], 2, 3, 2, seed=5)
    assert window["u_kn"].shape == (2, 3) and np.isfinite(window["u_kn"]).all()


def test_mixed_leg_puts_the_correction_on_the_outer_step(pxylene):
    """mixedLeg: the correction in a free group on the outer MTS step; an MTS window runs, and its
    state-0 reduced potential is the MM energy over kT (lambda = 0 is MM)."""
    from openmmhybrid.freeenergy import mixedLeg
    from openmmhybrid.mlforce import MLForce
    prmtop, inpcrd, system = pxylene
    atoms = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    leg = mixedLeg(prmtop.topology, system, inpcrd.positions, atoms, box=inpcrd.boxVectors,
                   temperature=300 * unit.kelvin, timestep=4 * unit.femtosecond, innerSteps=2, platform="CPU")
    (group,) = leg.outerGroups
    assert group not in {f.getForceGroup() for f in system.getForces()}
    assert [f.getForceGroup() for f in leg.system.getForces() if MLForce.isinstance(f)] == [group]
    context, integrator = leg.context(0.0, 9)
    assert type(integrator).__name__ == "MTSLangevinIntegrator"
    mm = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("CPU"))
    mm.setPeriodicBoxVectors(*inpcrd.boxVectors)
    mm.setPositions(inpcrd.positions)
    kT = (unit.MOLAR_GAS_CONSTANT_R * 300 * unit.kelvin).value_in_unit(unit.kilojoule_per_mole)
    u0 = leg.energies(context, [0.0])[0] / kT
    e_mm = mm.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole) / kT
    # two code paths (the region's MM terms subtracted, then added back by another force) on the
    # CPU platform's float32 kernels: the float32 rounding bound of the total (7.6e-6 kJ/mol measured)
    from precision import bound
    assert u0 == pytest.approx(e_mm, abs=bound(abs(e_mm), np.float32, 1))
    window = sampleWindow(leg, 0, [0.0, 1.0], 2, 2, 2, seed=3)
    assert np.isfinite(window["u_kn"]).all()


def _dies_once(marker, task):
    """A task whose first attempt kills its worker process (as an out-of-memory kill would)."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return harmonicTask(task)


def test_a_killed_workers_task_is_run_again(tmp_path):
    """The worker running a task dies mid-task: the scheduler reruns the task on a worker that is
    alive, and its result is what a process that did not die computes."""
    pytest.importorskip("distributed")
    import functools
    task = WINDOWS[0]
    store, reference = ResultStore(tmp_path / "killed", "k"), ResultStore(tmp_path / "reference", "k")
    ran = runTasks([task], functools.partial(_dies_once, str(tmp_path / "died")), store, workers=2,
                   log=lambda line: None)
    assert ran == [task.name] and os.path.exists(tmp_path / "died")
    runTasks([task], harmonicTask, reference, log=lambda line: None)
    assert np.array_equal(store.load(task)["u_kn"], reference.load(task)["u_kn"])


def test_one_sided_switching_is_jarzynski(tmp_path):
    """NEQProtocol(oneSided=True): one end state (lambda = 0), forward switches only, and the
    Jarzynski estimate, within 4 standard errors (+ 0.1 kT for its bias) of the exact answer."""
    import functools
    from openmmhybrid.freeenergy.protocols import NEQProtocol, runProtocolTask
    store = ResultStore(tmp_path, "k")
    neq = NEQProtocol(switches=120, switchSteps=50, equilibrationSteps=500, interval=40, oneSided=True)
    ends, switches = neq.endTasks("oscillators", 31), neq.switchTasks("oscillators", 31)
    assert [t.index for t in ends] == [0] and {t.kind for t in switches} == {"forward"} and len(switches) == 120
    run = functools.partial(runProtocolTask, neq, functools.partial(harmonicLeg), store.folder, store.key)
    runTasks(ends + switches, run, store, log=lambda line: None)
    analysis = neq.analyze(store, ends + switches)
    estimate = analysis["estimate"]
    assert analysis["done"] == analysis["total"] == 121
    assert estimate.method == "jarzynski" and estimate.details["reverseWorks"] == []
    assert estimate.stderr < 0.3 and abs(estimate.value - EXACT) < 4 * estimate.stderr + 0.1, estimate
    # the offset moves the estimate by exactly -offset
    shifted = neq.analyze(store, ends + switches, offset=2.5)["estimate"]
    assert shifted.value == pytest.approx(estimate.value - 2.5, abs=1e-9)


def test_a_switch_needs_only_the_corrections_slope(pxylene):
    """switch() on a mixed leg takes dE/dlambda from the correction's force groups alone
    (lambdaGroups): on Reference (deterministic) a 10-step switch in vacuum gives the work of the
    whole System's energies to rounding (1e-9 relative)."""
    import dataclasses
    from openmmhybrid.freeenergy import extractMolecule, mixedLeg
    prmtop, inpcrd, system = pxylene
    atoms = [a.index for a in prmtop.topology.atoms() if a.residue.name == "TMP"]
    topology, vacuum, positions = extractMolecule(prmtop.topology, system, inpcrd.positions, atoms)
    leg = mixedLeg(topology, vacuum, positions, list(range(18)), temperature=300 * unit.kelvin, platform="Reference")
    assert leg.lambdaGroups == leg.outerGroups and len(leg.lambdaGroups) == 1
    whole = dataclasses.replace(leg, lambdaGroups=None)
    snapshot = sampleEndState(leg, 0.0, 20, 1, 1, seed=5)[0]
    a, b = switch(leg, snapshot, True, 10, seed=6), switch(whole, snapshot, True, 10, seed=6)
    assert a == pytest.approx(b, rel=1e-9) and a != 0.0
