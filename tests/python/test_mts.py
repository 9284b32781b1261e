"""Native multiple-time-step integrators: MTSIntegrator (rRESPA) and MTSLangevinIntegrator (BAOAB-RESPA).

Checked against OpenMM's own integrators step by step (Reference platform, double precision), for
the temperature they keep, energy conservation with an ML correction on the outer step, constraints,
serialization and checkpoints, and bad input.
"""
import copy
import math

import numpy as np
import openmm
import openmm.app as app
import openmm.unit as unit
import pytest

import openmmhybrid
from openmmhybrid.utils import degreesOfFreedom
from conftest import amber
from precision import EPS64, SAFETY, bound

FS = unit.femtoseconds
KJ = unit.kilojoule_per_mole
REFERENCE = openmm.Platform.getPlatformByName("Reference")
CPU = openmm.Platform.getPlatformByName("CPU")


def split_groups(system):
    """Bonded terms in group 0, direct-space nonbonded in 1, reciprocal space in 2."""
    for force in system.getForces():
        if isinstance(force, openmm.NonbondedForce):
            force.setForceGroup(1)
            force.setReciprocalSpaceForceGroup(2)
        else:
            force.setForceGroup(0)
    return system


@pytest.fixture(scope="module")
def dipeptide():
    prm, crd, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd")
    return prm, crd, split_groups(system)


@pytest.fixture(scope="module")
def dipeptide_flexible():
    prm, crd, system = amber("alanine-dipeptide-water", "alanine-dipeptide.prmtop", "alanine-dipeptide.inpcrd",
                             constraints=None, rigidWater=False)
    return prm, crd, split_groups(system)


def make_context(system, crd, integrator, platform=REFERENCE, seed=1, properties=None):
    context = openmm.Context(system, integrator, platform, properties or {})
    context.setPeriodicBoxVectors(*crd.boxVectors)
    context.setPositions(crd.positions)
    context.setVelocitiesToTemperature(300 * unit.kelvin, seed)
    return context


def state(context, forces=False):
    s = context.getState(getPositions=True, getVelocities=True, getForces=forces)
    x = s.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
    v = s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    if forces:
        return x, v, s.getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    return x, v


def trajectory(context, integrator, steps):
    frames = []
    for _ in range(steps):
        integrator.step(1)
        frames.append(state(context))
    return frames


def masses(system):
    return np.array([system.getParticleMass(i).value_in_unit(unit.dalton) for i in range(system.getNumParticles())])


def cpu_divergence(system, crd, time):
    """How far apart two trajectories on the CPU platform from the same state can drift in `time`
    (ps): (positions in nm, velocities in nm/ps).  Its forces are float32 sums whose order changes
    with thread timing and neighbour lists, so each evaluation can differ from another by
    dF = bound(max |F|, float32, neighbours within the cutoff); a force difference dF moves an atom
    of mass m by at most dF/m t^2/2 and changes its velocity by dF/m t (the lightest atom, the
    difference taken to act the whole time; over a few steps the dynamics does not amplify it)."""
    context = make_context(system, crd, openmm.VerletIntegrator(0.001), CPU)
    f = context.getState(getForces=True).getForces(asNumpy=True).value_in_unit(KJ / unit.nanometer)
    volume = context.getState().getPeriodicBoxVolume().value_in_unit(unit.nanometer ** 3)
    cutoff = next(force for force in system.getForces() if isinstance(force, openmm.NonbondedForce)).getCutoffDistance()
    neighbours = system.getNumParticles() / volume * 4 / 3 * math.pi * cutoff.value_in_unit(unit.nanometer) ** 3
    acceleration = bound(np.abs(f).max(), np.float32, neighbours) / masses(system).min()
    return 0.5 * acceleration * time ** 2, acceleration * time


# --- Same trajectories as OpenMM's integrators -------------------------------------------------

