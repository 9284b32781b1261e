#include "ReferenceMLForceKernel.h"
#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/reference/ReferencePlatform.h"
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <algorithm>
#include <cmath>
#include <iostream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

static ReferencePlatform::PlatformData& getData(ContextImpl& context) {
    // The CPU platform is derived from the Reference platform and keeps this structure too.
    return *reinterpret_cast<ReferencePlatform::PlatformData*>(context.getPlatformData());
}

namespace {

// The OpenMP runtime a compiled model (AOTInductor) uses is the system's libgomp, not the copy torch
// bundles under another name, so at::set_num_threads does not reach it; its functions are looked
// up once it is loaded.
struct SystemOpenMP {
    int (*getMaxThreads)() = nullptr;
    void (*setNumThreads)(int) = nullptr;
    SystemOpenMP() {
        void* library = dlopen("libgomp.so.1", RTLD_LAZY | RTLD_NOLOAD);
        if (library != nullptr) {
            getMaxThreads = reinterpret_cast<int (*)()>(dlsym(library, "omp_get_max_threads"));
            setNumThreads = reinterpret_cast<void (*)(int)>(dlsym(library, "omp_set_num_threads"));
            if (getMaxThreads == nullptr || setNumThreads == nullptr)
                getMaxThreads = nullptr;
        }
    }
};

// Runs the model on `threads` threads (torch's and the system OpenMP runtime's) for the lifetime
// of the object, then restores the caller's settings; 0 changes nothing.  OpenMP's thread count is
// a setting of the calling thread, so this affects no other thread.
class ModelThreads {
public:
    ModelThreads(int threads, bool compiled) {
        if (threads <= 0)
            return;
        savedTorch = at::get_num_threads();
        if (savedTorch != threads)
            at::set_num_threads(threads);
        if (compiled) {
            static SystemOpenMP openmp;
            if (openmp.getMaxThreads != nullptr) {
                system = &openmp;
                savedSystem = openmp.getMaxThreads();
                if (savedSystem != threads)
                    openmp.setNumThreads(threads);
            }
        }
        active = threads;
    }
    ~ModelThreads() {
        if (active <= 0)
            return;
        if (savedTorch != active)
            at::set_num_threads(savedTorch);
        if (system != nullptr && savedSystem != active)
            system->setNumThreads(savedSystem);
    }
private:
    int active = 0, savedTorch = 0, savedSystem = 0;
    SystemOpenMP* system = nullptr;
};

} // namespace

void ReferenceCalcMLForceKernel::initialize(const System& system, const MLForce& force) {
    string origin = force.getFile().empty() ? "the force's stored model" : "'" + force.getFile() + "'";
    compiled.reset();
    if (TorchModel::isCompiledPackage(force.getModelData()))
        compiled = std::make_unique<TorchModel::CompiledModel>(force.getModelData(), origin);
    else
        module = TorchModel::load(force.getModelData(), origin);
    atoms = force.getAtoms();
    const map<string, string>& properties = force.getProperties();
    auto threads = properties.find("modelThreads");
    modelThreads = (threads != properties.end() ? stoi(threads->second) : (getPlatform().getName() == "CPU" ? 1 : 0));
    periodic = force.usesPeriodicBoundaryConditions();
    // A compiled package returns (energy, forces): no autograd at run time.
    outputsForces = force.getOutputsForces() || compiled != nullptr;
    useDouble = force.getUsesDoublePrecision();
    modelInputs.initialize(system, force, torch::TensorOptions().dtype(useDouble ? torch::kFloat64 : torch::kFloat32), outputsForces,
                           compiled == nullptr);
    embedding = force.usesEmbedding();
    envAtoms.clear();
    if (embedding) {
        cutoff = force.getEmbeddingCutoff();
        charges = force.getEmbeddingCharges();
        search.initialize(modelInputs.getCandidates(), cutoff);
        modelInputs.allocateEnvironment(force.getEmbeddingCapacity());
    }
    if (compiled) {
        vector<string> derivativeNames;
        for (int j : modelInputs.getDerivatives())
            derivativeNames.push_back(modelInputs.getParameterName(j));
        compiled->check(modelInputs.getNames(), atoms.size(), useDouble, derivativeNames);
    }
    else
        TorchModel::checkSignature(module, modelInputs.getNames());
}

