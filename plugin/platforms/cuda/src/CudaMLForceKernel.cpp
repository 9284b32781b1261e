#include "CudaMLForceKernel.h"
#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include "openmm/common/ComputeForceInfo.h"
#include "openmm/common/ContextSelector.h"
#include "openmm/internal/ContextImpl.h"
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <cmath>
#include <cstring>
#include <iostream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;
using TorchModel::firstLine;

namespace {

void check(cudaError_t result, const char* what) {
    if (result != cudaSuccess)
        throw OpenMMException(string("MLForce (CUDA): ") + what + " failed: " + cudaGetErrorString(result));
}

void checkDriver(CUresult result, const char* what) {
    if (result != CUDA_SUCCESS) {
        const char* text = nullptr;
        cuGetErrorString(result, &text);
        throw OpenMMException(string("MLForce (CUDA): ") + what + " failed: " + (text ? text : "unknown error"));
    }
}

// Makes torch's context (the device's primary context) current for a block and restores whatever
// was current before, so the caller's context stack (OpenMM's ContextSelector) is left intact.
class PrimaryContextScope {
public:
    explicit PrimaryContextScope(CUcontext context) {
        checkDriver(cuCtxPushCurrent(context), "making torch's CUDA context current");
    }
    ~PrimaryContextScope() {
        CUcontext popped;
        cuCtxPopCurrent(&popped);
    }
};

// Tells OpenMM which particles it may treat as interchangeable when it reorders atoms: an ML atom
// is identical only to itself (its slot in the region), so no reordering can swap it with another.
class MLForceInfo : public ComputeForceInfo {
public:
    MLForceInfo(int numParticles, const vector<int>& atoms) : slot(numParticles, -1) {
        for (int i = 0; i < (int) atoms.size(); i++)
            slot[atoms[i]] = i;
    }
    bool areParticlesIdentical(int particle1, int particle2) {
        return slot[particle1] == slot[particle2];
    }
private:
    vector<int> slot;
};

class ReorderListener : public ComputeContext::ReorderListener {
public:
    ReorderListener(CudaCalcMLForceKernel& owner) : owner(owner) {
    }
    void execute() {
        owner.atomsReordered();
    }
private:
    CudaCalcMLForceKernel& owner;
};

} // namespace

CudaCalcMLForceKernel::CudaCalcMLForceKernel(string name, const Platform& platform, CudaContext& cu) : CalcMLForceKernel(name, platform), cu(cu) {
}

CudaCalcMLForceKernel::~CudaCalcMLForceKernel() {
    if (primary == nullptr)
        return;
    // A destructor must not throw: if the driver is already gone (process exit), skip the cleanup.
    if (cuCtxPushCurrent(primary) == CUDA_SUCCESS) {
        try {
            if (stream)
                cudaStreamSynchronize(stream->stream());  // nothing may still use what is freed below
            graph.reset();
            if (status != nullptr)
                cudaFreeHost(status);
            if (hostEnergy != nullptr)
                cudaFreeHost(hostEnergy);
            if (torchDone != nullptr)
                cudaEventDestroy(torchDone);
            if (openmmReady != nullptr) {
                ContextSelector selector(cu);
                cudaEventDestroy(openmmReady);
            }
        }
        catch (...) {
        }
        CUcontext popped;
        cuCtxPopCurrent(&popped);
    }
    cudaGetLastError();  // leave no error behind for a later launch check
    cuDevicePrimaryCtxRelease(cu.getDevice());
}

void CudaCalcMLForceKernel::checkLaunch(const char* what) {
    string failure = cudakernels::launchFailure();
    if (!failure.empty())
        throw OpenMMException(string("MLForce (CUDA): launching ") + what + " failed: " + failure);
}