@pytest.mark.parametrize("constrained", [False, True], ids=["flexible", "constrained"])
@pytest.mark.parametrize("kind", ["verlet", "langevin-friction0"])
def test_one_level_equals_verlet_integrator(kind, constrained, dipeptide, dipeptide_flexible):
    """One level is velocity Verlet: the positions are those of OpenMM's leapfrog VerletIntegrator
    started from v(-dt/2) = v(0) - dt/2 f(0)/m.  (Without the CMMotionRemover: it would remove
    the small net momentum of that leapfrog start, a real difference between the two.)"""
    _, crd, system = dipeptide if constrained else dipeptide_flexible
    system = copy.deepcopy(system)
    for i in reversed(range(system.getNumForces())):
        if isinstance(system.getForce(i), openmm.CMMotionRemover):
            system.removeForce(i)
    dt = 1 * FS
    groups = [(0, 1), (1, 1), (2, 1)]
    ours = (openmmhybrid.MTSIntegrator(dt, groups) if kind == "verlet"
            else openmmhybrid.MTSLangevinIntegrator(300, 0.0, dt, groups))
    ours.setConstraintTolerance(1e-10)
    verlet = openmm.VerletIntegrator(dt)
    verlet.setConstraintTolerance(1e-10)
    a = make_context(system, crd, ours)
    a.applyVelocityConstraints(1e-10)
    b = make_context(system, crd, verlet)
    x0, v0, f0 = state(a, forces=True)
    m = masses(system)[:, None]
    b.setVelocities(v0 - 0.5 * dt.value_in_unit(unit.picosecond) * f0 / m)
    steps = 15
    # Float64, two algorithms: each step's position update rounds at eps64 |x| in each, differently;
    # taken as a worst-case (linear) sum over the steps.
    tolerance = bound(steps * np.abs(x0).max(), np.float64)
    if constrained:
        # Plus the constraints: each integrator's solution is within ctol * d of every constraint
        # length d, so they can differ by that at each step (a random walk over the steps).
        longest = max(system.getConstraintParameters(i)[2].value_in_unit(unit.nanometer)
                      for i in range(system.getNumConstraints()))
        tolerance += SAFETY * math.sqrt(steps) * ours.getConstraintTolerance() * longest
    for (xa, _), (xb, _) in zip(trajectory(a, ours, steps), trajectory(b, verlet, steps)):
        assert np.abs(xa - xb).max() < tolerance
    # The time and step count advance as with OpenMM's integrators (15 float64 additions of dt).
    assert a.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(0.015, rel=0, abs=bound(0.015, np.float64, steps))
    assert a.getStepCount() == 15


GROUPS = {
    "2-levels": [(2, 1), (0, 4), (1, 4)],
    "3-levels": [(2, 1), (1, 2), (0, 4)],
}


@pytest.mark.parametrize("levels", GROUPS)
@pytest.mark.parametrize("kind", ["MTSIntegrator", "MTSLangevinIntegrator"])
def test_matches_openmm_step_by_step(kind, levels, dipeptide):
    """Friction 0, double precision: the same positions and velocities as openmm's Python
    integrators at every step, to rounding (alanine dipeptide in water, HBonds, rigid water, PME)."""
    _, crd, system = dipeptide
    groups = GROUPS[levels]
    dt = 4 * FS
    if kind == "MTSIntegrator":
        theirs, ours = openmm.MTSIntegrator(dt, groups), openmmhybrid.MTSIntegrator(dt, groups)
    else:
        theirs = openmm.MTSLangevinIntegrator(300 * unit.kelvin, 0 / unit.picosecond, dt, groups)
        ours = openmmhybrid.MTSLangevinIntegrator(300 * unit.kelvin, 0 / unit.picosecond, dt, groups)
    a = make_context(system, crd, ours)
    b = make_context(system, crd, theirs)
    substeps = max(n for _, n in groups)  # inner steps per step, of h = dt / substeps
    h = dt.value_in_unit(unit.picosecond) / substeps
    xmax = np.abs(np.array(crd.positions.value_in_unit(unit.nanometer))).max()
    for step, ((xa, va), (xb, vb)) in enumerate(zip(trajectory(a, ours, 6), trajectory(b, theirs, 6))):
        # Float64, CustomIntegrator against native code: each inner step rounds the positions at
        # eps64 |x| in each, differently; a worst-case (linear) sum over the inner steps so far (the
        # growth is still linear over 6 steps; past ~15 steps of 4 fs the dynamics amplifies it).
        xtol = bound((step + 1) * substeps * xmax, np.float64)
        # Velocities: the constraint correction (x_constrained - x) / h divides a position
        # difference by h (and omega dx < dx / h for every motion the inner step resolves).
        vtol = xtol / h
        assert np.abs(xa - xb).max() < xtol, f"positions differ at step {step + 1}"
        assert np.abs(va - vb).max() < vtol, f"velocities differ at step {step + 1}"
    assert np.abs(xa - np.array(crd.positions.value_in_unit(unit.nanometer))).max() > 1e-4  # and the atoms moved


