#include "openmmhybrid/MLForce.h"
#include "openmmhybrid/internal/MLForceImpl.h"
#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

static string readStream(istream& in) {
    return string(istreambuf_iterator<char>(in), istreambuf_iterator<char>());
}

MLForce::MLForce() : periodic(false), outputsForces(false), useDouble(false) {
}

MLForce::MLForce(const string& file, const vector<int>& atoms) : file(file), periodic(false), outputsForces(false), useDouble(false) {
    ifstream in(file, ios::binary);
    if (!in.is_open())
        throw OpenMMException("MLForce: cannot open the model file '" + file +
                              "'. Check the path; the file must be a TorchScript archive written by torch.jit.save() or a package written by "
                              "openmmhybrid.compileModel().");
    modelData = readStream(in);
    setAtoms(atoms);
    TorchModel::checkModelData(modelData, "the file '" + file + "'");
}

MLForce::MLForce(istream& model, const vector<int>& atoms) : periodic(false), outputsForces(false), useDouble(false) {
    modelData = readStream(model);
    setAtoms(atoms);
    TorchModel::checkModelData(modelData, "the stream");
}

const string& MLForce::getModelData() const {
    return modelData;
}

const string& MLForce::getFile() const {
    return file;
}

const vector<int>& MLForce::getAtoms() const {
    return atoms;
}

void MLForce::setAtoms(const vector<int>& newAtoms) {
    if (newAtoms.empty())
        throw OpenMMException("MLForce: the list of ML atoms is empty. Give the particle indices of the ML region.");
    set<int> seen;
    for (int i = 0; i < (int) newAtoms.size(); i++) {
        int a = newAtoms[i];
        if (a < 0)
            throw OpenMMException("MLForce: atom index " + to_string(a) + " (entry " + to_string(i) +
                                  " of the ML atom list) is negative. Particle indices start at 0.");
        if (!seen.insert(a).second)
            throw OpenMMException("MLForce: atom index " + to_string(a) + " appears more than once in the ML atom list (entry " +
                                  to_string(i) + "). Each particle may be in the ML region only once.");
    }
    atoms = newAtoms;
}

void MLForce::setUsesPeriodicBoundaryConditions(bool p) {
    periodic = p;
}

bool MLForce::usesPeriodicBoundaryConditions() const {
    return periodic;
}

void MLForce::setOutputsForces(bool o) {
    outputsForces = o;
}

bool MLForce::getOutputsForces() const {
    return outputsForces;
}

void MLForce::setUsesDoublePrecision(bool d) {
    useDouble = d;
}

bool MLForce::getUsesDoublePrecision() const {
    return useDouble;
}

int MLForce::getNumGlobalParameters() const {
    return globalParameters.size();
}

static void checkIndex(int index, int size, const char* what) {
    if (index < 0 || index >= size)
        throw OpenMMException(string("MLForce: ") + what + " index " + to_string(index) + " is out of range (there are " +
                              to_string(size) + ").");
}

int MLForce::addGlobalParameter(const string& name, double defaultValue) {
    if (name.empty())
        throw OpenMMException("MLForce: a global parameter needs a non-empty name.");
    for (auto& p : globalParameters)
        if (p.name == name)
            throw OpenMMException("MLForce: the global parameter '" + name + "' has already been added.");
    globalParameters.push_back({name, defaultValue});
    return globalParameters.size() - 1;
}

const string& MLForce::getGlobalParameterName(int index) const {
    checkIndex(index, globalParameters.size(), "global parameter");
    return globalParameters[index].name;
}

void MLForce::setGlobalParameterName(int index, const string& name) {
    checkIndex(index, globalParameters.size(), "global parameter");
    globalParameters[index].name = name;
}

double MLForce::getGlobalParameterDefaultValue(int index) const {
    checkIndex(index, globalParameters.size(), "global parameter");
    return globalParameters[index].defaultValue;
}

void MLForce::setGlobalParameterDefaultValue(int index, double defaultValue) {
    checkIndex(index, globalParameters.size(), "global parameter");
    globalParameters[index].defaultValue = defaultValue;
}