void ReferenceCalcMLForceKernel::gatherPositions(ContextImpl& context) {
    const vector<Vec3>& pos = *getData(context).positions;
    int numAtoms = atoms.size();
    Vec3 origin = pos[atoms[0]];
    regionPositions.resize(embedding ? numAtoms : 0);
    const Vec3* boxVectors = getData(context).periodicBoxVectors;
    auto write = [&](auto* out) {
        for (int i = 0; i < numAtoms; i++) {
            Vec3 r = pos[atoms[i]];
            if (periodic && i > 0) {
                // Image each atom next to the region's first atom (OpenMM's reduced triclinic box).
                Vec3 d = r - origin;
                d -= boxVectors[2] * round(d[2] / boxVectors[2][2]);
                d -= boxVectors[1] * round(d[1] / boxVectors[1][1]);
                d -= boxVectors[0] * round(d[0] / boxVectors[0][0]);
                r = origin + d;
            }
            for (int k = 0; k < 3; k++)
                out[3 * i + k] = r[k];
            if (embedding)
                regionPositions[i] = r;
        }
        if (periodic) {
            auto* b = static_cast<decltype(out)>(modelInputs.getBox().data_ptr());
            for (int i = 0; i < 3; i++)
                for (int k = 0; k < 3; k++)
                    b[3 * i + k] = boxVectors[i][k];
        }
    };
    if (useDouble)
        write(modelInputs.getPositions().data_ptr<double>());
    else
        write(modelInputs.getPositions().data_ptr<float>());
}

void ReferenceCalcMLForceKernel::gatherEnvironment(ContextImpl& context) {
    ReferencePlatform::PlatformData& data = getData(context);
    search.find(regionPositions, *data.positions, periodic ? data.periodicBoxVectors : nullptr, data.threads, envAtoms, envPositions);
    int count = envAtoms.size();
    int capacity = modelInputs.getEnvironmentCapacity();
    if (count > capacity || capacity == 0) {
        // 25% headroom, rounded up to a multiple of 64, and never empty (a compiled package takes a
        // capacity of at least 1).
        int grown = std::max(64, ((count + count / 4 + 63) / 64) * 64);
        if (capacity > 0)
            std::cerr << "openmm-hybrid: MLForce: the embedding environment has " << count << " atoms, more than the capacity of "
                      << capacity << "; growing it to " << grown << " (setEmbeddingCapacity() sets the initial size)." << std::endl;
        modelInputs.allocateEnvironment(grown);
        capacity = grown;
    }
    // Padding: zero charge, false mask, distinct points on a line far outside the cutoff.
    Vec3 center = search.getCenter();
    double far = search.getRadius() + 2 * cutoff + 1.0;
    auto write = [&](auto* pos, auto* q) {
        for (int i = 0; i < count; i++) {
            for (int k = 0; k < 3; k++)
                pos[3 * i + k] = envPositions[i][k];
            q[i] = charges[envAtoms[i]];
        }
        for (int i = count; i < capacity; i++) {
            pos[3 * i] = center[0] + far + 0.05 * (i - count);
            pos[3 * i + 1] = center[1];
            pos[3 * i + 2] = center[2];
            q[i] = 0;
        }
    };
    torch::NoGradGuard noGrad;
    const torch::Tensor& mmPositions = modelInputs.getEnvironmentPositions();
    const torch::Tensor& mmCharges = modelInputs.getEnvironmentCharges();
    if (useDouble)
        write(mmPositions.data_ptr<double>(), mmCharges.data_ptr<double>());
    else
        write(mmPositions.data_ptr<float>(), mmCharges.data_ptr<float>());
    bool* mask = modelInputs.getEnvironmentMask().data_ptr<bool>();
    for (int i = 0; i < capacity; i++)
        mask[i] = (i < count);
}