void CudaCalcMLForceKernel::initialize(const System& system, const MLForce& force) {
    if (cu.getPlatformData().contexts.size() > 1)
        throw OpenMMException("MLForce: the CUDA platform with several devices (DeviceIndex with a comma) is not supported; use one device.");
    deviceIndex = cu.getDeviceIndex();
    torch::Device device(torch::kCUDA, (c10::DeviceIndex) deviceIndex);
    if (primary == nullptr)
        checkDriver(cuDevicePrimaryCtxRetain(&primary, cu.getDevice()), "retaining torch's CUDA context");
    PrimaryContextScope scope(primary);
    if (TorchModel::isCompiledPackage(force.getModelData()))
        throw OpenMMException("MLForce: compiled models (AOTInductor packages) run on the Reference and CPU platforms in this version. "
                              "On CUDA, give the force the TorchScript model and set the property useCUDAGraphs to true.");
    module = TorchModel::load(force.getModelData(), force.getFile().empty() ? "the force's stored model" : "'" + force.getFile() + "'");
    try {
        module.to(device);
    }
    catch (const std::exception& e) {
        throw OpenMMException("MLForce: could not move the model to CUDA device " + to_string(deviceIndex) + ": " + firstLine(e.what()) +
                              " (is the installed torch built with CUDA?)");
    }
    atoms = force.getAtoms();
    numParticles = system.getNumParticles();
    periodic = force.usesPeriodicBoundaryConditions();
    outputsForces = force.getOutputsForces();
    useDouble = force.getUsesDoublePrecision();
    torch::TensorOptions ints = torch::TensorOptions().device(device).dtype(torch::kInt32);
    torch::TensorOptions doubles = torch::TensorOptions().device(device).dtype(torch::kFloat64);
    int numAtoms = atoms.size();
    modelInputs.initialize(system, force, torch::TensorOptions().device(device).dtype(useDouble ? torch::kFloat64 : torch::kFloat32),
                           outputsForces);
    atomsDevice = torch::tensor(atoms, torch::TensorOptions().dtype(torch::kInt32)).to(device);
    sortedIndexOf = torch::zeros({numParticles}, ints);
    boxDevice = torch::zeros({9}, doubles);

    embedding = force.usesEmbedding();
    if (embedding) {
        cutoff = force.getEmbeddingCutoff();
        requestedCapacity = force.getEmbeddingCapacity();
        const vector<double>& charges = force.getEmbeddingCharges();
        const vector<int>& candidates = modelInputs.getCandidates();
        vector<double> candidateQ;
        for (int i : candidates)
            candidateQ.push_back(charges[i]);
        candidatesDevice = torch::tensor(candidates.empty() ? vector<int>{0} : candidates, torch::TensorOptions().dtype(torch::kInt32)).to(device);
        candidateCharges = torch::tensor(candidateQ.empty() ? vector<double>{0.0} : candidateQ, torch::TensorOptions().dtype(torch::kFloat64)).to(device);
        regionDevice = torch::zeros({numAtoms, 3}, doubles);
        bounds = torch::zeros({4}, doubles);
        envCount = torch::zeros({1}, ints);
        scratch = torch::empty({(int64_t) cudakernels::environmentScratchBytes(candidates.size())},
                               torch::TensorOptions().device(device).dtype(torch::kUInt8));
    }
    lastParameterValues.assign(modelInputs.getNumParameters(), NAN);
    for (int j : modelInputs.getDerivatives())
        cu.addEnergyParameterDerivative(modelInputs.getParameterName(j));
    if (modelInputs.getDerivatives().size() > 8)
        throw OpenMMException("MLForce: the CUDA platform supports at most 8 energy parameter derivatives per MLForce.");
    TorchModel::checkSignature(module, modelInputs.getNames());

    map<string, string> properties = force.getProperties();
    useGraphs = properties.count("useCUDAGraphs") && properties["useCUDAGraphs"] == "true";
    if (properties.count("CUDAGraphWarmupSteps"))
        warmupSteps = max(1, stoi(properties["CUDAGraphWarmupSteps"]));  // at least one eager backward before a capture
    cu.addForce(new MLForceInfo(numParticles, atoms));
    cu.addReorderListener(new ReorderListener(*this));
}

cudakernels::PositionArrays CudaCalcMLForceKernel::positionArrays() {
    cudakernels::PositionArrays p;
    p.posq = reinterpret_cast<const void*>(cu.getPosq().getDevicePointer());
    p.posqCorrection = cu.getUseMixedPrecision() ? reinterpret_cast<const float4*>(cu.getPosqCorrection().getDevicePointer()) : nullptr;
    p.doublePosq = cu.getUseDoublePrecision();
    return p;
}

