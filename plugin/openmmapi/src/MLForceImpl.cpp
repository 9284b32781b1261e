#include "openmmhybrid/internal/MLForceImpl.h"
#include "openmmhybrid/HybridKernels.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

MLForceImpl::MLForceImpl(const MLForce& owner) : owner(owner) {
}

void MLForceImpl::initialize(ContextImpl& context) {
    const System& system = context.getSystem();
    int numParticles = system.getNumParticles();
    const vector<int>& atoms = owner.getAtoms();
    for (int i = 0; i < (int) atoms.size(); i++)
        if (atoms[i] >= numParticles)
            throw OpenMMException("MLForce: atom index " + to_string(atoms[i]) + " (entry " + to_string(i) +
                                  " of the ML atom list) is out of range: the System has " + to_string(numParticles) +
                                  " particles (indices 0 to " + to_string(numParticles - 1) + ").");
    if (owner.usesEmbedding()) {
        if ((int) owner.getEmbeddingCharges().size() != numParticles)
            throw OpenMMException("MLForce: electrostatic embedding has " + to_string(owner.getEmbeddingCharges().size()) +
                                  " charges, but the System has " + to_string(numParticles) +
                                  " particles. Pass one charge per particle to setEmbedding().");
        if (owner.getOutputsForces())
            throw OpenMMException("MLForce: electrostatic embedding cannot be combined with setOutputsForces(True): the forces on "
                                  "the MM atoms come from the gradient of the energy with respect to mm_positions. Let the model "
                                  "return the energy alone.");
        if (owner.usesPeriodicBoundaryConditions() != system.usesPeriodicBoundaryConditions())
            throw OpenMMException(string("MLForce: electrostatic embedding needs the force's periodicity to match the System's (the System ") +
                                  (system.usesPeriodicBoundaryConditions() ? "is" : "is not") +
                                  " periodic). Call setUsesPeriodicBoundaryConditions(" +
                                  (system.usesPeriodicBoundaryConditions() ? "True" : "False") + ").");
    }
    const Platform& platform = context.getPlatform();
    if (!platform.supportsKernels({CalcMLForceKernel::Name()}))
        throw OpenMMException("MLForce is not available on the " + platform.getName() +
                              " platform. Use the Reference or CPU platform (or CUDA where the openmm-hybrid CUDA plugin is installed), "
                              "and import openmmhybrid (or load its plugins) before creating the Context.");
    kernel = context.getPlatform().createKernel(CalcMLForceKernel::Name(), context);
    kernel.getAs<CalcMLForceKernel>().initialize(system, owner);
}

double MLForceImpl::calcForcesAndEnergy(ContextImpl& context, bool includeForces, bool includeEnergy, int groups) {
    if ((groups & (1 << owner.getForceGroup())) != 0) {
        numModelCalls++;
        return kernel.getAs<CalcMLForceKernel>().execute(context, includeForces, includeEnergy);
    }
    return 0.0;
}

map<string, double> MLForceImpl::getDefaultParameters() {
    map<string, double> parameters;
    for (int i = 0; i < owner.getNumGlobalParameters(); i++)
        parameters[owner.getGlobalParameterName(i)] = owner.getGlobalParameterDefaultValue(i);
    return parameters;
}

vector<string> MLForceImpl::getKernelNames() {
    return {CalcMLForceKernel::Name()};
}

int MLForceImpl::getNumEnvironmentAtoms() const {
    return kernel.getAs<CalcMLForceKernel>().getNumEnvironmentAtoms();
}

int MLForceImpl::getEnvironmentCapacity() const {
    return kernel.getAs<CalcMLForceKernel>().getEnvironmentCapacity();
}
