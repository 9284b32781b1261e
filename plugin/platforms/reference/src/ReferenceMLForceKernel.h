#ifndef OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_
#define OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_

#include "openmmhybrid/HybridKernels.h"
#include <torch/script.h>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/**
 * MLForce on the Reference and CPU platforms.  Positions are read straight from the platform's
 * position array into a preallocated input tensor (only the region's atoms, so the cost does not
 * grow with the size of the System); forces are added into the platform's force array.
 */
class ReferenceCalcMLForceKernel : public CalcMLForceKernel {
public:
    ReferenceCalcMLForceKernel(std::string name, const OpenMM::Platform& platform) : CalcMLForceKernel(name, platform) {
    }
    void initialize(const OpenMM::System& system, const MLForce& force);
    double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy);
private:
    void gatherPositions(OpenMM::ContextImpl& context);
    template <class T>
    void addForces(const torch::Tensor& gradient, double sign, std::vector<OpenMM::Vec3>& forces);
    torch::jit::Module module;
    std::vector<int> atoms;
    bool periodic = false, outputsForces = false, useDouble = false;
    torch::Tensor positions, box;
    std::vector<torch::Tensor> parameters;
    std::vector<std::string> parameterNames;
    std::vector<int> derivativeIndex;  // indices into parameters, one per requested derivative
    std::vector<torch::jit::IValue> inputs;
    std::vector<torch::Tensor> gradInputs;  // what autograd differentiates: positions and/or parameters
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_*/