void CudaCalcMLForceKernel::setUp(ContextImpl& context) {
    // Called with torch's context current (execute()).  Everything created here is created once,
    // so a failure below (a box too small, say) can be fixed and the evaluation retried.
    if (!stream)
        stream = c10::cuda::getStreamFromPool(false, (c10::DeviceIndex) deviceIndex);
    if (torchDone == nullptr)
        check(cudaEventCreateWithFlags(&torchDone, cudaEventDisableTiming), "creating an event");
    if (status == nullptr) {
        check(cudaHostAlloc((void**) &status, sizeof(cudakernels::DeviceStatus), cudaHostAllocMapped | cudaHostAllocPortable),
              "allocating the status flags");
        memset(status, 0, sizeof(cudakernels::DeviceStatus));
    }
    if (statusDevice == nullptr)
        check(cudaHostGetDevicePointer((void**) &statusDevice, status, 0), "mapping the status flags");
    if (hostEnergy == nullptr)
        check(cudaHostAlloc((void**) &hostEnergy, sizeof(double), cudaHostAllocPortable), "allocating the energy read-back buffer");
    if (openmmReady == nullptr) {
        ContextSelector selector(cu);
        check(cudaEventCreateWithFlags(&openmmReady, cudaEventDisableTiming), "creating an event in OpenMM's context");
    }
    // Where the requested derivatives sit in OpenMM's energy-derivative buffer.
    derivativeBufferIndex.clear();
    const vector<string>& names = cu.getEnergyParamDerivNames();
    for (int j : modelInputs.getDerivatives())
        derivativeBufferIndex.push_back(find(names.begin(), names.end(), modelInputs.getParameterName(j)) - names.begin());

    if (embedding) {
        // Size the environment arrays from the current environment (the only synchronous step).
        c10::cuda::CUDAStreamGuard guard(*stream);
        cudaStream_t s = stream->stream();
        {
            ContextSelector selector(cu);
            check(cudaEventRecord(openmmReady, cu.getCurrentStream()), "recording an event");
        }
        check(cudaStreamWaitEvent(s, openmmReady, 0), "waiting for OpenMM");
        cudakernels::invertAtomIndex(reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), cu.getNumAtoms(),
                                     sortedIndexOf.data_ptr<int>(), s);
        indexDirty = false;
        updateValues(context, s);
        cudakernels::gatherRegion(positionArrays(), sortedIndexOf.data_ptr<int>(), atomsDevice.data_ptr<int>(), atoms.size(),
                                  boxDevice.data_ptr<double>(), periodic, modelInputs.getPositions().data_ptr(),
                                  periodic ? modelInputs.getBox().data_ptr() : nullptr, useDouble, regionDevice.data_ptr<double>(),
                                  bounds.data_ptr<double>(), cutoff, statusDevice, s);
        int count = 0;
        {
            // capacity 0: only counts
            check(cudakernels::findEnvironment(positionArrays(), sortedIndexOf.data_ptr<int>(), candidatesDevice.data_ptr<int>(),
                                               candidateCharges.data_ptr<double>(), modelInputs.getCandidates().size(),
                                               regionDevice.data_ptr<double>(), atoms.size(), bounds.data_ptr<double>(),
                                               boxDevice.data_ptr<double>(), periodic, cutoff, 0,
                                               nullptr, nullptr, nullptr, useDouble, nullptr, envCount.data_ptr<int>(), scratch.data_ptr(),
                                               statusDevice, s),
                  "the environment search");
            checkLaunch("the environment search");
            check(cudaMemcpyAsync(hostEnergy, envCount.data_ptr<int>(), sizeof(int), cudaMemcpyDeviceToHost, s), "reading the environment size");
            check(cudaStreamSynchronize(s), "sizing the environment");
            memcpy(&count, hostEnergy, sizeof(int));
        }
        status->environmentCount = 0;  // counting with capacity 0 always "overflows"
        checkStatus();
        // The arrays cannot grow inside a captured graph: 50% headroom, rounded up to 128.
        int automatic = ((count + count / 2 + 64 + 127) / 128) * 128;
        int capacity = (requestedCapacity > 0 && requestedCapacity >= count ? requestedCapacity : automatic);
        modelInputs.allocateEnvironment(capacity);
        torch::Device device(torch::kCUDA, (c10::DeviceIndex) deviceIndex);
        envSorted = torch::full({capacity}, -1, torch::TensorOptions().device(device).dtype(torch::kInt32));
    }
    setUpDone = true;
}

