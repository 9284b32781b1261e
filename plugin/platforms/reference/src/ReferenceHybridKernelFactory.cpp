/* Registers the Reference-platform kernels of openmm-hybrid for the Reference and CPU platforms
 * (the CPU platform derives from the Reference platform and shares its position and force arrays).
 * OpenMM calls registerKernelFactories() when this plugin library is loaded. */
#include "ReferenceMLForceKernel.h"
#include "ReferenceMTSStepKernel.h"
#include "openmm/KernelFactory.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/windowsExport.h"
#include "openmm/reference/ReferencePlatform.h"

using namespace OpenMMHybrid;
using namespace OpenMM;

namespace {
class ReferenceHybridKernelFactory : public KernelFactory {
public:
    KernelImpl* createKernelImpl(std::string name, const Platform& platform, ContextImpl& context) const {
        if (name == CalcMLForceKernel::Name())
            return new ReferenceCalcMLForceKernel(name, platform);
        if (name == IntegrateMTSStepKernel::Name())
            return new ReferenceIntegrateMTSStepKernel(name, platform);
        throw OpenMMException("openmm-hybrid: the Reference plugin has no kernel named '" + name + "'.");
    }
};
}

extern "C" OPENMM_EXPORT void registerPlatforms() {
}

extern "C" OPENMM_EXPORT void registerKernelFactories() {
    for (int i = 0; i < Platform::getNumPlatforms(); i++) {
        Platform& platform = Platform::getPlatform(i);
        if (dynamic_cast<ReferencePlatform*>(&platform) != nullptr) {
            // The platform owns (and deletes) one factory per registration.
            platform.registerKernelFactory(CalcMLForceKernel::Name(), new ReferenceHybridKernelFactory());
            platform.registerKernelFactory(IntegrateMTSStepKernel::Name(), new ReferenceHybridKernelFactory());
        }
    }
}
