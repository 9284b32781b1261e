/* Tests of MLForce, written once and compiled for each platform (PLATFORM_NAME).
 *
 * The models (written by tests/python/models.py) have closed forms that are recomputed here in plain C++:
 * E = K * sum_{i<j} (r_ij - R0)^2 over the ML region, with K = 100 kJ/mol/nm^2, R0 = 0.15 nm. */

#include "openmmhybrid/MLForce.h"
#include "openmm/Context.h"
#include "openmm/HarmonicBondForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/State.h"
#include "openmm/System.h"
#include "openmm/VerletIntegrator.h"
#include "openmm/internal/AssertionUtilities.h"
#include "TestUtilities.h"
#include "openmm/serialization/XmlSerializer.h"
#include <cmath>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace OpenMM;
using namespace OpenMMHybrid;
using namespace std;

static const double K = 100.0, R0 = 0.15;

static string model(const string& name) {
    return string(MODEL_DIR) + "/" + name + ".pt";
}

static Platform& platform() {
    return Platform::getPlatformByName(PLATFORM_NAME);
}

/** The closed-form pair energy of the region; adds its forces into forces (if given). */
static double pairEnergy(const vector<Vec3>& pos, const vector<int>& atoms, double k, double r0, vector<Vec3>* forces = nullptr) {
    double energy = 0;
    for (int a = 0; a < (int) atoms.size(); a++)
        for (int b = a + 1; b < (int) atoms.size(); b++) {
            Vec3 d = pos[atoms[a]] - pos[atoms[b]];
            double r = sqrt(d.dot(d));
            energy += k * (r - r0) * (r - r0);
            if (forces != nullptr) {
                Vec3 f = d * (-2 * k * (r - r0) / r);
                (*forces)[atoms[a]] += f;
                (*forces)[atoms[b]] -= f;
            }
        }
    return energy;
}

/**
 * Bounds for a pair-energy model against the closed form.  The arithmetic (about 10 rounding steps
 * a pair: differences, squares, sum, sqrt, -r0, square, *k) scales with the energies k(r-r0)^2,
 * the force terms 2k|r-r0| and dE/dr0's 2k|r-r0| (roundingBound); the rounding of r (2 eps r) and
 * of the two atoms' coordinates (2 eps xmax, xmax the largest coordinate the model sees) moves them
 * by at most eps times the sensitivities 2k|r-r0| (2r + 2 xmax) for the energy, the Hessian
 * 2k max(1, |r-r0|/r) times (2r + 2 xmax) for a force (summed over every pair: more than any one
 * atom's), and 2k (2r + 2 xmax) for dE/dr0 (first order, worst case).  thirdDerivative bounds the
 * third derivative of E along a unit direction, 12 sqrt(2) k (1 + |r-r0|/r) / r a pair, for
 * finite differences.
 */
struct PairScales {
    double energy = 0, energySensitivity = 0, force = 0, forceSensitivity = 0, r0Derivative = 0, r0Sensitivity = 0;
    double thirdDerivative = 0;
    int terms = 0;
    double energyBound(double eps) const {
        return roundingBound(energy, eps, terms) + eps * energySensitivity;
    }
    double forceBound(double eps) const {
        return roundingBound(force, eps, terms) + eps * forceSensitivity;
    }
    double r0Bound(double eps) const {
        return roundingBound(r0Derivative, eps, terms) + eps * r0Sensitivity;
    }
};

static PairScales pairScales(const vector<Vec3>& pos, const vector<int>& atoms, double k, double r0, double xmax) {
    PairScales s;
    for (int a = 0; a < (int) atoms.size(); a++)
        for (int b = a + 1; b < (int) atoms.size(); b++) {
            Vec3 d = pos[atoms[a]] - pos[atoms[b]];
            double r = sqrt(d.dot(d)), u = fabs(r - r0), reach = 2 * r + 2 * xmax;
            s.energy += k * u * u;
            s.energySensitivity += 2 * k * u * reach;
            s.force += 2 * k * u;
            s.forceSensitivity += 2 * k * max(1.0, u / r) * reach;
            s.r0Derivative += 2 * k * u;
            s.r0Sensitivity += 2 * k * reach;
            s.thirdDerivative += 12 * sqrt(2.0) * k * (1 + u / r) / r;
            s.terms += 10;
        }
    return s;
}