void MLForce::addEnergyParameterDerivative(const string& name) {
    bool found = false;
    for (auto& p : globalParameters)
        found |= (p.name == name);
    if (!found)
        throw OpenMMException("MLForce: cannot add an energy derivative for '" + name +
                              "': it is not a global parameter of this force. Call addGlobalParameter() first.");
    if (find(energyParameterDerivatives.begin(), energyParameterDerivatives.end(), name) != energyParameterDerivatives.end())
        throw OpenMMException("MLForce: the energy derivative for '" + name + "' has already been requested.");
    energyParameterDerivatives.push_back(name);
}

int MLForce::getNumEnergyParameterDerivatives() const {
    return energyParameterDerivatives.size();
}

const string& MLForce::getEnergyParameterDerivativeName(int index) const {
    checkIndex(index, energyParameterDerivatives.size(), "energy parameter derivative");
    return energyParameterDerivatives[index];
}

vector<string> MLForce::getSupportedProperties() {
    return {"useCUDAGraphs", "CUDAGraphWarmupSteps", "modelThreads"};
}

void MLForce::setProperty(const string& name, const string& value) {
    vector<string> known = getSupportedProperties();
    if (find(known.begin(), known.end(), name) == known.end()) {
        string list;
        for (auto& k : known)
            list += (list.empty() ? "" : ", ") + k;
        throw OpenMMException("MLForce: unknown property '" + name + "'. Known properties: " + list + ".");
    }
    if (name == "useCUDAGraphs" && value != "true" && value != "false")
        throw OpenMMException("MLForce: the property useCUDAGraphs must be 'true' or 'false', not '" + value + "'.");
    if (name == "CUDAGraphWarmupSteps" || name == "modelThreads") {
        bool ok = !value.empty() && value.size() < 7 && all_of(value.begin(), value.end(), ::isdigit);
        if (!ok)
            throw OpenMMException("MLForce: the property " + name + " must be a non-negative integer, not '" + value + "'.");
    }
    properties[name] = value;
}

const map<string, string>& MLForce::getProperties() const {
    return properties;
}

void MLForce::setEmbedding(double cutoff, const vector<double>& charges) {
    if (!(cutoff > 0.0) || !std::isfinite(cutoff))
        throw OpenMMException("MLForce: the embedding cutoff must be a positive distance in nm, not " + to_string(cutoff) +
                              ". Typical values are 0.8 to 1.2 nm.");
    if (charges.empty())
        throw OpenMMException("MLForce: setEmbedding() needs one charge per particle of the System (for example the charges of "
                              "its NonbondedForce), but the list is empty.");
    for (int i = 0; i < (int) charges.size(); i++)
        if (!std::isfinite(charges[i]))
            throw OpenMMException("MLForce: the embedding charge of particle " + to_string(i) + " is not finite.");
    embeddingCutoff = cutoff;
    embeddingCharges = charges;
}

bool MLForce::usesEmbedding() const {
    return embeddingCutoff > 0.0;
}

double MLForce::getEmbeddingCutoff() const {
    return embeddingCutoff;
}

const vector<double>& MLForce::getEmbeddingCharges() const {
    return embeddingCharges;
}

void MLForce::setEmbeddingCapacity(int capacity) {
    if (capacity < 0)
        throw OpenMMException("MLForce: the embedding capacity must be 0 (automatic) or positive, not " + to_string(capacity) + ".");
    embeddingCapacity = capacity;
}

int MLForce::getEmbeddingCapacity() const {
    return embeddingCapacity;
}

int MLForce::getNumEnvironmentAtoms(const Context& context) const {
    return dynamic_cast<const MLForceImpl&>(getImplInContext(context)).getNumEnvironmentAtoms();
}

int MLForce::getEnvironmentCapacity(const Context& context) const {
    return dynamic_cast<const MLForceImpl&>(getImplInContext(context)).getEnvironmentCapacity();
}

long long MLForce::getNumModelCalls(const Context& context) const {
    return dynamic_cast<const MLForceImpl&>(getImplInContext(context)).getNumModelCalls();
}

ForceImpl* MLForce::createImpl() const {
    return new MLForceImpl(*this);
}
