#ifndef OPENMMHYBRID_MLFORCEIMPL_H_
#define OPENMMHYBRID_MLFORCEIMPL_H_

#include "openmmhybrid/MLForce.h"
#include "openmm/Kernel.h"
#include "openmm/internal/ForceImpl.h"
#include <map>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/** The internal implementation of MLForce inside a Context. */
class MLForceImpl : public OpenMM::ForceImpl {
public:
    explicit MLForceImpl(const MLForce& owner);
    void initialize(OpenMM::ContextImpl& context);
    const MLForce& getOwner() const {
        return owner;
    }
    void updateContextState(OpenMM::ContextImpl& context, bool& forcesInvalid) {
    }
    double calcForcesAndEnergy(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy, int groups);
    std::map<std::string, double> getDefaultParameters();
    std::vector<std::string> getKernelNames();
    /** The number of model evaluations in this Context so far. */
    long long getNumModelCalls() const {
        return numModelCalls;
    }
    /** The number of environment atoms at the last evaluation (electrostatic embedding). */
    int getNumEnvironmentAtoms() const;
    /** The current capacity of the environment arrays. */
    int getEnvironmentCapacity() const;
private:
    long long numModelCalls = 0;
    const MLForce& owner;
    OpenMM::Kernel kernel;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MLFORCEIMPL_H_*/