void CudaCalcMLForceKernel::updateValues(ContextImpl& context, cudaStream_t s) {
    cudakernels::ValueWrites writes;
    auto add = [&](void* target, double value, bool isDouble) {
        if (writes.count == 16) {
            cudakernels::writeValues(writes, s);
            writes.count = 0;
        }
        writes.target[writes.count] = target;
        writes.value[writes.count] = value;
        writes.isDouble[writes.count] = isDouble;
        writes.count++;
    };
    if (periodic) {
        Vec3 a, b, c;
        cu.getPeriodicBoxVectors(a, b, c);
        double v[9] = {a[0], a[1], a[2], b[0], b[1], b[2], c[0], c[1], c[2]};
        if (!boxKnown || memcmp(v, lastBox, sizeof(v)) != 0) {
            for (int k = 0; k < 9; k++)
                add(boxDevice.data_ptr<double>() + k, v[k], true);
            memcpy(lastBox, v, sizeof(v));
            boxKnown = true;
        }
    }
    for (int i = 0; i < modelInputs.getNumParameters(); i++) {
        double value = context.getParameter(modelInputs.getParameterName(i));
        if (!(value == lastParameterValues[i])) {
            add(modelInputs.getParameter(i).data_ptr(), value, useDouble);
            lastParameterValues[i] = value;
        }
    }
    if (writes.count > 0)
        cudakernels::writeValues(writes, s);
}

void CudaCalcMLForceKernel::enqueueEvaluation(bool includeForces, cudaStream_t s) {
    cudakernels::gatherRegion(positionArrays(), sortedIndexOf.data_ptr<int>(), atomsDevice.data_ptr<int>(), atoms.size(),
                              boxDevice.data_ptr<double>(), periodic, modelInputs.getPositions().data_ptr(),
                              periodic ? modelInputs.getBox().data_ptr() : nullptr, useDouble,
                              embedding ? regionDevice.data_ptr<double>() : nullptr, embedding ? bounds.data_ptr<double>() : nullptr, cutoff,
                              statusDevice, s);
    int capacity = modelInputs.getEnvironmentCapacity();
    if (embedding)
        check(cudakernels::findEnvironment(positionArrays(), sortedIndexOf.data_ptr<int>(), candidatesDevice.data_ptr<int>(),
                                           candidateCharges.data_ptr<double>(), modelInputs.getCandidates().size(),
                                           regionDevice.data_ptr<double>(), atoms.size(), bounds.data_ptr<double>(),
                                           boxDevice.data_ptr<double>(), periodic, cutoff, capacity,
                                           modelInputs.getEnvironmentPositions().data_ptr(), modelInputs.getEnvironmentCharges().data_ptr(),
                                           modelInputs.getEnvironmentMask().data_ptr<bool>(), useDouble, envSorted.data_ptr<int>(),
                                           envCount.data_ptr<int>(), scratch.data_ptr(), statusDevice, s),
              "the environment search");
    torch::jit::IValue output = modelInputs.forward(module);
    torch::Tensor modelForces;
    torch::Tensor energy = TorchModel::splitOutput(output, outputsForces, atoms.size(), modelForces);
    if (!energy.is_cuda())
        throw OpenMMException("MLForce: the model returned its energy on the CPU; on the CUDA platform it must stay on the device of its inputs.");
    torch::Tensor scalar = energy.dim() == 0 ? energy : energy.sum();
    energyOut = scalar.detach().to(torch::kFloat64).contiguous();
    keep.clear();
    cudakernels::DerivativeAdds derivs;
    if (includeForces) {
        long long* force = reinterpret_cast<long long*>(cu.getForce().getDevicePointer());
        int padded = cu.getPaddedNumAtoms();
        ModelInputs::Gradients grads = modelInputs.computeGradients(scalar);
        if (!outputsForces) {
            torch::Tensor g = grads.positions;
            if (g.defined()) {
                g = g.contiguous();
                keep.push_back(g);
                cudakernels::scatterRegionForces(g.data_ptr(), g.scalar_type() == torch::kFloat64, -1.0, sortedIndexOf.data_ptr<int>(),
                                                 atomsDevice.data_ptr<int>(), atoms.size(), force, padded, statusDevice, s);
            }
        }
        if (embedding) {
            torch::Tensor g = grads.environment;
            if (g.defined()) {
                g = g.contiguous();
                keep.push_back(g);
                cudakernels::scatterEnvironmentForces(g.data_ptr(), g.scalar_type() == torch::kFloat64, envSorted.data_ptr<int>(),
                                                      envCount.data_ptr<int>(), capacity,
                                                      reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), force, padded,
                                                      statusDevice, s);
            }
        }
        if (outputsForces) {
            torch::Tensor f = modelForces.detach();
            if (f.scalar_type() != torch::kFloat64 && f.scalar_type() != torch::kFloat32)
                f = f.to(torch::kFloat64);
            f = f.contiguous();
            keep.push_back(f);
            cudakernels::scatterRegionForces(f.data_ptr(), f.scalar_type() == torch::kFloat64, 1.0, sortedIndexOf.data_ptr<int>(),
                                             atomsDevice.data_ptr<int>(), atoms.size(), force, padded, statusDevice, s);
        }
        for (int d = 0; d < (int) grads.parameters.size(); d++) {
            torch::Tensor g = grads.parameters[d];
            if (!g.defined())
                continue;
            g = g.detach().to(torch::kFloat64).contiguous();
            keep.push_back(g);
            derivs.value[derivs.count] = g.data_ptr();
            derivs.index[derivs.count] = derivativeBufferIndex[d];
            derivs.count++;
        }
    }
    bool derivDouble = cu.getUseDoublePrecision() || cu.getUseMixedPrecision();
    void* derivBuffer = derivs.count > 0 ? reinterpret_cast<void*>(cu.getEnergyParamDerivBuffer().getDevicePointer()) : nullptr;
    cudakernels::finishEvaluation(energyOut.data_ptr(), true, derivs, true, derivBuffer, derivDouble, statusDevice, s);
}

