#include "CudaMTSStepKernel.h"
#include "HybridCudaKernels.h"
#include "openmmhybrid/internal/MTSSchedule.h"
#include "openmm/OpenMMException.h"
#include "openmm/common/ContextSelector.h"
#include "openmm/cuda/CudaIntegrationUtilities.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/OSRngSeed.h"
#include "openmm/reference/SimTKOpenMMRealType.h"
#include <cuda_runtime_api.h>
#include <cmath>
#include <istream>
#include <ostream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

void CudaIntegrateMTSStepKernel::initialize(const System& system, const MultipleTimeStepIntegrator& integrator) {
    // Every integrator kernel of OpenMM's CUDA platform does this first: it finishes setting up the
    // CudaContext (energy and derivative buffers, masses in velm.w, molecule groups, pinned memory).
    cu.initializeContexts();
    ContextSelector selector(cu);
    int numParticles = system.getNumParticles();
    levelForces.clear();
    for (int k = 0; k < (int) integrator.getLevels().size(); k++)
        levelForces.push_back(make_unique<CudaArray>(cu, 3 * (size_t) max(numParticles, 1), (int) sizeof(double), "mtsLevelForces"));
    hasConstraints = system.getNumConstraints() > 0;
    if (hasConstraints)
        unconstrained.initialize(cu, 3 * (size_t) cu.getPaddedNumAtoms(), sizeof(double), "mtsUnconstrained");
    int requested = integrator.getThermostat().randomSeed;
    seed = (uint32_t) (requested != 0 ? requested : osrngseed());
    noiseIndex = 0;
}

void CudaIntegrateMTSStepKernel::computeLevelForces(ContextImpl& context, int level, int groupMask) {
    context.calcForcesAndEnergy(true, false, groupMask);
    ContextSelector selector(cu);
    cudakernels::saveLevelForces(reinterpret_cast<const long long*>(cu.getForce().getDevicePointer()), cu.getPaddedNumAtoms(),
                                 reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), cu.getNumAtoms(),
                                 reinterpret_cast<double*>(levelForces[level]->getDevicePointer()), cu.getCurrentStream());
    checkLaunch("saving a level's forces");
}

void CudaIntegrateMTSStepKernel::kick(const vector<double>& coefficients) {
    bool doubleVelm = cu.getUseDoublePrecision() || cu.getUseMixedPrecision();
    cudakernels::KickTerms terms;
    auto flush = [&]() {
        cudakernels::kick(reinterpret_cast<void*>(cu.getVelm().getDevicePointer()), doubleVelm,
                          reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), cu.getNumAtoms(), terms,
                          cu.getCurrentStream());
        terms.count = 0;
    };
    // At most 8 levels per kernel launch; more levels take more launches.
    for (int k = 0; k < (int) coefficients.size(); k++)
        if (coefficients[k] != 0.0) {
            if (terms.count == 8)
                flush();
            terms.forces[terms.count] = reinterpret_cast<const double*>(levelForces[k]->getDevicePointer());
            terms.coefficient[terms.count] = coefficients[k];
            terms.count++;
        }
    if (terms.count > 0)
        flush();
    checkLaunch("a kick");
}

void CudaIntegrateMTSStepKernel::innerStep(double dt, const MTSThermostat& thermostat, double tolerance) {
    CudaIntegrationUtilities& integration = cu.getIntegrationUtilities();
    bool doubleVelm = cu.getUseDoublePrecision() || cu.getUseMixedPrecision();
    cudakernels::InnerStepParams params;
    params.dt = dt;
    params.thermostat = thermostat.enabled;
    params.a = exp(-thermostat.friction * dt);
    params.b = sqrt(1.0 - params.a * params.a);
    params.kT = BOLTZ * thermostat.temperature;
    params.seed = seed;
    params.noiseIndex = thermostat.enabled ? noiseIndex++ : 0;
    double* saved = hasConstraints ? reinterpret_cast<double*>(unconstrained.getDevicePointer()) : nullptr;
    void* posDelta = reinterpret_cast<void*>(integration.getPosDelta().getDevicePointer());
    cudakernels::innerStepDisplace(reinterpret_cast<void*>(cu.getVelm().getDevicePointer()), doubleVelm, posDelta,
                                   reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), cu.getNumAtoms(), params, saved,
                                   cu.getCurrentStream());
    if (hasConstraints)
        integration.applyConstraints(tolerance);
    float4* correction = cu.getUseMixedPrecision() ? reinterpret_cast<float4*>(cu.getPosqCorrection().getDevicePointer()) : nullptr;
    cudakernels::innerStepMove(reinterpret_cast<void*>(cu.getPosq().getDevicePointer()), correction, cu.getUseDoublePrecision(),
                               reinterpret_cast<void*>(cu.getVelm().getDevicePointer()), doubleVelm, posDelta, cu.getNumAtoms(), dt, saved,
                               cu.getCurrentStream());
    if (hasConstraints)
        integration.applyVelocityConstraints(tolerance);
    integration.computeVirtualSites();
    checkLaunch("an inner step");
}

void CudaIntegrateMTSStepKernel::checkLaunch(const char* what) {
    string failure = cudakernels::launchFailure();
    if (!failure.empty())
        throw OpenMMException(string("MTS integrator (CUDA): launching ") + what + " failed: " + failure);
}

void CudaIntegrateMTSStepKernel::execute(ContextImpl& context, const MultipleTimeStepIntegrator& integrator, bool forcesValid) {
    double tolerance = integrator.getConstraintTolerance();
    MTSThermostat thermostat = integrator.getThermostat();
    // The same schedule as the Reference kernel; OpenMM's context is selected around each kernel
    // launch, and released while OpenMM computes forces (it selects its own).
    takeMTSStep(integrator, forcesValid, [&](int k, int groups) { computeLevelForces(context, k, groups); },
                [&](const vector<double>& coefficients) {
                    ContextSelector selector(cu);
                    kick(coefficients);
                },
                [&](double h) {
                    ContextSelector selector(cu);
                    innerStep(h, thermostat, tolerance);
                });
    ContextSelector selector(cu);
    if (hasConstraints)
        cu.getIntegrationUtilities().applyVelocityConstraints(tolerance);
    cu.setTime(cu.getTime() + integrator.getStepSize());
    cu.setStepCount(cu.getStepCount() + 1);
    // Level forces are stored per particle, so reordering here cannot invalidate them.
    cu.reorderAtoms();
}

double CudaIntegrateMTSStepKernel::computeKineticEnergy(ContextImpl& context, const MultipleTimeStepIntegrator& integrator) {
    ContextSelector selector(cu);
    return cu.getIntegrationUtilities().computeKineticEnergy(0.0);
}

void CudaIntegrateMTSStepKernel::createCheckpoint(ContextImpl& context, ostream& stream) const {
    writeMTSCheckpoint(stream, seed, noiseIndex);
}

void CudaIntegrateMTSStepKernel::loadCheckpoint(ContextImpl& context, istream& stream) {
    readMTSCheckpoint(stream, seed, noiseIndex);
}
