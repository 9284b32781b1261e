#ifndef OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_
#define OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_

#include "openmmhybrid/HybridKernels.h"
#include "EnvironmentSearch.h"
#include "openmmhybrid/internal/ModelInputs.h"
#include "openmmhybrid/internal/TorchModel.h"
#include <torch/script.h>
#include <memory>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/**
 * MLForce on the Reference and CPU platforms.  Positions are read straight from the platform's
 * position array into a preallocated input tensor (only the region's atoms, so the cost does not
 * grow with the size of the System); forces are added into the platform's force array.  With
 * electrostatic embedding, EnvironmentSearch finds the MM point charges around the region each
 * evaluation and the gradient with respect to their positions is added as forces on them.
 */
class ReferenceCalcMLForceKernel : public CalcMLForceKernel {
public:
    ReferenceCalcMLForceKernel(std::string name, const OpenMM::Platform& platform) : CalcMLForceKernel(name, platform) {
    }
    void initialize(const OpenMM::System& system, const MLForce& force);
    double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy);
    int getNumEnvironmentAtoms() const {
        return envAtoms.size();
    }
    int getEnvironmentCapacity() const {
        return modelInputs.getEnvironmentCapacity();
    }
private:
    void gatherPositions(OpenMM::ContextImpl& context);
    void gatherEnvironment(OpenMM::ContextImpl& context);
    template <class T>
    void addForces(const torch::Tensor& gradient, double sign, std::vector<OpenMM::Vec3>& forces);
    torch::jit::Module module;
    std::unique_ptr<TorchModel::CompiledModel> compiled;  // set for an AOTInductor package instead of module
    std::vector<torch::Tensor> compiledResults;
    std::vector<int> atoms;
    int modelThreads = 0;  // threads the model runs on (0: torch's setting); see MLForce's modelThreads property
    bool periodic = false, outputsForces = false, useDouble = false;
    ModelInputs modelInputs;  // what the model is passed and what autograd differentiates
    // Electrostatic embedding.
    bool embedding = false;
    double cutoff = 0;
    std::vector<double> charges;
    std::vector<OpenMM::Vec3> regionPositions, envPositions;
    std::vector<int> envAtoms;
    EnvironmentSearch search;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_REFERENCEMLFORCEKERNEL_H_*/
