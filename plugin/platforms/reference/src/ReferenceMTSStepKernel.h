#ifndef OPENMMHYBRID_REFERENCEMTSSTEPKERNEL_H_
#define OPENMMHYBRID_REFERENCEMTSSTEPKERNEL_H_

#include "openmmhybrid/HybridKernels.h"
#include "openmm/Vec3.h"
#include <cstdint>
#include <vector>

namespace OpenMMHybrid {

/**
 * MTSIntegrator and MTSLangevinIntegrator on the Reference and CPU platforms (both keep positions,
 * velocities and forces in the Reference platform's double-precision arrays).  The per-particle
 * updates (kicks, drifts, O steps) run on the platform's thread pool; constraints use the
 * platform's ReferenceConstraints (SETTLE, CCMA/SHAKE) exactly as OpenMM's own integrators do.
 */
class ReferenceIntegrateMTSStepKernel : public IntegrateMTSStepKernel {
public:
    ReferenceIntegrateMTSStepKernel(std::string name, const OpenMM::Platform& platform) : IntegrateMTSStepKernel(name, platform) {
    }
    void initialize(const OpenMM::System& system, const MultipleTimeStepIntegrator& integrator) override;
    void execute(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator, bool forcesValid) override;
    double computeKineticEnergy(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator) override;
    void createCheckpoint(OpenMM::ContextImpl& context, std::ostream& stream) const override;
    void loadCheckpoint(OpenMM::ContextImpl& context, std::istream& stream) override;
private:
    void computeLevelForces(OpenMM::ContextImpl& context, int level, int groupMask);
    void kick(OpenMM::ContextImpl& context, const std::vector<double>& coefficients);
    void innerStep(OpenMM::ContextImpl& context, double dt, const MTSThermostat& thermostat, double tolerance);
    std::vector<double> masses, inverseMasses;
    std::vector<std::vector<OpenMM::Vec3>> levelForces;  // each level's forces at the current positions
    std::vector<OpenMM::Vec3> oldPositions, unconstrained;
    bool hasConstraints = false, hasVirtualSites = false;
    uint64_t seed = 0, noiseIndex = 0;  // Philox key and the number of O steps taken
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_REFERENCEMTSSTEPKERNEL_H_*/