static vector<Vec3> randomPositions(int n, double scale, unsigned seed) {
    mt19937 rng(seed);
    uniform_real_distribution<double> u(0.0, scale);
    vector<Vec3> pos(n);
    for (auto& p : pos)
        p = Vec3(u(rng), u(rng), u(rng));
    return pos;
}

static System* makeSystem(int n) {
    System* system = new System();
    for (int i = 0; i < n; i++)
        system->addParticle(1.0);
    return system;
}

/** Energy and forces of the system at pos, in a new Context on the platform under test. */
static State evaluate(const System& system, const vector<Vec3>& pos) {
    VerletIntegrator integrator(0.001);
    Context context(system, integrator, platform());
    context.setPositions(pos);
    return context.getState(State::Energy | State::Forces);
}

static void testEnergyAndForces(bool useDouble) {
    const int n = 8;
    vector<int> atoms = {5, 1, 3, 6};
    unique_ptr<System> system(makeSystem(n));
    MLForce* force = new MLForce(model("pairs"), atoms);
    force->setUsesDoublePrecision(useDouble);
    system->addForce(force);
    vector<Vec3> pos = randomPositions(n, 1.0, 1);
    State state = evaluate(*system, pos);
    vector<Vec3> expectedForces(n);
    double expected = pairEnergy(pos, atoms, K, R0, &expectedForces);
    // The model in float32 or float64 (its inputs rounded to that too) against the closed form in double.
    double eps = useDouble ? EPS64 : EPS32;
    PairScales scales = pairScales(pos, atoms, K, R0, largestComponent(pos));
    ASSERT_EQUAL_TOL(expected, state.getPotentialEnergy(), relativeTo(scales.energyBound(eps), expected));
    for (int i = 0; i < n; i++)
        ASSERT_EQUAL_VEC(expectedForces[i], state.getForces()[i],
                         relativeTo(scales.forceBound(eps), sqrt(expectedForces[i].dot(expectedForces[i]))));

    // Forces against central finite differences of the energy along a random direction.
    if (useDouble) {
        const double h = 1e-5;
        vector<Vec3> dir = randomPositions(n, 1.0, 2), plus = pos, minus = pos;
        double norm = 0, projected = 0;
        for (int i = 0; i < n; i++)
            norm += dir[i].dot(dir[i]);
        for (int i = 0; i < n; i++) {
            dir[i] *= 1.0 / sqrt(norm);
            plus[i] += dir[i] * h;
            minus[i] -= dir[i] * h;
            projected += state.getForces()[i].dot(dir[i]);
        }
        double ePlus = evaluate(*system, plus).getPotentialEnergy();
        double eMinus = evaluate(*system, minus).getPotentialEnergy();
        // Central difference: truncation h^2/6 |E'''| plus the two energies' float64 rounding over 2h.
        double error = h * h / 6 * scales.thirdDerivative + scales.energyBound(EPS64) / h;
        ASSERT_EQUAL_TOL(-projected, (ePlus - eMinus) / (2 * h), relativeTo(error, projected));
    }
}