def test_matches_openmm_on_cpu_platform(dipeptide):
    """The CPU platform (single-precision forces, threaded updates) follows OpenMM's MTS integrator
    on the same platform to float32 rounding."""
    _, crd, system = dipeptide
    groups = GROUPS["3-levels"]
    ours = openmmhybrid.MTSIntegrator(4 * FS, groups)
    theirs = openmm.MTSIntegrator(4 * FS, groups)
    a = make_context(system, crd, ours, CPU)
    b = make_context(system, crd, theirs, CPU)
    for step, ((xa, va), (xb, vb)) in enumerate(zip(trajectory(a, ours, 3), trajectory(b, theirs, 3))):
        # The integrators' own float64 rounding (~1e-14 nm) is far below the float32 force rounding.
        xtol, vtol = cpu_divergence(system, crd, (step + 1) * (4 * FS).value_in_unit(unit.picosecond))
        assert np.abs(xa - xb).max() < xtol
        assert np.abs(va - vb).max() < vtol


# --- Statistics, energy, constraints -----------------------------------------------------------

def block_mean_and_error(samples, blocks=10):
    """The mean and its standard error from the means of `blocks` contiguous blocks (so that the
    correlation between nearby samples is accounted for)."""
    samples = np.asarray(samples)
    n = len(samples) // blocks
    means = samples[: n * blocks].reshape(blocks, n).mean(axis=1)
    return means.mean(), means.std(ddof=1) / math.sqrt(blocks)


def test_langevin_temperature_matches_target(dipeptide):
    """Friction 5/ps, 2 fs outer step over 1 fs inner steps, CPU platform: the mean kinetic
    temperature equals the bath's within 4 standard errors (block averaging)."""
    _, crd, system = dipeptide
    target = 320.0
    integrator = openmmhybrid.MTSLangevinIntegrator(target * unit.kelvin, 5 / unit.picosecond, 2 * FS,
                                                    [(2, 1), (1, 2), (0, 2)])
    integrator.setRandomNumberSeed(2024)
    context = make_context(system, crd, integrator, CPU)
    integrator.step(250)  # equilibrate from 300 K
    dof = degreesOfFreedom(system)
    kB = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)
    temperatures = []
    for _ in range(250):
        integrator.step(5)
        ke = context.getState(getEnergy=True).getKineticEnergy().value_in_unit(KJ)
        temperatures.append(2 * ke / (dof * kB))
    mean, error = block_mean_and_error(temperatures)
    assert 0.05 < error < 3.0  # the estimate is meaningful
    # Statistical: a correct integrator misses by more than 4 standard errors 6e-5 of the time (the
    # CPU platform's thread timing makes each run a different sample).
    assert abs(mean - target) < 4 * error, f"<T> = {mean:.2f} +- {error:.2f} K, target {target} K"


def test_kinetic_energy_is_that_of_the_current_velocities(dipeptide):
    _, crd, system = dipeptide
    integrator = openmmhybrid.MTSIntegrator(2 * FS, [(2, 1), (1, 2), (0, 2)])
    context = make_context(system, crd, integrator)
    integrator.step(3)
    s = context.getState(getVelocities=True, getEnergy=True)
    v = s.getVelocities(asNumpy=True).value_in_unit(unit.nanometer / unit.picosecond)
    expected = 0.5 * np.sum(masses(system)[:, None] * v * v)
    # Float64, the kernel's sum against numpy's: 3N positive terms adding up to the kinetic energy.
    assert s.getKineticEnergy().value_in_unit(KJ) == pytest.approx(
        expected, rel=0, abs=bound(expected, np.float64, 3 * system.getNumParticles()))


