/* Tests of MTSIntegrator and MTSLangevinIntegrator, written once and compiled for each platform
 * (PLATFORM_NAME).  The reference is rRESPA written out here by hand with analytic forces. */

#include "openmmhybrid/MTSIntegrator.h"
#include "openmmhybrid/internal/Philox.h"
#include "openmm/Context.h"
#include "openmm/CustomExternalForce.h"
#include "openmm/HarmonicBondForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/State.h"
#include "openmm/System.h"
#include "openmm/internal/AssertionUtilities.h"
#include "TestUtilities.h"
#include "openmm/serialization/XmlSerializer.h"
#include <cmath>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace OpenMM;
using namespace OpenMMHybrid;
using namespace std;

static Platform& platform() {
    return Platform::getPlatformByName(PLATFORM_NAME);
}

/** Known-answer vectors of Philox4x32-10 from Random123 (kat_vectors). */
static void testPhilox() {
    using namespace philox;
    Counter zero = {{0, 0, 0, 0}};
    Counter r = philox4x32(zero, 0, 0);
    uint32_t expected0[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    for (int i = 0; i < 4; i++)
        ASSERT_EQUAL(expected0[i], r.v[i]);
    Counter ones = {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}};
    r = philox4x32(ones, 0xffffffffu, 0xffffffffu);
    uint32_t expected1[4] = {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu};
    for (int i = 0; i < 4; i++)
        ASSERT_EQUAL(expected1[i], r.v[i]);
    Counter pi = {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    r = philox4x32(pi, 0xa4093822u, 0x299f31d0u);
    uint32_t expected2[4] = {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
    for (int i = 0; i < 4; i++)
        ASSERT_EQUAL(expected2[i], r.v[i]);
    // The normals: mean 0, variance 1.
    double sum = 0, sumSq = 0;
    int n = 0;
    for (uint32_t p = 0; p < 100000; p++) {
        double g[3];
        gaussian3(12345, 7, p, g);
        for (double x : g) {
            sum += x;
            sumSq += x * x;
            n++;
        }
    }
    // Statistical, at 4 standard errors (the mean's is 1/sqrt(n), the variance's sqrt(2/n)); the seed
    // is fixed, so the outcome is too.
    ASSERT(fabs(sum / n) < 4.0 / sqrt(n));
    ASSERT(fabs(sumSq / n - 1.0) < 4.0 * sqrt(2.0 / n));
}

/*
 * Three particles: a harmonic bond 0-1 (group 0, stiff) and a harmonic well on every particle
 * (group 1, soft).  Forces written out here, for the hand-made rRESPA.
 */
static const double KB = 40000.0, B0 = 0.1, KW = 300.0;
static const double MASS[3] = {2.0, 5.0, 12.0};

static System* makeSystem() {
    System* system = new System();
    for (double m : MASS)
        system->addParticle(m);
    HarmonicBondForce* bond = new HarmonicBondForce();
    bond->addBond(0, 1, B0, KB);
    bond->setForceGroup(0);
    system->addForce(bond);
    CustomExternalForce* well = new CustomExternalForce("0.5*kw*(x^2+y^2+z^2)");
    well->addGlobalParameter("kw", KW);
    for (int i = 0; i < 3; i++)
        well->addParticle(i, {});
    well->setForceGroup(1);
    system->addForce(well);
    return system;
}

static vector<Vec3> groupForces(int group, const vector<Vec3>& x) {
    vector<Vec3> f(3);
    if (group == 0) {
        Vec3 d = x[1] - x[0];
        double r = sqrt(d.dot(d));
        Vec3 g = d * (KB * (r - B0) / r);
        f[0] = g;
        f[1] = -g;
    }
    else
        for (int i = 0; i < 3; i++)
            f[i] = -x[i] * KW;
    return f;
}

/** rRESPA by the book: outer group 1 (once), inner group 0 (n times).  Keeps the largest
 * coordinate and velocity component met in xmax and vmax. */
static void handRespa(vector<Vec3>& x, vector<Vec3>& v, double dt, int n, int steps, double& xmax, double& vmax) {
    xmax = largestComponent(x);
    vmax = largestComponent(v);
    for (int s = 0; s < steps; s++) {
        vector<Vec3> f1 = groupForces(1, x);
        for (int i = 0; i < 3; i++)
            v[i] += f1[i] * (0.5 * dt / MASS[i]);
        double h = dt / n;
        for (int j = 0; j < n; j++) {
            vector<Vec3> f0 = groupForces(0, x);
            for (int i = 0; i < 3; i++)
                v[i] += f0[i] * (0.5 * h / MASS[i]);
            for (int i = 0; i < 3; i++)
                x[i] += v[i] * h;
            f0 = groupForces(0, x);
            for (int i = 0; i < 3; i++)
                v[i] += f0[i] * (0.5 * h / MASS[i]);
            xmax = max(xmax, largestComponent(x));
            vmax = max(vmax, largestComponent(v));
        }
        f1 = groupForces(1, x);
        for (int i = 0; i < 3; i++)
            v[i] += f1[i] * (0.5 * dt / MASS[i]);
    }
}

static void testMatchesHandWrittenRespa() {
    unique_ptr<System> system(makeSystem());
    vector<Vec3> x = {Vec3(0.01, 0.02, -0.03), Vec3(0.1, 0.03, 0.01), Vec3(-0.05, 0.1, 0.02)};
    vector<Vec3> v = {Vec3(0.3, -0.2, 0.1), Vec3(-0.1, 0.4, 0.0), Vec3(0.05, 0.0, -0.2)};
    double dt = 0.004;
    int n = 8;
    MTSIntegrator integrator(dt, {{1, 1}, {0, n}});
    Context context(*system, integrator, platform());
    context.setPositions(x);
    context.setVelocities(v);
    const int steps = 25;
    integrator.step(steps);
    double xmax, vmax;
    handRespa(x, v, dt, n, steps, xmax, vmax);
    State state = context.getState(State::Positions | State::Velocities | State::Energy);
    // Float64 on both sides (CPU computes CustomExternalForce and HarmonicBondForce in double as
    // well), the same algorithm with the operations in another order: each inner step rounds the
    // positions at eps64 (|x| + |v| h) in each, differently, summed linearly over the inner steps
    // (the system is harmonic and stable, omega h = 0.08 for the bond: nothing amplifies it).  A
    // position difference dx changes the velocities by at most dx / h (omega h < 1), and their own
    // three kicks an inner step round at eps64 |v|.
    double h = dt / n;
    int inner = steps * n;
    double xTol = roundingBound(inner * (xmax + vmax * h), EPS64);
    double vTol = xTol / h + roundingBound(3 * inner * vmax, EPS64);
    for (int i = 0; i < 3; i++) {
        ASSERT_EQUAL_VEC(x[i], state.getPositions()[i], relativeTo(xTol, sqrt(x[i].dot(x[i]))));
        ASSERT_EQUAL_VEC(v[i], state.getVelocities()[i], relativeTo(vTol, sqrt(v[i].dot(v[i]))));
    }
    ASSERT_EQUAL_TOL(steps * dt, state.getTime(), roundingBound(steps * dt, EPS64, steps));  // 25 additions of dt
    double ke = 0, momentum = 0;
    for (int i = 0; i < 3; i++) {
        ke += 0.5 * MASS[i] * v[i].dot(v[i]);
        momentum += MASS[i] * sqrt(v[i].dot(v[i]));
    }
    // dKE = sum m v . dv, plus the sums' own rounding.
    ASSERT_EQUAL_TOL(ke, state.getKineticEnergy(), relativeTo(sqrt(3.0) * momentum * vTol + roundingBound(ke, EPS64, 9), ke));
}

static void testSerialization() {
    MTSLangevinIntegrator integrator(310.0, 2.5, 0.003, {{3, 1}, {0, 2}, {1, 6}});
    integrator.setRandomNumberSeed(42);
    integrator.setConstraintTolerance(1e-7);
    stringstream buffer;
    XmlSerializer::serialize<Integrator>(&integrator, "Integrator", buffer);
    unique_ptr<Integrator> copy(XmlSerializer::deserialize<Integrator>(buffer));
    MTSLangevinIntegrator* restored = dynamic_cast<MTSLangevinIntegrator*>(copy.get());
    ASSERT(restored != nullptr);
    // Exact: the XML keeps every digit.
    ASSERT_EQUAL(310.0, restored->getTemperature());
    ASSERT_EQUAL(2.5, restored->getFriction());
    ASSERT_EQUAL(0.003, restored->getStepSize());
    ASSERT_EQUAL(1e-7, restored->getConstraintTolerance());
    ASSERT_EQUAL(42, restored->getRandomNumberSeed());
    ASSERT(restored->getGroups() == integrator.getGroups());
    ASSERT_EQUAL(3, (int) restored->getLevels().size());
    ASSERT_EQUAL(6, restored->getLevels().back().substeps);

    MTSIntegrator plain(0.002, {{0, 1}, {1, 1}});
    stringstream buffer2;
    XmlSerializer::serialize<Integrator>(&plain, "Integrator", buffer2);
    unique_ptr<Integrator> copy2(XmlSerializer::deserialize<Integrator>(buffer2));
    MTSIntegrator* restored2 = dynamic_cast<MTSIntegrator*>(copy2.get());
    ASSERT(restored2 != nullptr);
    ASSERT_EQUAL(1, (int) restored2->getLevels().size());  // equal substeps form one level
    ASSERT_EQUAL(3, restored2->getLevels()[0].groupMask);
}

static void testBadInput() {
    assertThrows([] { MTSIntegrator(0.001, {}); }, "no force groups");
    assertThrows([] { MTSIntegrator(0.001, {{0, 2}, {1, 3}}); }, "2 does not divide 3");
    assertThrows([] { MTSIntegrator(0.001, {{5, 1}, {5, 2}}); }, "appears more than once");
    assertThrows([] { MTSIntegrator(0.001, {{32, 1}}); }, "outside 0-31");
    assertThrows([] { MTSIntegrator(0.0, {{0, 1}}); }, "step size must be positive");
    assertThrows([] { MTSLangevinIntegrator(-1.0, 1.0, 0.001, {{0, 1}}); }, "temperature must be >= 0");
    assertThrows([] { MTSLangevinIntegrator(300.0, -1.0, 0.001, {{0, 1}}); }, "friction must be >= 0");
    MTSIntegrator unbound(0.001, {{0, 1}});
    assertThrows([&] { unbound.step(1); }, "not bound to a Context");
}

/** Tests only this platform has (defined in the platform's Test<Platform>*.cpp). */
void runPlatformTests();

int main() {
    return runTests(PLATFORM_NAME, [] {
        testPhilox();
        testMatchesHandWrittenRespa();
        testSerialization();
        testBadInput();
        runPlatformTests();
    });
}
