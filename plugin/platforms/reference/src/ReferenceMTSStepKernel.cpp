#include "ReferenceMTSStepKernel.h"
#include "ParallelFor.h"
#include "openmmhybrid/internal/MTSSchedule.h"
#include "openmmhybrid/internal/Philox.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/OSRngSeed.h"
#include "openmm/internal/ThreadPool.h"
#include "openmm/reference/ReferenceConstraints.h"
#include "openmm/reference/ReferencePlatform.h"
#include "openmm/reference/ReferenceVirtualSites.h"
#include "openmm/reference/SimTKOpenMMRealType.h"
#include <cmath>
#include <istream>
#include <ostream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

namespace {

ReferencePlatform::PlatformData& platformData(ContextImpl& context) {
    return *reinterpret_cast<ReferencePlatform::PlatformData*>(context.getPlatformData());
}

} // namespace

void ReferenceIntegrateMTSStepKernel::initialize(const System& system, const MultipleTimeStepIntegrator& integrator) {
    int numParticles = system.getNumParticles();
    masses.resize(numParticles);
    inverseMasses.resize(numParticles);
    for (int i = 0; i < numParticles; i++) {
        masses[i] = system.getParticleMass(i);
        inverseMasses[i] = (masses[i] == 0.0 ? 0.0 : 1.0 / masses[i]);
        hasVirtualSites |= system.isVirtualSite(i);
    }
    hasConstraints = system.getNumConstraints() > 0;
    levelForces.assign(integrator.getLevels().size(), vector<Vec3>(numParticles));
    oldPositions.resize(numParticles);
    unconstrained.resize(numParticles);
    int requested = integrator.getThermostat().randomSeed;
    seed = (uint32_t) (requested != 0 ? requested : osrngseed());
    noiseIndex = 0;
}

void ReferenceIntegrateMTSStepKernel::computeLevelForces(ContextImpl& context, int level, int groupMask) {
    context.calcForcesAndEnergy(true, false, groupMask);
    levelForces[level] = *platformData(context).forces;
}

void ReferenceIntegrateMTSStepKernel::kick(ContextImpl& context, const vector<double>& coefficients) {
    vector<Vec3>& v = *platformData(context).velocities;
    int active[32], numActive = 0;  // at most one level per force group
    for (int k = 0; k < (int) coefficients.size(); k++)
        if (coefficients[k] != 0.0)
            active[numActive++] = k;
    parallelFor(platformData(context).threads, (int) v.size(), [&](int start, int end, int) {
        for (int i = start; i < end; i++) {
            if (inverseMasses[i] == 0.0)
                continue;
            Vec3 dv;
            for (int a = 0; a < numActive; a++)
                dv += levelForces[active[a]][i] * coefficients[active[a]];
            v[i] += dv * inverseMasses[i];
        }
    });
}

void ReferenceIntegrateMTSStepKernel::innerStep(ContextImpl& context, double dt, const MTSThermostat& thermostat, double tolerance) {
    ReferencePlatform::PlatformData& data = platformData(context);
    vector<Vec3>& x = *data.positions;
    vector<Vec3>& v = *data.velocities;
    int n = (int) x.size();
    if (hasConstraints)
        oldPositions = x;
    if (!thermostat.enabled) {
        parallelFor(data.threads, n, [&](int start, int end, int) {
            for (int i = start; i < end; i++)
                if (masses[i] != 0.0)
                    x[i] += v[i] * dt;
        });
    }
    else {
        // x += v dt/2; v = a v + b sqrt(kT/m) R; x += v dt/2
        double a = exp(-thermostat.friction * dt), b = sqrt(1.0 - a * a), kT = BOLTZ * thermostat.temperature;
        uint64_t index = noiseIndex++;
        uint64_t key = seed;
        parallelFor(data.threads, n, [&](int start, int end, int) {
            double noise[3];
            for (int i = start; i < end; i++) {
                if (masses[i] == 0.0)
                    continue;
                x[i] += v[i] * (0.5 * dt);
                philox::gaussian3(key, index, (uint32_t) i, noise);
                double scale = b * sqrt(kT * inverseMasses[i]);
                v[i] = v[i] * a + Vec3(noise[0], noise[1], noise[2]) * scale;
                x[i] += v[i] * (0.5 * dt);
            }
        });
    }
    if (hasConstraints) {
        // Constrain the positions and add the constraint displacement to the velocities, then
        // remove the velocity components along the constraints (as openmm.MTSIntegrator does).
        unconstrained = x;
        data.constraints->apply(oldPositions, x, inverseMasses, tolerance);
        double invDt = 1.0 / dt;
        parallelFor(data.threads, n, [&](int start, int end, int) {
            for (int i = start; i < end; i++)
                if (masses[i] != 0.0)
                    v[i] += (x[i] - unconstrained[i]) * invDt;
        });
        data.constraints->applyToVelocities(x, v, inverseMasses, tolerance);
    }
    if (hasVirtualSites)
        data.virtualSites->computePositions(context.getSystem(), x, data.periodicBoxVectors);
}

void ReferenceIntegrateMTSStepKernel::execute(ContextImpl& context, const MultipleTimeStepIntegrator& integrator, bool forcesValid) {
    ReferencePlatform::PlatformData& data = platformData(context);
    double tolerance = integrator.getConstraintTolerance();
    MTSThermostat thermostat = integrator.getThermostat();
    takeMTSStep(integrator, forcesValid, [&](int k, int groups) { computeLevelForces(context, k, groups); },
                [&](const vector<double>& coefficients) { kick(context, coefficients); },
                [&](double h) { innerStep(context, h, thermostat, tolerance); });
    if (hasConstraints)
        data.constraints->applyToVelocities(*data.positions, *data.velocities, inverseMasses, tolerance);
    data.time += integrator.getStepSize();
    data.stepCount++;
}

double ReferenceIntegrateMTSStepKernel::computeKineticEnergy(ContextImpl& context, const MultipleTimeStepIntegrator& integrator) {
    const vector<Vec3>& v = *platformData(context).velocities;
    double energy = 0.0;
    for (int i = 0; i < (int) v.size(); i++)
        if (masses[i] != 0.0)
            energy += masses[i] * v[i].dot(v[i]);
    return 0.5 * energy;
}

void ReferenceIntegrateMTSStepKernel::createCheckpoint(ContextImpl& context, ostream& stream) const {
    writeMTSCheckpoint(stream, seed, noiseIndex);
}

void ReferenceIntegrateMTSStepKernel::loadCheckpoint(ContextImpl& context, istream& stream) {
    readMTSCheckpoint(stream, seed, noiseIndex);
}
