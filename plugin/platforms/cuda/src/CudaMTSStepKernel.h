#ifndef OPENMMHYBRID_CUDAMTSSTEPKERNEL_H_
#define OPENMMHYBRID_CUDAMTSSTEPKERNEL_H_

#include "openmmhybrid/HybridKernels.h"
#include "openmm/cuda/CudaArray.h"
#include "openmm/cuda/CudaContext.h"
#include <cstdint>
#include <memory>
#include <vector>

namespace OpenMMHybrid {

/**
 * MTSIntegrator and MTSLangevinIntegrator on OpenMM's CUDA platform.  The whole outer step stays
 * on the device: each level's forces are computed by OpenMM (ContextImpl::calcForcesAndEnergy with
 * the level's group mask) and copied from the fixed-point force buffer into a per-particle array
 * (indexed by System particle, so OpenMM's atom reordering between steps cannot misalign them);
 * kicks, drifts and the Langevin O step are kernels in kernels/MTSKernels.cu; constraints and
 * virtual sites use OpenMM's own IntegrationUtilities, as its integrators do.  The noise is the
 * Reference platform's (Philox on particle index and step), so the two platforms' trajectories
 * agree to rounding for the first steps.  Nothing is read back to the host during a step.
 */
class CudaIntegrateMTSStepKernel : public IntegrateMTSStepKernel {
public:
    CudaIntegrateMTSStepKernel(std::string name, const OpenMM::Platform& platform, OpenMM::CudaContext& cu)
        : IntegrateMTSStepKernel(name, platform), cu(cu) {
    }
    void initialize(const OpenMM::System& system, const MultipleTimeStepIntegrator& integrator) override;
    void execute(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator, bool forcesValid) override;
    double computeKineticEnergy(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator) override;
    void createCheckpoint(OpenMM::ContextImpl& context, std::ostream& stream) const override;
    void loadCheckpoint(OpenMM::ContextImpl& context, std::istream& stream) override;
private:
    void computeLevelForces(OpenMM::ContextImpl& context, int level, int groupMask);
    void kick(const std::vector<double>& coefficients);
    void innerStep(double dt, const MTSThermostat& thermostat, double tolerance);
    /** Throw if a kernel launch failed (no kernel image for this GPU, bad configuration). */
    static void checkLaunch(const char* what);
    OpenMM::CudaContext& cu;
    std::vector<std::unique_ptr<OpenMM::CudaArray>> levelForces;  // double3 per System particle, one array per level
    OpenMM::CudaArray unconstrained;             // double3 per sorted atom (with constraints)
    bool hasConstraints = false;
    uint64_t seed = 0, noiseIndex = 0;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_CUDAMTSSTEPKERNEL_H_*/
