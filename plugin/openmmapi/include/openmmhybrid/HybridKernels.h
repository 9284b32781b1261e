#ifndef OPENMMHYBRID_KERNELS_H_
#define OPENMMHYBRID_KERNELS_H_

/* The abstract kernels of openmm-hybrid: one class per operation, one implementation per platform
 * (plugin/platforms/<platform>/). */

#include "openmmhybrid/MLForce.h"
#include "openmm/KernelImpl.h"
#include "openmm/System.h"
#include "openmm/internal/ContextImpl.h"
#include <string>

namespace OpenMMHybrid {

/**
 * Evaluates an MLForce: gathers the ML region's positions, runs the model, adds forces (and energy
 * parameter derivatives) into the platform's buffers and returns the energy.
 */
class CalcMLForceKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() {
        return "CalcMLForce";
    }
    CalcMLForceKernel(std::string name, const OpenMM::Platform& platform) : OpenMM::KernelImpl(name, platform) {
    }
    /**
     * Prepare the kernel for a Context: load the model, check its signature against the inputs
     * the force passes, and allocate the input tensors.
     */
    virtual void initialize(const OpenMM::System& system, const MLForce& force) = 0;
    /**
     * Evaluate the model.
     *
     * @param includeForces  add the forces into the platform's force buffer
     * @param includeEnergy  the caller wants the energy (it is returned in any case)
     * @return the energy in kJ/mol
     */
    virtual double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy) = 0;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_KERNELS_H_*/