static void testPeriodicRegionSplitAcrossBox() {
    const int n = 4;
    vector<int> atoms = {0, 1, 2, 3};
    Vec3 a(2.0, 0, 0), b(0.5, 2.0, 0), c(0.3, -0.4, 2.0);  // triclinic, OpenMM's reduced form
    unique_ptr<System> system(makeSystem(n));
    system->setDefaultPeriodicBoxVectors(a, b, c);
    MLForce* force = new MLForce(model("pairs_periodic"), atoms);
    force->setUsesPeriodicBoundaryConditions(true);
    force->setUsesDoublePrecision(true);
    system->addForce(force);
    ASSERT(system->usesPeriodicBoundaryConditions());
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, platform());
    // A whole molecule near the corner of the box, then the same with atoms shifted by lattice vectors.
    vector<Vec3> whole = {Vec3(1.95, 1.98, 1.97), Vec3(2.08, 1.99, 1.96), Vec3(1.97, 2.09, 2.05), Vec3(2.05, 2.07, 2.10)};
    double expected = pairEnergy(whole, atoms, K, R0) + 10.0 * (a[0] + b[1] + c[2]);
    // Float64 model against the closed form; making the region whole shifts coordinates by up to
    // |a| + |b| + 2|c| and back, so they round at that size; plus the box term (60 kJ/mol).
    double reach = largestComponent(whole) + sqrt(a.dot(a)) + sqrt(b.dot(b)) + 2 * sqrt(c.dot(c));
    PairScales scales = pairScales(whole, atoms, K, R0, reach);
    double energyTol = relativeTo(scales.energyBound(EPS64) + roundingBound(60.0, EPS64, 3), expected);
    context.setPositions(whole);
    State ref = context.getState(State::Energy | State::Forces);
    ASSERT_EQUAL_TOL(expected, ref.getPotentialEnergy(), energyTol);
    vector<Vec3> split = whole;
    split[1] -= a;
    split[2] -= b + c;
    split[3] += a - b - c * 2;
    context.setPositions(split);
    State state = context.getState(State::Energy | State::Forces);
    ASSERT_EQUAL_TOL(expected, state.getPotentialEnergy(), energyTol);
    // The same model on positions that differ by the rounding of the re-imaging.
    for (int i = 0; i < n; i++)
        ASSERT_EQUAL_VEC(ref.getForces()[i], state.getForces()[i],
                         relativeTo(scales.forceBound(EPS64), sqrt(ref.getForces()[i].dot(ref.getForces()[i]))));
}

static void testGlobalParametersAndDerivatives() {
    const int n = 5;
    vector<int> atoms = {0, 2, 4};
    unique_ptr<System> system(makeSystem(n));
    MLForce* force = new MLForce(model("pairs_parameters"), atoms);
    force->setUsesDoublePrecision(true);
    force->addGlobalParameter("k", 50.0);
    force->addGlobalParameter("r0", 0.2);
    force->addEnergyParameterDerivative("k");
    force->addEnergyParameterDerivative("r0");
    system->addForce(force);
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, platform());
    vector<Vec3> pos = randomPositions(n, 0.8, 3);
    context.setPositions(pos);
    // Float64 model against the closed form (pairScales).
    double xmax = largestComponent(pos);
    PairScales first = pairScales(pos, atoms, 50.0, 0.2, xmax), second = pairScales(pos, atoms, 70.0, 0.1, xmax);
    double expected = pairEnergy(pos, atoms, 50.0, 0.2);
    ASSERT_EQUAL_TOL(expected, context.getState(State::Energy).getPotentialEnergy(),
                     relativeTo(first.energyBound(EPS64), expected));
    context.setParameter("k", 70.0);
    context.setParameter("r0", 0.1);
    State state = context.getState(State::Energy | State::Forces | State::ParameterDerivatives);
    expected = pairEnergy(pos, atoms, 70.0, 0.1);
    ASSERT_EQUAL_TOL(expected, state.getPotentialEnergy(), relativeTo(second.energyBound(EPS64), expected));
    double sumSq = 0, sum = 0;
    for (int x = 0; x < 3; x++)
        for (int y = x + 1; y < 3; y++) {
            Vec3 d = pos[atoms[x]] - pos[atoms[y]];
            double r = sqrt(d.dot(d));
            sumSq += (r - 0.1) * (r - 0.1);
            sum += r - 0.1;
        }
    map<string, double> derivs = state.getEnergyParameterDerivatives();
    // dE/dk is the energy at k = 1; dE/dr0 (autograd) against its closed form.
    PairScales unit = pairScales(pos, atoms, 1.0, 0.1, xmax);
    ASSERT_EQUAL_TOL(sumSq, derivs["k"], relativeTo(unit.energyBound(EPS64), sumSq));
    ASSERT_EQUAL_TOL(-2 * 70.0 * sum, derivs["r0"], relativeTo(second.r0Bound(EPS64), 2 * 70.0 * sum));
    // And against a finite difference in r0: E is quadratic in r0, so only the two energies'
    // float64 rounding over 2h is left.
    const double h = 1e-6;
    context.setParameter("r0", 0.1 + h);
    double ePlus = context.getState(State::Energy).getPotentialEnergy();
    context.setParameter("r0", 0.1 - h);
    double eMinus = context.getState(State::Energy).getPotentialEnergy();
    ASSERT_EQUAL_TOL(derivs["r0"], (ePlus - eMinus) / (2 * h),
                     relativeTo(second.energyBound(EPS64) / h, derivs["r0"]));
}

