#include "ReferenceMLForceKernel.h"
#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include "openmm/reference/ReferencePlatform.h"
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <dlfcn.h>
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

using TorchModel::firstLine;

void ReferenceCalcMLForceKernel::initialize(const System& system, const MLForce& force) {
    string origin = force.getFile().empty() ? "the force's stored model" : "'" + force.getFile() + "'";
    compiled.reset();
    if (TorchModel::isCompiledPackage(force.getModelData())) {
        compiled = std::make_unique<TorchModel::CompiledModel>(force.getModelData(), origin);
        if (force.usesEmbedding())
            throw OpenMMException("MLForce: electrostatic embedding is not available with compiled models yet; use the TorchScript model.");
    }
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
    torch::TensorOptions options = torch::TensorOptions().dtype(useDouble ? torch::kFloat64 : torch::kFloat32);
    int numAtoms = atoms.size();
    vector<string> inputNames = {"positions"};
    positions = torch::zeros({numAtoms, 3}, options.requires_grad(!outputsForces));
    inputs = {positions};
    if (periodic) {
        box = torch::zeros({3, 3}, options);
        inputs.push_back(box);
        inputNames.push_back("box");
    }
    embedding = force.usesEmbedding();
    envAtoms.clear();
    capacity = 0;
    if (embedding) {
        cutoff = force.getEmbeddingCutoff();
        charges = force.getEmbeddingCharges();
        vector<bool> isML(system.getNumParticles(), false);
        for (int a : atoms)
            isML[a] = true;
        vector<int> candidates;
        for (int i = 0; i < system.getNumParticles(); i++)
            if (!isML[i] && charges[i] != 0.0)
                candidates.push_back(i);
        search.initialize(candidates, cutoff);
        mmInput = inputs.size();
        for (const char* name : {"mm_positions", "mm_charges", "mm_mask"}) {
            inputs.push_back(torch::Tensor());
            inputNames.push_back(name);
        }
        allocateEnvironment(force.getEmbeddingCapacity());
    }
    parameters.clear();
    parameterNames.clear();
    derivativeIndex.clear();
    for (int i = 0; i < force.getNumGlobalParameters(); i++) {
        parameterNames.push_back(force.getGlobalParameterName(i));
        parameters.push_back(torch::zeros({}, options));
        inputs.push_back(parameters.back());
        inputNames.push_back(parameterNames.back());
    }
    for (int i = 0; i < force.getNumEnergyParameterDerivatives(); i++) {
        const string& name = force.getEnergyParameterDerivativeName(i);
        for (int j = 0; j < (int) parameterNames.size(); j++)
            if (parameterNames[j] == name) {
                derivativeIndex.push_back(j);
                parameters[j].requires_grad_(true);
            }
    }
    gradInputs.clear();
    if (!outputsForces)
        gradInputs.push_back(positions);
    if (embedding)
        gradInputs.push_back(mmPositions);
    for (int j : derivativeIndex)
        gradInputs.push_back(parameters[j]);
    if (compiled) {
        vector<string> derivativeNames;
        for (int j : derivativeIndex)
            derivativeNames.push_back(parameterNames[j]);
        compiled->check(inputNames, numAtoms, useDouble, derivativeNames);
        gradInputs.clear();  // the package returns the derivatives itself
        compiledInputs.clear();
        for (auto& input : inputs)
            compiledInputs.push_back(input.toTensor());
    }
    else
        TorchModel::checkSignature(module, inputNames);
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
            auto* b = static_cast<decltype(out)>(box.data_ptr());
            for (int i = 0; i < 3; i++)
                for (int k = 0; k < 3; k++)
                    b[3 * i + k] = boxVectors[i][k];
        }
    };
    if (useDouble)
        write(positions.data_ptr<double>());
    else
        write(positions.data_ptr<float>());
}

void ReferenceCalcMLForceKernel::allocateEnvironment(int newCapacity) {
    torch::TensorOptions options = torch::TensorOptions().dtype(useDouble ? torch::kFloat64 : torch::kFloat32);
    capacity = newCapacity;
    mmPositions = torch::zeros({capacity, 3}, options.requires_grad(true));
    mmCharges = torch::zeros({capacity}, options);
    mmMask = torch::zeros({capacity}, torch::TensorOptions().dtype(torch::kBool));
    inputs[mmInput] = mmPositions;
    inputs[mmInput + 1] = mmCharges;
    inputs[mmInput + 2] = mmMask;
    if (!gradInputs.empty())
        gradInputs[outputsForces ? 0 : 1] = mmPositions;
}

