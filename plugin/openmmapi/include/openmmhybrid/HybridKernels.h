#ifndef OPENMMHYBRID_KERNELS_H_
#define OPENMMHYBRID_KERNELS_H_

/* The abstract kernels of openmm-hybrid: one class per operation, one implementation per platform
 * (plugin/platforms/<platform>/). */

#include "openmmhybrid/MLForce.h"
#include "openmmhybrid/MTSIntegrator.h"
#include "openmm/KernelImpl.h"
#include "openmm/System.h"
#include "openmm/internal/ContextImpl.h"
#include <iosfwd>
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
    /** With electrostatic embedding: the number of environment atoms at the last evaluation. */
    virtual int getNumEnvironmentAtoms() const {
        return 0;
    }
    /** With electrostatic embedding: the current capacity of the environment arrays. */
    virtual int getEnvironmentCapacity() const {
        return 0;
    }
};

/**
 * Takes one outer step of a MultipleTimeStepIntegrator (MTSIntegrator or MTSLangevinIntegrator).
 *
 * The whole step runs inside the kernel, so a platform can keep it on its device: the kernel asks
 * the Context for the forces of one level at a time (ContextImpl::calcForcesAndEnergy with that
 * level's group mask), keeps each level's forces until the positions move, and applies the
 * kicks, drifts, O steps and constraints itself.  The forces of every level at the final
 * positions are kept for the next step, which reuses them when `forcesValid` says nothing changed
 * in between.
 */
class IntegrateMTSStepKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() {
        return "IntegrateHybridMTSStep";
    }
    IntegrateMTSStepKernel(std::string name, const OpenMM::Platform& platform) : OpenMM::KernelImpl(name, platform) {
    }
    /** Prepare for a Context: masses, buffers, the random seed. */
    virtual void initialize(const OpenMM::System& system, const MultipleTimeStepIntegrator& integrator) = 0;
    /**
     * Take one outer step and advance the Context's time and step count.
     *
     * @param forcesValid  the forces kept from the previous step are still those of the current
     *                     positions and parameters (false after anything changed the state)
     */
    virtual void execute(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator, bool forcesValid) = 0;
    /** 1/2 sum m v^2 of the current (synchronous) velocities, in kJ/mol. */
    virtual double computeKineticEnergy(OpenMM::ContextImpl& context, const MultipleTimeStepIntegrator& integrator) = 0;
    /** Write the integrator's own state (the random stream position) to a checkpoint. */
    virtual void createCheckpoint(OpenMM::ContextImpl& context, std::ostream& stream) const = 0;
    /** Restore what createCheckpoint() wrote. */
    virtual void loadCheckpoint(OpenMM::ContextImpl& context, std::istream& stream) = 0;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_KERNELS_H_*/