def test_constraints_hold(dipeptide):
    """After MTS steps every constrained distance is within the tolerance, and no velocity has a
    component along a constraint."""
    _, crd, system = dipeptide
    integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 4 * FS, GROUPS["3-levels"])
    tolerance = 1e-6
    integrator.setConstraintTolerance(tolerance)
    context = make_context(system, crd, integrator, CPU)
    integrator.step(20)
    x, v = state(context)
    pairs = np.array([system.getConstraintParameters(i)[:2] for i in range(system.getNumConstraints())])
    lengths = np.array([system.getConstraintParameters(i)[2].value_in_unit(unit.nanometer)
                        for i in range(system.getNumConstraints())])
    assert len(pairs) > 600
    r = x[pairs[:, 0]] - x[pairs[:, 1]]
    distance = np.linalg.norm(r, axis=1)
    # CCMA stops only when every constraint is within tolerance * its length; SETTLE (the waters)
    # is exact but for rounding, which its square roots amplify to about sqrt(eps64).
    assert (np.abs(distance - lengths) / lengths).max() <= tolerance + SAFETY * math.sqrt(EPS64)
    m = masses(system)
    reduced = m[pairs[:, 0]] * m[pairs[:, 1]] / (m[pairs[:, 0]] + m[pairs[:, 1]])
    dv = v[pairs[:, 0]] - v[pairs[:, 1]]
    relative_velocity = np.abs(np.sum(dv * r, axis=1) / distance)
    # CCMA's velocity pass stops when |mu (v_ij . r_ij)| / d^2 <= tolerance for every constraint, i.e.
    # |v_ij . r_ij| / d <= tolerance d / mu (SETTLE does better); plus the float64 rounding of the dot product.
    limit = tolerance * distance / reduced + bound(1.0, np.float64, 3) * np.linalg.norm(dv, axis=1)
    assert (relative_velocity <= limit).all()  # limit ~ 1e-7 nm/ps, against thermal speeds of about 0.5 nm/ps


# --- ML correction on the outer step ----------------------------------------------------------

@pytest.fixture(scope="module")
def pxylene_mixed():
    prm, crd, system = amber("pxylene-water", "pxylene_water.prmtop", "pxylene_water.inpcrd")
    atoms = openmmhybrid.selectAtoms(prm.topology, residueName="TMP")
    mixed = openmmhybrid.createMixedSystem(prm.topology, system, atoms, "ani1x")
    return crd, mixed


def test_ml_force_is_evaluated_only_on_outer_steps(pxylene_mixed):
    """The model runs once per outer step (its forces at the end of a step are reused at the start
    of the next), and getState() calls in between do not disturb that."""
    crd, mixed = pxylene_mixed
    integrator = openmmhybrid.createMTSIntegrator(mixed, 2 * FS, 4, temperature=300 * unit.kelvin)
    assert isinstance(integrator, openmmhybrid.MTSLangevinIntegrator)
    ml = next(openmmhybrid.MLForce.cast(f) for f in mixed.getForces() if openmmhybrid.MLForce.isinstance(f))
    assert integrator.getGroups()[0] == (ml.getForceGroup(), 1)
    assert all(substeps == 4 for _, substeps in integrator.getGroups()[1:])
    context = make_context(mixed, crd, integrator, CPU)
    assert ml.getNumModelCalls(context) == 0
    integrator.step(10)
    assert ml.getNumModelCalls(context) == 11  # once at the start, then once per step
    context.getState(getEnergy=True)  # one more evaluation, outside the integrator
    integrator.step(5)
    assert ml.getNumModelCalls(context) == 17
    context.setPositions(context.getState(getPositions=True).getPositions())  # invalidates the kept forces
    integrator.step(1)
    assert ml.getNumModelCalls(context) == 19