template <class T>
void ReferenceCalcMLForceKernel::addForces(const torch::Tensor& gradient, double sign, vector<Vec3>& forces) {
    const T* g = gradient.data_ptr<T>();
    int numAtoms = atoms.size();
    for (int i = 0; i < 3 * numAtoms; i++)
        if (!std::isfinite((double) g[i]))
            throw OpenMMException(TorchModel::nonFiniteForceMessage(i / 3, atoms[i / 3]));
    for (int i = 0; i < numAtoms; i++)
        for (int k = 0; k < 3; k++)
            forces[atoms[i]][k] += sign * g[3 * i + k];
}

double ReferenceCalcMLForceKernel::execute(ContextImpl& context, bool includeForces, bool includeEnergy) {
    gatherPositions(context);
    if (embedding)
        gatherEnvironment(context);
    for (int i = 0; i < modelInputs.getNumParameters(); i++) {
        torch::NoGradGuard noGrad;
        modelInputs.getParameter(i).fill_(context.getParameter(modelInputs.getParameterName(i)));
    }
    ModelThreads threadLimit(modelThreads, compiled != nullptr);  // until the gradient is computed
    torch::jit::IValue output;
    if (compiled) {
        compiledResults = modelInputs.forward(*compiled);
        output = c10::ivalue::Tuple::create(compiledResults.at(0), compiledResults.at(1));
    }
    else
        output = modelInputs.forward(module);
    torch::Tensor modelForces;
    torch::Tensor energy = TorchModel::splitOutput(output, outputsForces, atoms.size(), modelForces);
    double energyValue = energy.item<double>();
    if (!std::isfinite(energyValue))
        throw OpenMMException(TorchModel::nonFiniteEnergyMessage(energyValue));
    if (!includeForces)
        return energyValue;

    ReferencePlatform::PlatformData& data = getData(context);
    vector<Vec3>& forces = *data.forces;
    // A compiled package returns the forces and dE/dp itself: nothing is differentiated.
    ModelInputs::Gradients grads = compiled ? ModelInputs::Gradients() : modelInputs.computeGradients(energy);
    if (!outputsForces) {
        torch::Tensor g = grads.positions;
        if (g.defined()) {
            if (useDouble)
                addForces<double>(g.contiguous(), -1.0, forces);
            else
                addForces<float>(g.contiguous(), -1.0, forces);
        }
    }
    if (embedding) {
        // A compiled package returns the environment's forces after the region's; otherwise they
        // are minus the gradient.
        torch::Tensor g = compiled ? compiledResults.at(2) : grads.environment;
        double sign = compiled ? 1.0 : -1.0;
        if (g.defined()) {
            auto scatter = [&](const auto* gm) {
                int count = envAtoms.size();
                for (int i = 0; i < 3 * count; i++)
                    if (!std::isfinite((double) gm[i]))
                        throw OpenMMException(TorchModel::nonFiniteEnvironmentForceMessage(envAtoms[i / 3]));
                for (int i = 0; i < count; i++)
                    for (int k = 0; k < 3; k++)
                        forces[envAtoms[i]][k] += sign * gm[3 * i + k];
            };
            g = g.contiguous();
            if (g.scalar_type() == torch::kFloat64)
                scatter(g.data_ptr<double>());
            else
                scatter(g.to(torch::kFloat32).data_ptr<float>());
        }
    }
    if (outputsForces) {
        torch::Tensor f = modelForces.detach().contiguous();
        if (f.scalar_type() == torch::kFloat64)
            addForces<double>(f, 1.0, forces);
        else
            addForces<double>(f.to(torch::kFloat64), 1.0, forces);
    }
    const vector<int>& derivatives = modelInputs.getDerivatives();
    for (int k = 0; k < (int) derivatives.size(); k++) {
        // A compiled package returns dE/dp after the forces, in the order of the derivatives.
        torch::Tensor g = compiled ? compiledResults.at(2 + (embedding ? 1 : 0) + k) : grads.parameters[k];
        double value = g.defined() ? g.item<double>() : 0.0;
        (*data.energyParameterDerivatives)[modelInputs.getParameterName(derivatives[k])] += value;
    }
    return energyValue;
}
