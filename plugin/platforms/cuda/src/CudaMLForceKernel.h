#ifndef OPENMMHYBRID_CUDAMLFORCEKERNEL_H_
#define OPENMMHYBRID_CUDAMLFORCEKERNEL_H_

#include "openmmhybrid/HybridKernels.h"
#include "HybridCudaKernels.h"
#include "openmmhybrid/internal/ModelInputs.h"
#include "openmm/cuda/CudaContext.h"
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/script.h>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/**
 * MLForce on OpenMM's CUDA platform.
 *
 * Data path (no host round trip, no context-wide synchronization, no per-step allocation):
 * - OpenMM works in its own CUDA context and stream; the model runs in torch's (primary) context
 *   on a stream of its own.  Each evaluation records an event on OpenMM's stream, makes the torch
 *   stream wait for it, enqueues everything there, and makes OpenMM's stream wait for an event
 *   recorded at the end.  Neither side blocks the host.
 * - The gather kernel (kernels/MLForceKernels.cu) reads the region's positions from OpenMM's posq
 *   (plus the mixed-precision correction) through a particle -> sorted-position map that is rebuilt
 *   on the device after OpenMM reorders atoms, images them next to the first atom and writes the
 *   model's input tensor.  The environment of electrostatic embedding is found on the device (a
 *   flag pass over the charged candidates, a prefix sum, a compaction in particle order).
 * - Forces (the autograd gradients) are added in OpenMM's fixed-point force buffer, parameter
 *   derivatives in its energy-derivative buffer.  The energy is copied to the host only when the
 *   caller asks for it.
 * - Box vectors and global parameters are written by a tiny kernel (values in its arguments) only
 *   when they change.
 * - With the property useCUDAGraphs = true, after CUDAGraphWarmupSteps eager evaluations the whole
 *   evaluation (gather, environment, forward, backward, scatter, checks) is captured in one CUDA
 *   graph and replayed.  A model that cannot be captured falls back to eager evaluation with one
 *   message on stderr saying why.
 * - Non-finite energies or forces, an environment larger than its capacity and a box too small for
 *   the embedding cutoff are flagged by the device in host-mapped memory.  The flags are read at
 *   the start of every evaluation (without waiting for the device) and after every energy
 *   read-back, and raise an OpenMMException then.
 */
class CudaCalcMLForceKernel : public CalcMLForceKernel {
public:
    CudaCalcMLForceKernel(std::string name, const OpenMM::Platform& platform, OpenMM::CudaContext& cu);
    ~CudaCalcMLForceKernel();
    void initialize(const OpenMM::System& system, const MLForce& force);
    double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy);
    int getNumEnvironmentAtoms() const;
    int getEnvironmentCapacity() const {
        return modelInputs.getEnvironmentCapacity();
    }
    /** Called by the reorder listener: the particle -> sorted-position map must be rebuilt. */
    void atomsReordered() {
        indexDirty = true;
    }
private:
    void setUp(OpenMM::ContextImpl& context);
    void updateValues(OpenMM::ContextImpl& context, cudaStream_t stream);
    void enqueueEvaluation(bool includeForces, cudaStream_t stream);
    bool captureGraph(cudaStream_t stream);
    void checkStatus();
    cudakernels::PositionArrays positionArrays();
    /** Throw if a kernel launch of ours failed (e.g. the plugin has no code for this GPU). */
    static void checkLaunch(const char* what);

    OpenMM::CudaContext& cu;
    torch::jit::Module module;
    int deviceIndex = 0;
    CUcontext primary = nullptr;  // the device's primary context (torch's), retained while the kernel lives
    bool setUpDone = false, indexDirty = true;
    std::vector<int> atoms;
    bool periodic = false, outputsForces = false, useDouble = false;
    int numParticles = 0;
    // Inputs of the model (device tensors, allocated once: a captured graph reads them in place).
    ModelInputs modelInputs;
    std::vector<double> lastParameterValues;
    std::vector<int> derivativeBufferIndex;  // the requested derivatives' positions in OpenMM's buffer
    // Device-side helpers.
    torch::Tensor atomsDevice, sortedIndexOf, boxDevice;
    double lastBox[9];
    bool boxKnown = false;
    // Electrostatic embedding.
    bool embedding = false;
    double cutoff = 0;
    int requestedCapacity = 0;
    torch::Tensor candidatesDevice, candidateCharges, regionDevice, bounds, envSorted, envCount, scratch;
    // Outputs kept between enqueue and read-back (the graph's static outputs when captured).
    torch::Tensor energyOut;
    std::vector<torch::Tensor> keep;
    // Streams, events, graph, status.
    std::optional<c10::cuda::CUDAStream> stream;
    cudaEvent_t openmmReady = nullptr, torchDone = nullptr;
    bool useGraphs = false;
    int warmupSteps = 3, forceEvaluations = 0;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
    cudakernels::DeviceStatus* status = nullptr;        // host-mapped: the host's view
    cudakernels::DeviceStatus* statusDevice = nullptr;  // the same memory as the device addresses it
    double* hostEnergy = nullptr;                 // pinned
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_CUDAMLFORCEKERNEL_H_*/