def nve_total_energies(system, crd, integrator, samples, stepsPerSample):
    context = make_context(system, crd, integrator, CPU)
    context.applyConstraints(1e-6)
    context.applyVelocityConstraints(1e-6)
    totals = []
    for _ in range(samples):
        s = context.getState(getEnergy=True)
        totals.append((s.getPotentialEnergy() + s.getKineticEnergy()).value_in_unit(KJ))
        integrator.step(stepsPerSample)
    return np.array(totals) - totals[0], s.getKineticEnergy().value_in_unit(KJ)


def test_nve_energy_is_conserved_with_ml_on_the_outer_step(pxylene_mixed):
    """p-xylene (ANI-1x) in water (MM), NVE, the ML correction every 2 fs and MM every 0.5 fs:
    over 100 fs the total energy stays within 6 kJ/mol of its start (the kinetic energy is about
    4,000 kJ/mol), and fluctuates no more than with every force every 0.5 fs (one level)."""
    crd, mixed = pxylene_mixed
    mts = openmmhybrid.createMTSIntegrator(mixed, 2 * FS, 4)
    assert isinstance(mts, openmmhybrid.MTSIntegrator)
    groups = sorted({f.getForceGroup() for f in mixed.getForces()})
    single = openmmhybrid.MTSIntegrator(0.5 * FS, [(g, 1) for g in groups])
    for integrator in (mts, single):
        integrator.setConstraintTolerance(1e-6)
    deviation, kinetic = nve_total_energies(mixed, crd, mts, 26, 2)
    reference, _ = nve_total_energies(mixed, crd, single, 26, 8)
    assert kinetic > 3000
    assert np.abs(deviation).max() < 6.0, deviation
    assert deviation.std() < 1.25 * reference.std() + 0.2, (deviation.std(), reference.std())
    drift = np.polyfit(np.arange(len(deviation)), deviation, 1)[0] * len(deviation)
    assert abs(drift) < 3.0


def test_create_mts_integrator_errors(pxylene_mixed):
    crd, mixed = pxylene_mixed
    with pytest.raises(ValueError, match="innerSteps must be a positive integer"):
        openmmhybrid.createMTSIntegrator(mixed, 2 * FS, 0)
    with pytest.raises(ValueError, match="no MLForce"):
        openmmhybrid.createMTSIntegrator(openmm.System(), 2 * FS, 2)
    system = openmm.System()
    system.addParticle(1.0)
    force = openmm.CustomExternalForce("x^2")
    force.addParticle(0)
    force.setForceGroup(3)
    system.addForce(force)
    with pytest.raises(ValueError, match="nothing to put on the inner step"):
        openmmhybrid.createMTSIntegrator(system, 2 * FS, 2, correctionGroup=3)


# --- Many particles: threads and the noise stream ------------------------------------------------

def oscillators(n=6000):
    """n independent particles in two harmonic wells, one force per group (cheap, double precision
    on every platform, and above the size where the CPU kernel splits work across threads)."""
    rng = np.random.default_rng(5)
    system = openmm.System()
    stiff = openmm.CustomExternalForce("0.5*k*(x^2+y^2+z^2)")
    stiff.addPerParticleParameter("k")
    soft = openmm.CustomExternalForce("0.5*c*((x-0.1)^2+y^2+z^2)")
    soft.addPerParticleParameter("c")
    for i in range(n):
        system.addParticle(rng.uniform(1, 16))
        stiff.addParticle(i, [rng.uniform(500, 2000)])
        soft.addParticle(i, [rng.uniform(10, 50)])
    stiff.setForceGroup(0)
    soft.setForceGroup(1)
    system.addForce(stiff)
    system.addForce(soft)
    positions = rng.normal(0, 0.02, (n, 3))
    system.curvature = sum(3 * (stiff.getParticleParameters(i)[1][0] + soft.getParticleParameters(i)[1][0]) for i in range(n))
    return system, positions


def oscillator_context(system, positions, integrator, platform, properties=None):
    context = openmm.Context(system, integrator, platform, properties or {})
    context.setPositions(positions)
    context.setVelocitiesToTemperature(300, 3)
    return context