static void testOutputsForces() {
    const int n = 4;
    vector<int> atoms = {3, 0, 1};
    unique_ptr<System> system(makeSystem(n));
    MLForce* force = new MLForce(model("constant_forces"), atoms);
    force->setOutputsForces(true);
    force->setUsesDoublePrecision(true);
    system->addForce(force);
    vector<Vec3> pos = randomPositions(n, 1.0, 4);
    State state = evaluate(*system, pos);
    PairScales scales = pairScales(pos, atoms, K, R0, largestComponent(pos));
    double expected = pairEnergy(pos, atoms, K, R0);
    ASSERT_EQUAL_TOL(expected, state.getPotentialEnergy(), relativeTo(scales.energyBound(EPS64), expected));
    // Exact: the model's forces are small integers, which the kernel only copies into a zeroed array.
    for (int i = 0; i < 3; i++)
        ASSERT_EQUAL_VEC(Vec3(i, 2 * i, 3 * i), state.getForces()[atoms[i]], 0);
    ASSERT_EQUAL_VEC(Vec3(0, 0, 0), state.getForces()[2], 0);
}

static void testForceGroupsAndMM() {
    // The ML force in group 1 beside an ordinary bond in group 0.
    const int n = 3;
    unique_ptr<System> system(makeSystem(n));
    HarmonicBondForce* bond = new HarmonicBondForce();
    bond->addBond(0, 2, 0.1, 1000.0);
    system->addForce(bond);
    MLForce* force = new MLForce(model("pairs"), {0, 1});
    force->setForceGroup(1);
    force->setUsesDoublePrecision(true);
    system->addForce(force);
    VerletIntegrator integrator(0.001);
    Context context(*system, integrator, platform());
    vector<Vec3> pos = {Vec3(0, 0, 0), Vec3(0.3, 0, 0), Vec3(0, 0.2, 0)};
    context.setPositions(pos);
    double ml = K * (0.3 - R0) * (0.3 - R0), mm = 0.5 * 1000.0 * 0.1 * 0.1;
    // Float64 on both sides: the pair model's scales, and the bond's the same way (k = 500, r0 = 0.1).
    PairScales mlScales = pairScales(pos, {0, 1}, K, R0, 0.3), mmScales = pairScales(pos, {0, 2}, 500.0, 0.1, 0.3);
    double mlTol = mlScales.energyBound(EPS64), mmTol = mmScales.energyBound(EPS64);
    ASSERT_EQUAL_TOL(ml, context.getState(State::Energy, false, 1 << 1).getPotentialEnergy(), relativeTo(mlTol, ml));
    ASSERT_EQUAL_TOL(mm, context.getState(State::Energy, false, 1 << 0).getPotentialEnergy(), relativeTo(mmTol, mm));
    ASSERT_EQUAL_TOL(ml + mm, context.getState(State::Energy).getPotentialEnergy(),
                     relativeTo(mlTol + mmTol + roundingBound(ml + mm, EPS64), ml + mm));
}

