#define PLATFORM_NAME "CUDA"
#include "TestMLForce.h"

/* A CUDA graph captures the whole evaluation (gather, model, scatter): past the warm-up it gives
 * the energy and forces of the eager evaluation. */
static void testCUDAGraphs() {
    const int n = 8;
    const vector<int> atoms = {1, 6, 3, 0, 5};
    vector<Vec3> pos = randomPositions(n, 1.0, 21);
    double energy[2];
    vector<Vec3> forces[2];
    for (int graphs = 0; graphs < 2; graphs++) {
        System system;
        for (int i = 0; i < n; i++)
            system.addParticle(1.0);
        MLForce* force = new MLForce(model("pairs"), atoms);
        force->setProperty("useCUDAGraphs", graphs ? "true" : "false");
        system.addForce(force);
        VerletIntegrator integrator(0.001);
        Context context(system, integrator, platform());
        context.setPositions(pos);
        State state = context.getState(State::Energy | State::Forces);
        for (int i = 0; i < 5; i++)  // past CUDAGraphWarmupSteps (3), so the captured graph runs
            state = context.getState(State::Energy | State::Forces);
        energy[graphs] = state.getPotentialEnergy();
        forces[graphs] = state.getForces();
    }
    vector<Vec3> expectedForces(n);
    double expected = pairEnergy(pos, atoms, K, R0, &expectedForces);
    // float32 model: both within its rounding of the closed form (10 pairs, a few operations each),
    // and of each other.
    double tolerance = relativeTo(roundingBound(expected, EPS32, 100), expected);
    ASSERT_EQUAL_TOL(expected, energy[0], tolerance);
    ASSERT_EQUAL_TOL(energy[0], energy[1], tolerance);
    double forceTolerance = roundingBound(largestComponent(expectedForces), EPS32, 100);
    for (int i = 0; i < n; i++)
        ASSERT_EQUAL_VEC(forces[0][i], forces[1][i], forceTolerance);
}

void runPlatformTests() {
    testCUDAGraphs();
}
