/* Registers openmm-hybrid's kernels for OpenMM's CUDA platform.  OpenMM calls
 * registerKernelFactories() when this plugin library is loaded; openmmhybrid's Python package
 * loads it only when OpenMM's CUDA platform is present (the OpenMM-CUDA wheel). */
#include "CudaMLForceKernel.h"
#include "CudaMTSStepKernel.h"
#include "openmm/KernelFactory.h"
#include "openmm/OpenMMException.h"
#include "openmm/cuda/CudaPlatform.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/internal/windowsExport.h"

using namespace OpenMMHybrid;
using namespace OpenMM;

namespace {
class CudaHybridKernelFactory : public KernelFactory {
public:
    KernelImpl* createKernelImpl(std::string name, const Platform& platform, ContextImpl& context) const {
        CudaPlatform::PlatformData& data = *static_cast<CudaPlatform::PlatformData*>(context.getPlatformData());
        CudaContext& cu = *data.contexts[0];
        if (name == CalcMLForceKernel::Name())
            return new CudaCalcMLForceKernel(name, platform, cu);
        if (name == IntegrateMTSStepKernel::Name())
            return new CudaIntegrateMTSStepKernel(name, platform, cu);
        throw OpenMMException("openmm-hybrid: the CUDA plugin has no kernel named '" + name + "'.");
    }
};
}

extern "C" OPENMM_EXPORT void registerPlatforms() {
}

extern "C" OPENMM_EXPORT void registerKernelFactories() {
    try {
        Platform& platform = Platform::getPlatformByName("CUDA");
        platform.registerKernelFactory(CalcMLForceKernel::Name(), new CudaHybridKernelFactory());
        platform.registerKernelFactory(IntegrateMTSStepKernel::Name(), new CudaHybridKernelFactory());
    }
    catch (const std::exception&) {
        // OpenMM's CUDA platform is not installed: nothing to register.
    }
}