bool CudaCalcMLForceKernel::captureGraph(cudaStream_t s) {
    graph = std::make_unique<at::cuda::CUDAGraph>();
    // An explicit pool, so that a failed capture can hand it back to torch's allocator below.
    at::cuda::MempoolId_t pool = at::cuda::graph_pool_handle();
    try {
        graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
        try {
            enqueueEvaluation(true, s);
        }
        catch (...) {
            try {
                graph->capture_end();
            }
            catch (...) {
            }
            throw;
        }
        graph->capture_end();
        return true;
    }
    catch (const std::exception& e) {
        // Leave the stream out of capture mode, whatever state the failure left it in.
        cudaStreamCaptureStatus captureStatus;
        if (cudaStreamIsCapturing(s, &captureStatus) == cudaSuccess && captureStatus != cudaStreamCaptureStatusNone) {
            cudaGraph_t partial = nullptr;
            cudaStreamEndCapture(s, &partial);
            if (partial != nullptr)
                cudaGraphDestroy(partial);
        }
        cudaGetLastError();
        // torch's capture_end can throw before it stops routing the stream's allocations to the
        // graph's pool: stop that here (an error means it was already stopped).  The CUDAGraph object
        // is then deliberately kept alive, never destroyed: torch's allocators may still hold
        // filters that point to it (the pinned-host allocator's too, in recent versions), and
        // releasing its pools by hand could release them twice.  Its filters stop matching once the
        // capture is over, so the cost is one small object and its pool per failed capture, and a
        // kernel tries to capture at most once.
        try {
            c10::cuda::CUDACachingAllocator::endAllocateToPool((c10::DeviceIndex) deviceIndex, pool);
        }
        catch (...) {
        }
        graph.release();
        cerr << "openmm-hybrid: MLForce: the model could not be captured in a CUDA graph (" << firstLine(e.what())
             << "); it is evaluated without graphs. Models with data-dependent shapes or host synchronization (.item(), "
                ".nonzero(), torchani's own ANI) cannot be captured; set the property useCUDAGraphs to false to silence this."
             << endl;
        return false;
    }
}