def test_noise_does_not_depend_on_platform_or_threads():
    """The same seed gives the same Langevin trajectory on Reference (one thread) and on CPU with
    two threads: the noise is indexed by particle and O step, not drawn in thread order."""
    system, positions = oscillators()
    results = []
    for platform, properties in ((REFERENCE, {}), (CPU, {"Threads": "2"}), (CPU, {"Threads": "1"})):
        integrator = openmmhybrid.MTSLangevinIntegrator(300, 10.0, 4 * FS, [(1, 1), (0, 4)])
        integrator.setRandomNumberSeed(77)
        context = oscillator_context(system, positions, integrator, platform, properties)
        integrator.step(10)
        results.append(state(context))
    # Exact: both platforms run the same kernel (ReferenceIntegrateMTSStepKernel) and the same float64
    # CustomExternalForce kernel (the CPU platform has none of its own) on the same inputs, and each
    # particle's update is the same whatever thread it falls to.
    for x, v in results[1:]:
        assert np.array_equal(x, results[0][0])
        assert np.array_equal(v, results[0][1])
    other = openmmhybrid.MTSLangevinIntegrator(300, 10.0, 4 * FS, [(1, 1), (0, 4)])
    other.setRandomNumberSeed(78)
    context = oscillator_context(system, positions, other, REFERENCE)
    other.step(10)
    assert not np.allclose(state(context)[0], results[0][0])


def test_equipartition_of_independent_oscillators():
    """6000 oscillators, stiff well inner, soft well outer: the kinetic temperature and the
    configurational one, <|grad U|^2> / (kB <laplacian U>), match the bath within 4 standard errors."""
    system, positions = oscillators()
    target = 250.0
    integrator = openmmhybrid.MTSLangevinIntegrator(target, 20.0, 2 * FS, [(1, 1), (0, 2)])
    integrator.setRandomNumberSeed(11)
    context = oscillator_context(system, positions, integrator, CPU)
    integrator.step(300)
    kB = unit.MOLAR_GAS_CONSTANT_R.value_in_unit(KJ / unit.kelvin)
    n = system.getNumParticles()
    kinetic, configurational = [], []
    for _ in range(200):
        integrator.step(5)
        x, v, f = state(context, forces=True)
        kinetic.append(np.sum(masses(system)[:, None] * v * v) / (3 * n * kB))
        configurational.append(np.sum(f * f) / (kB * system.curvature))
    for samples in (kinetic, configurational):
        mean, error = block_mean_and_error(samples)
        assert 0.01 < error < 2.0
        # Statistical: a correct integrator misses by more than 4 standard errors 6e-5 of the time.
        assert abs(mean - target) < 4 * error, (mean, error)


# --- Serialization, checkpoints, copies -----------------------------------------------------------

def test_xml_round_trip_reproduces_the_trajectory(dipeptide):
    _, crd, system = dipeptide
    integrator = openmmhybrid.MTSLangevinIntegrator(310 * unit.kelvin, 2 / unit.picosecond, 4 * FS, GROUPS["3-levels"])
    integrator.setRandomNumberSeed(123)
    integrator.setConstraintTolerance(1e-7)
    xml = openmm.XmlSerializer.serialize(integrator)
    assert 'type="HybridMTSLangevinIntegrator"' in xml
    restored = openmm.XmlSerializer.deserialize(xml)
    assert isinstance(restored, openmm.Integrator)
    typed = openmmhybrid.MTSLangevinIntegrator.cast(restored)
    assert typed.getGroups() == GROUPS["3-levels"]
    assert typed.getTemperature() == 310 * unit.kelvin
    assert typed.getFriction() == 2 / unit.picosecond
    assert typed.getRandomNumberSeed() == 123
    assert typed.getConstraintTolerance() == 1e-7
    assert typed.getStepSize() == 4 * FS
    a = make_context(system, crd, integrator)
    b = make_context(system, crd, restored)
    # Exact: the same settings (the XML keeps every bit) and the same code on Reference.
    for (xa, va), (xb, vb) in zip(trajectory(a, integrator, 3), trajectory(b, restored, 3)):
        assert np.array_equal(xa, xb) and np.array_equal(va, vb)
    plain = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(openmmhybrid.MTSIntegrator(1 * FS, [(0, 1)])))
    assert openmmhybrid.MTSIntegrator.cast(plain).getGroups() == [(0, 1)]
    with pytest.raises(TypeError, match="is not an openmmhybrid.MTSIntegrator"):
        openmmhybrid.MTSIntegrator.cast(restored)


