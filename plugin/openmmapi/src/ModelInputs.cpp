#include "openmmhybrid/internal/ModelInputs.h"
#include "openmm/OpenMMException.h"
#include <torch/autograd.h>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;
using TorchModel::firstLine;

void ModelInputs::initialize(const System& system, const MLForce& force, const torch::TensorOptions& options, bool outputsForces,
                             bool differentiates) {
    this->options = options;
    this->outputsForces = outputsForces;
    this->differentiates = differentiates;
    useDouble = (torch::typeMetaToScalarType(options.dtype()) == torch::kFloat64);
    int numAtoms = force.getAtoms().size();
    names = {"positions"};
    positions = torch::zeros({numAtoms, 3}, options.requires_grad(!outputsForces));
    inputs = {positions};
    box = torch::Tensor();
    if (force.usesPeriodicBoundaryConditions()) {
        box = torch::zeros({3, 3}, options);
        inputs.push_back(box);
        names.push_back("box");
    }
    embedding = force.usesEmbedding();
    candidates.clear();
    capacity = 0;
    mmPositions = mmCharges = mmMask = torch::Tensor();
    if (embedding) {
        const vector<double>& charges = force.getEmbeddingCharges();
        vector<bool> isML(system.getNumParticles(), false);
        for (int a : force.getAtoms())
            isML[a] = true;
        for (int i = 0; i < system.getNumParticles(); i++)
            if (!isML[i] && charges[i] != 0.0)
                candidates.push_back(i);
        mmInput = inputs.size();
        for (const char* name : {"mm_positions", "mm_charges", "mm_mask"}) {
            inputs.push_back(torch::Tensor());
            names.push_back(name);
        }
    }
    parameters.clear();
    parameterNames.clear();
    derivatives.clear();
    for (int i = 0; i < force.getNumGlobalParameters(); i++) {
        parameterNames.push_back(force.getGlobalParameterName(i));
        parameters.push_back(torch::zeros({}, options));
        inputs.push_back(parameters.back());
        names.push_back(parameterNames.back());
    }
    for (int i = 0; i < force.getNumEnergyParameterDerivatives(); i++) {
        const string& name = force.getEnergyParameterDerivativeName(i);
        for (int j = 0; j < (int) parameterNames.size(); j++)
            if (parameterNames[j] == name) {
                derivatives.push_back(j);
                parameters[j].requires_grad_(differentiates);
            }
    }
    collect();
}

void ModelInputs::allocateEnvironment(int capacity) {
    this->capacity = capacity;
    mmPositions = torch::zeros({capacity, 3}, options.requires_grad(differentiates));
    mmCharges = torch::zeros({capacity}, options);
    mmMask = torch::zeros({capacity}, options.dtype(torch::kBool));
    inputs[mmInput] = mmPositions;
    inputs[mmInput + 1] = mmCharges;
    inputs[mmInput + 2] = mmMask;
    collect();
}

void ModelInputs::collect() {
    tensorInputs.clear();
    for (const torch::jit::IValue& input : inputs)
        tensorInputs.push_back(input.toTensor());
    gradInputs.clear();
    if (!differentiates)
        return;
    if (!outputsForces)
        gradInputs.push_back(positions);
    if (embedding)
        gradInputs.push_back(mmPositions);
    for (int j : derivatives)
        gradInputs.push_back(parameters[j]);
}

static OpenMMException forwardFailed(const std::exception& e, bool useDouble) {
    return OpenMMException(string("MLForce: the model's forward() failed: ") + firstLine(e.what()) +
                           (useDouble ? "" : " (The model receives float32 inputs; if it expects float64, call setUsesDoublePrecision(True).)"));
}

torch::jit::IValue ModelInputs::forward(torch::jit::Module& module) const {
    try {
        return module.forward(inputs);
    }
    catch (const std::exception& e) {
        throw forwardFailed(e, useDouble);
    }
}

vector<torch::Tensor> ModelInputs::forward(TorchModel::CompiledModel& model) const {
    try {
        vector<torch::Tensor> results = model.run(tensorInputs);
        results.at(embedding ? 2 : 1);  // {energy, forces[, mm_forces], dE/dp...}: a shorter result is reported as a failure of the model
        return results;
    }
    catch (const std::exception& e) {
        throw forwardFailed(e, useDouble);
    }
}

ModelInputs::Gradients ModelInputs::computeGradients(const torch::Tensor& energy) const {
    vector<torch::Tensor> grads(gradInputs.size());
    if (!gradInputs.empty() && energy.requires_grad()) {
        try {
            grads = torch::autograd::grad({energy.dim() == 0 ? energy : energy.sum()}, gradInputs, {}, false, false, true);
        }
        catch (const std::exception& e) {
            throw OpenMMException(string("MLForce: computing the gradient of the model's energy failed: ") + firstLine(e.what()));
        }
    }
    Gradients gradients;
    int next = 0;
    if (!outputsForces)
        gradients.positions = grads[next++];
    if (embedding)
        gradients.environment = grads[next++];
    for (int k = 0; k < (int) derivatives.size(); k++)
        gradients.parameters.push_back(grads[next++]);
    return gradients;
}