double CudaCalcMLForceKernel::execute(ContextImpl& context, bool includeForces, bool includeEnergy) {
    PrimaryContextScope scope(primary);
    if (!setUpDone)
        setUp(context);
    checkStatus();
    c10::cuda::CUDAStreamGuard guard(*stream);
    cudaStream_t s = stream->stream();
    {
        ContextSelector selector(cu);
        check(cudaEventRecord(openmmReady, cu.getCurrentStream()), "recording an event on OpenMM's stream");
    }
    check(cudaStreamWaitEvent(s, openmmReady, 0), "ordering the model after OpenMM");
    if (indexDirty) {
        cudakernels::invertAtomIndex(reinterpret_cast<const int*>(cu.getAtomIndexArray().getDevicePointer()), cu.getNumAtoms(),
                                     sortedIndexOf.data_ptr<int>(), s);
        indexDirty = false;
    }
    updateValues(context, s);
    checkLaunch("the index and value updates");
    if (includeForces)
        forceEvaluations++;
    bool replayed = false;
    // Capture only after warmupSteps eager evaluations with a backward pass (TorchScript's profiling
    // executor specializes the model, autograd and the math libraries create their handles).
    if (useGraphs && (graph || (includeForces && forceEvaluations > warmupSteps))) {
        if (!graph)
            useGraphs = captureGraph(s);
        if (graph) {
            graph->replay();
            replayed = true;
        }
    }
    if (!replayed) {
        enqueueEvaluation(includeForces, s);
        checkLaunch("the gather, environment or scatter kernels");
    }
    if (includeEnergy)
        check(cudaMemcpyAsync(hostEnergy, energyOut.data_ptr<double>(), sizeof(double), cudaMemcpyDeviceToHost, s), "reading the energy");
    check(cudaEventRecord(torchDone, s), "recording an event on torch's stream");
    {
        ContextSelector selector(cu);
        check(cudaStreamWaitEvent(cu.getCurrentStream(), torchDone, 0), "ordering OpenMM after the model");
    }
    if (!includeEnergy)
        return 0.0;
    check(cudaEventSynchronize(torchDone), "waiting for the energy");
    checkStatus();
    double energy = *hostEnergy;
    if (!std::isfinite(energy))
        throw OpenMMException(TorchModel::nonFiniteEnergyMessage(energy));
    return energy;
}

void CudaCalcMLForceKernel::checkStatus() {
    if (status == nullptr)
        return;
    volatile cudakernels::DeviceStatus* flags = status;
    string message;
    if (flags->nonFiniteEnergy)
        message = "MLForce: the model returned a non-finite energy at an evaluation since the last check. Check the positions of the ML "
                  "region (overlapping atoms, an exploded simulation) and that the model covers its elements.";
    else if (flags->nonFiniteForce) {
        int i = flags->nonFiniteForce - 1;
        message = TorchModel::nonFiniteForceMessage(i, atoms[i]);
    }
    else if (flags->nonFiniteEnvForce)
        message = TorchModel::nonFiniteEnvironmentForceMessage(flags->nonFiniteEnvForce - 1);
    else if (flags->boxTooSmall) {
        char text[600];
        snprintf(text, sizeof(text),
                 "MLForce: electrostatic embedding needs 2 x cutoff + the extent of the ML region (2 x %.3f + %.3f nm) to be smaller "
                 "than the shortest box width, so that each MM atom has only one image within the cutoff of the region. Use a smaller "
                 "embedding cutoff, a smaller ML region or a larger box.", cutoff, (double) flags->regionDiameter);
        message = text;
    }
    else if (flags->environmentCount) {
        int capacity = modelInputs.getEnvironmentCapacity();
        message = "MLForce: the embedding environment grew to " + to_string(flags->environmentCount) + " atoms, more than its capacity of " +
                  to_string(capacity) + " on the CUDA platform, where the arrays cannot grow during a simulation; the model saw only the first " +
                  to_string(capacity) + " since. Call setEmbeddingCapacity(" + to_string(flags->environmentCount + flags->environmentCount / 4) +
                  ") (or more) on the force and restart from a state saved before this point.";
    }
    if (message.empty())
        return;
    memset(status, 0, sizeof(cudakernels::DeviceStatus));
    throw OpenMMException(message);
}

int CudaCalcMLForceKernel::getNumEnvironmentAtoms() const {
    if (!setUpDone || !embedding)
        return 0;
    PrimaryContextScope scope(primary);
    int count = 0;
    int* pinned = reinterpret_cast<int*>(hostEnergy);
    check(cudaMemcpyAsync(pinned, envCount.data_ptr<int>(), sizeof(int), cudaMemcpyDeviceToHost, stream->stream()), "reading the environment size");
    check(cudaStreamSynchronize(stream->stream()), "reading the environment size");
    count = *pinned;
    return count;
}