def test_copy_and_pickle_give_independent_integrators():
    import pickle
    integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 2 * FS, [(1, 1), (0, 2)])
    for duplicate in (copy.deepcopy(integrator), pickle.loads(pickle.dumps(integrator))):
        assert isinstance(duplicate, openmmhybrid.MTSLangevinIntegrator)
        assert duplicate.getGroups() == [(1, 1), (0, 2)]
        duplicate.setTemperature(400)
        assert integrator.getTemperature() == 300 * unit.kelvin


@pytest.mark.parametrize("platform", [REFERENCE, CPU], ids=["Reference", "CPU"])
def test_checkpoint_reproduces_the_trajectory(platform, dipeptide):
    """Checkpoint, run, restore, run again: the same positions and velocities, also in a new Context
    (the noise stream position is in the checkpoint).  Bit for bit on Reference; on CPU to float32
    rounding, because the restored Context rebuilds its neighbour list at another step."""
    _, crd, system = dipeptide
    # CPU: its float32 forces over the 3 steps of 4 fs after the restore (cpu_divergence).
    xtol, vtol = cpu_divergence(system, crd, 3 * (4 * FS).value_in_unit(unit.picosecond))
    integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 4 * FS, GROUPS["2-levels"])
    integrator.setRandomNumberSeed(9)
    context = make_context(system, crd, integrator, platform)
    integrator.step(2)
    checkpoint = context.createCheckpoint()
    saved = context.getState(getPositions=True, getVelocities=True)
    integrator.step(3)
    first = state(context)
    context.loadCheckpoint(checkpoint)
    integrator.step(3)
    second = state(context)

    def same(a, b):
        if platform.getName() == "Reference":  # the same code on the same state: exact
            return np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        return np.abs(a[0] - b[0]).max() < xtol and np.abs(a[1] - b[1]).max() < vtol

    assert same(first, second)
    fresh_integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 4 * FS, GROUPS["2-levels"])
    fresh_integrator.setRandomNumberSeed(9)
    fresh = make_context(system, crd, fresh_integrator, platform)
    fresh.loadCheckpoint(checkpoint)
    fresh_integrator.step(3)
    third = state(fresh)
    assert same(first, third)
    # The checkpoint carries the seed too: an integrator made with another seed continues the
    # same trajectory from it, but not from a State (positions and velocities only).
    for restore, expected in ((lambda c: c.loadCheckpoint(checkpoint), True), (lambda c: c.setState(saved), False)):
        other_integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 4 * FS, GROUPS["2-levels"])
        other_integrator.setRandomNumberSeed(10)
        other = make_context(system, crd, other_integrator, platform)
        restore(other)
        other_integrator.step(3)
        assert same(first, state(other)) == expected
    assert fresh.getStepCount() == 5


def test_setters_take_effect():
    """setTemperature and setStepSize apply on the next step: a hotter bath heats the system."""
    system, positions = oscillators(500)
    integrator = openmmhybrid.MTSLangevinIntegrator(100, 50.0, 2 * FS, [(1, 1), (0, 2)])
    context = oscillator_context(system, positions, integrator, REFERENCE)
    integrator.step(200)
    cold = context.getState(getEnergy=True).getKineticEnergy()
    integrator.setTemperature(400 * unit.kelvin)
    integrator.setFriction(60 / unit.picosecond)
    assert integrator.getFriction() == 60 / unit.picosecond
    integrator.setStepSize(1 * FS)
    integrator.step(400)
    hot = context.getState(getEnergy=True).getKineticEnergy()
    assert 2.5 < hot / cold < 6  # 4 expected; one sample of 1500 degrees of freedom fluctuates by ~4%
    # 600 float64 additions of the step size.
    assert context.getState().getTime().value_in_unit(unit.picosecond) == pytest.approx(0.8, rel=0, abs=bound(0.8, np.float64, 600))