void ReferenceCalcMLForceKernel::gatherEnvironment(ContextImpl& context) {
    ReferencePlatform::PlatformData& data = getData(context);
    search.find(regionPositions, *data.positions, periodic ? data.periodicBoxVectors : nullptr, data.threads, envAtoms, envPositions);
    int count = envAtoms.size();
    if (count > capacity) {
        // 25% headroom, rounded up to a multiple of 64.
        int grown = ((count + count / 4 + 63) / 64) * 64;
        if (capacity > 0)
            std::cerr << "openmm-hybrid: MLForce: the embedding environment has " << count << " atoms, more than the capacity of "
                      << capacity << "; growing it to " << grown << " (setEmbeddingCapacity() sets the initial size)." << std::endl;
        allocateEnvironment(grown);
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
    if (useDouble)
        write(mmPositions.data_ptr<double>(), mmCharges.data_ptr<double>());
    else
        write(mmPositions.data_ptr<float>(), mmCharges.data_ptr<float>());
    bool* mask = mmMask.data_ptr<bool>();
    for (int i = 0; i < capacity; i++)
        mask[i] = (i < count);
}

template <class T>
void ReferenceCalcMLForceKernel::addForces(const torch::Tensor& gradient, double sign, vector<Vec3>& forces) {
    const T* g = gradient.data_ptr<T>();
    int numAtoms = atoms.size();
    for (int i = 0; i < 3 * numAtoms; i++)
        if (!std::isfinite((double) g[i]))
            throw OpenMMException("MLForce: the model gave a non-finite force on ML atom " + to_string(i / 3) + " (particle " +
                                  to_string(atoms[i / 3]) + "). Check the positions of the ML region (overlapping atoms?) and the model.");
    for (int i = 0; i < numAtoms; i++)
        for (int k = 0; k < 3; k++)
            forces[atoms[i]][k] += sign * g[3 * i + k];
}

double ReferenceCalcMLForceKernel::execute(ContextImpl& context, bool includeForces, bool includeEnergy) {
    gatherPositions(context);
    if (embedding)
        gatherEnvironment(context);
    for (int i = 0; i < (int) parameters.size(); i++) {
        torch::NoGradGuard noGrad;
        parameters[i].fill_(context.getParameter(parameterNames[i]));
    }
    ModelThreads threadLimit(modelThreads, compiled != nullptr);  // until the gradient is computed
    torch::jit::IValue output;
    try {
        if (compiled) {
            compiledResults = compiled->run(compiledInputs);
            output = c10::ivalue::Tuple::create(compiledResults.at(0), compiledResults.at(1));
        }
        else
            output = module.forward(inputs);
    }
    catch (const std::exception& e) {
        throw OpenMMException(string("MLForce: the model's forward() failed: ") + firstLine(e.what()) +
                              (useDouble ? "" : " (The model receives float32 inputs; if it expects float64, call setUsesDoublePrecision(True).)"));
    }
    torch::Tensor modelForces;
    torch::Tensor energy = TorchModel::splitOutput(output, outputsForces, atoms.size(), modelForces);
    double energyValue = energy.item<double>();
    if (!std::isfinite(energyValue))
        throw OpenMMException("MLForce: the model returned a non-finite energy (" + to_string(energyValue) +
                              "). Check the positions of the ML region (overlapping atoms, an exploded simulation) and that the model covers its elements.");
    if (!includeForces)
        return energyValue;

    ReferencePlatform::PlatformData& data = getData(context);
    vector<Vec3>& forces = *data.forces;
    vector<torch::Tensor> grads(gradInputs.size());
    if (!gradInputs.empty() && energy.requires_grad()) {
        try {
            grads = torch::autograd::grad({energy.dim() == 0 ? energy : energy.sum()}, gradInputs, {}, false, false, true);
        }
        catch (const std::exception& e) {
            throw OpenMMException(string("MLForce: computing the gradient of the model's energy failed: ") + firstLine(e.what()));
        }
    }
    int next = 0;
    if (!outputsForces) {
        torch::Tensor g = grads[next++];
        if (g.defined()) {
            if (useDouble)
                addForces<double>(g.contiguous(), -1.0, forces);
            else
                addForces<float>(g.contiguous(), -1.0, forces);
        }
    }
    if (embedding) {
        torch::Tensor g = grads[next++];
        if (g.defined()) {
            auto scatter = [&](const auto* gm) {
                int count = envAtoms.size();
                for (int i = 0; i < 3 * count; i++)
                    if (!std::isfinite((double) gm[i]))
                        throw OpenMMException("MLForce: the model gave a non-finite force on environment atom " + to_string(envAtoms[i / 3]) +
                                              ". Check the embedding model (a 1/r at r = 0?) and the positions.");
                for (int i = 0; i < count; i++)
                    for (int k = 0; k < 3; k++)
                        forces[envAtoms[i]][k] -= gm[3 * i + k];
            };
            g = g.contiguous();
            if (useDouble)
                scatter(g.data_ptr<double>());
            else
                scatter(g.data_ptr<float>());
        }
    }
    if (outputsForces) {
        torch::Tensor f = modelForces.detach().contiguous();
        if (f.scalar_type() == torch::kFloat64)
            addForces<double>(f, 1.0, forces);
        else
            addForces<double>(f.to(torch::kFloat64), 1.0, forces);
    }
    for (int k = 0; k < (int) derivativeIndex.size(); k++) {
        // A compiled package returns dE/dp after the forces, in the order of the derivatives.
        torch::Tensor g = compiled ? compiledResults.at(2 + k) : grads[next++];
        double value = g.defined() ? g.item<double>() : 0.0;
        (*data.energyParameterDerivatives)[parameterNames[derivativeIndex[k]]] += value;
    }
    return energyValue;
}