static void testSerialization() {
    const int n = 6;
    vector<int> atoms = {4, 0, 2};
    System system;
    for (int i = 0; i < n; i++)
        system.addParticle(1.0);
    MLForce* force = new MLForce(model("pairs_parameters"), atoms);
    force->setUsesDoublePrecision(true);
    force->setForceGroup(3);
    force->setName("ligand");
    force->addGlobalParameter("k", 30.0);
    force->addGlobalParameter("r0", 0.12);
    force->addEnergyParameterDerivative("r0");
    force->setProperty("useCUDAGraphs", "true");
    system.addForce(force);
    stringstream buffer;
    XmlSerializer::serialize<System>(&system, "System", buffer);
    unique_ptr<System> copy(XmlSerializer::deserialize<System>(buffer));
    const MLForce& restored = dynamic_cast<const MLForce&>(copy->getForce(0));
    ASSERT_EQUAL_CONTAINERS(atoms, restored.getAtoms());
    ASSERT(restored.getModelData() == force->getModelData());
    ASSERT_EQUAL(3, restored.getForceGroup());
    ASSERT_EQUAL(string("ligand"), restored.getName());
    ASSERT(restored.getUsesDoublePrecision());
    ASSERT_EQUAL(2, restored.getNumGlobalParameters());
    ASSERT_EQUAL(string("r0"), restored.getGlobalParameterName(1));
    ASSERT_EQUAL_TOL(0.12, restored.getGlobalParameterDefaultValue(1), 0);  // exact: the XML keeps every digit
    ASSERT_EQUAL(string("r0"), restored.getEnergyParameterDerivativeName(0));
    ASSERT_EQUAL(string("true"), restored.getProperties().at("useCUDAGraphs"));
    vector<Vec3> pos = randomPositions(n, 1.0, 5);
    VerletIntegrator i1(0.001), i2(0.001);
    Context c1(system, i1, platform()), c2(*copy, i2, platform());
    c1.setPositions(pos);
    c2.setPositions(pos);
    // Exact: the round trip keeps the model's bytes and every setting, and the same code runs on the same positions.
    ASSERT_EQUAL_TOL(c1.getState(State::Energy).getPotentialEnergy(), c2.getState(State::Energy).getPotentialEnergy(), 0);
}

static void testBadInput() {
    assertThrows([] { MLForce f(model("pairs"), {}); }, "empty");
    assertThrows([] { MLForce f(model("pairs"), {0, 1, 0}); }, "more than once");
    assertThrows([] { MLForce f(model("pairs"), {0, -1}); }, "negative");
    assertThrows([] { MLForce f(model("does_not_exist"), {0}); }, "cannot open");
    assertThrows([] { MLForce f(model("corrupt"), {0}); }, "could not load");
    assertThrows([] { MLForce f(model("pairs"), {0}); f.setProperty("noSuchProperty", "1"); }, "unknown property");
    assertThrows([] { MLForce f(model("pairs"), {0}); f.addEnergyParameterDerivative("x"); }, "not a global parameter");
    auto contextFor = [](MLForce* force, int n) {
        System system;
        for (int i = 0; i < n; i++)
            system.addParticle(1.0);
        system.addForce(force);
        VerletIntegrator integrator(0.001);
        Context context(system, integrator, platform());
        context.setPositions(randomPositions(n, 1.0, 6));
        context.getState(State::Energy | State::Forces);
    };
    assertThrows([&] { contextFor(new MLForce(model("pairs"), {0, 3}), 3); }, "out of range");
    assertThrows([&] { contextFor(new MLForce(model("three_inputs"), {0, 1}), 3); }, "takes 3 arguments");
    auto periodic = [](MLForce* f) { f->setUsesPeriodicBoundaryConditions(true); return f; };
    auto outputsForces = [](MLForce* f) { f->setOutputsForces(true); return f; };
    assertThrows([&] { contextFor(periodic(new MLForce(model("pairs"), {0, 1})), 3); }, "takes 1 argument");
    assertThrows([&] { contextFor(new MLForce(model("per_atom_energy"), {0, 1}), 3); }, "single floating point energy");
    assertThrows([&] { contextFor(new MLForce(model("integer_energy"), {0, 1}), 3); }, "single floating point energy");
    assertThrows([&] { contextFor(new MLForce(model("nan_energy"), {0, 1}), 3); }, "non-finite energy");
    assertThrows([&] { contextFor(outputsForces(new MLForce(model("pairs"), {0, 1})), 3); }, "must return a tuple");
    assertThrows([&] { contextFor(new MLForce(model("constant_forces"), {0, 1}), 3); }, "setOutputsForces(True)");
}

/** Tests only this platform has (defined in the platform's Test<Platform>*.cpp). */
void runPlatformTests();

int main() {
    return runTests(PLATFORM_NAME, [] {
        testEnergyAndForces(true);
        testEnergyAndForces(false);
        testPeriodicRegionSplitAcrossBox();
        testGlobalParametersAndDerivatives();
        testOutputsForces();
        testForceGroupsAndMM();
        testSerialization();
        testBadInput();
        runPlatformTests();
    });
}