def test_virtual_sites_are_placed_after_every_step():
    """TIP4P-Ew water: the massless sites follow their molecules (placed after each inner step)."""
    forcefield = app.ForceField("tip4pew.xml")
    modeller = app.Modeller(app.Topology(), [])
    modeller.addSolvent(forcefield, model="tip4pew", boxSize=openmm.Vec3(1.6, 1.6, 1.6) * unit.nanometer)
    system = forcefield.createSystem(modeller.topology, nonbondedMethod=app.PME, nonbondedCutoff=0.7 * unit.nanometer,
                                     constraints=app.HBonds)
    split_groups(system)
    sites = [i for i in range(system.getNumParticles()) if system.isVirtualSite(i)]
    assert sites
    integrator = openmmhybrid.MTSLangevinIntegrator(300, 1.0, 2 * FS, [(2, 1), (1, 2), (0, 2)])
    context = openmm.Context(system, integrator, CPU)
    context.setPositions(modeller.positions)
    context.setVelocitiesToTemperature(300, 1)
    integrator.step(5)
    x = state(context)[0]
    context.computeVirtualSites()
    placed = state(context)[0]
    # Exact: the integrator places the sites with the same code (ReferenceVirtualSites) on the same positions.
    assert np.array_equal(x[sites], placed[sites])
    assert np.abs(x[sites] - np.array(modeller.positions.value_in_unit(unit.nanometer))[sites]).max() > 1e-4


# --- Bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("groups, message", [
    ([], "no force groups given"),
    ([(0, 1), (1, 3), (2, 4)], "3 does not divide 4"),
    ([(0, 2), (1, 3)], "2 does not divide 3"),
    ([(0, 1), (0, 2)], "force group 0 appears more than once"),
    ([(32, 1)], "force group 32 .* is outside 0-31"),
    ([(-1, 1)], "force group -1 .* is outside 0-31"),
    ([(0, 0)], "at least 1"),
])
@pytest.mark.parametrize("cls", ["MTSIntegrator", "MTSLangevinIntegrator"])
def test_bad_groups(cls, groups, message):
    make = (lambda g: openmmhybrid.MTSIntegrator(1 * FS, g)) if cls == "MTSIntegrator" else \
        (lambda g: openmmhybrid.MTSLangevinIntegrator(300, 1, 1 * FS, g))
    with pytest.raises(ValueError, match=message):
        make(groups)


def test_bad_values():
    with pytest.raises(ValueError, match="step size must be positive"):
        openmmhybrid.MTSIntegrator(0 * FS, [(0, 1)])
    with pytest.raises(ValueError, match="step size must be positive"):
        openmmhybrid.MTSLangevinIntegrator(300, 1, -1 * FS, [(0, 1)])
    integrator = openmmhybrid.MTSLangevinIntegrator(300, 1, 1 * FS, [(0, 1)])
    with pytest.raises(openmm.OpenMMException, match="step size must be positive"):
        integrator.setStepSize(0)
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        integrator.setTemperature(-5 * unit.kelvin)
    with pytest.raises(ValueError, match="friction must be >= 0"):
        openmmhybrid.MTSLangevinIntegrator(300, -1, 1 * FS, [(0, 1)])
    with pytest.raises(TypeError, match="pair of integers"):
        openmmhybrid.MTSIntegrator(1 * FS, [(0, 1.5)])
    with pytest.raises(TypeError, match="list of \\(force group, substeps\\) pairs"):
        openmmhybrid.MTSIntegrator(1 * FS, 3)
    with pytest.raises(openmm.OpenMMException, match="not bound to a Context"):
        openmmhybrid.MTSIntegrator(1 * FS, [(0, 1)]).step(1)


def test_one_integrator_per_context():
    system, positions = oscillators(10)
    integrator = openmmhybrid.MTSIntegrator(1 * FS, [(0, 1), (1, 2)])
    oscillator_context(system, positions, integrator, REFERENCE)
    with pytest.raises(openmm.OpenMMException, match="already bound to a Context"):
        openmm.Context(system, integrator, REFERENCE)
