#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

using namespace OpenMM;
using namespace std;

namespace OpenMMHybrid {
namespace TorchModel {

string firstLine(const string& s) {
    size_t end = s.find('\n');
    return end == string::npos ? s : s.substr(0, end);
}

torch::Tensor splitOutput(const torch::jit::IValue& output, bool outputsForces, int numAtoms, torch::Tensor& forces) {
    torch::Tensor energy;
    if (outputsForces) {
        if (!output.isTuple() || output.toTupleRef().elements().size() != 2 || !output.toTupleRef().elements()[0].isTensor() ||
                !output.toTupleRef().elements()[1].isTensor())
            throw OpenMMException("MLForce: setOutputsForces(True) is set, so the model must return a tuple (energy, forces) of two "
                                  "tensors, but it returned " + output.tagKind() + ". Return both, or call setOutputsForces(False).");
        energy = output.toTupleRef().elements()[0].toTensor();
        forces = output.toTupleRef().elements()[1].toTensor();
        if (forces.dim() != 2 || forces.size(0) != (int64_t) numAtoms || forces.size(1) != 3 || !forces.is_floating_point())
            throw OpenMMException("MLForce: the forces the model returned have shape " + c10::str(forces.sizes()) + " and dtype " +
                                  string(c10::toString(forces.scalar_type())) + "; expected a floating point tensor of shape [" +
                                  to_string(numAtoms) + ", 3] (kJ/mol/nm).");
    }
    else {
        if (!output.isTensor())
            throw OpenMMException("MLForce: the model must return the energy as a tensor, but it returned " + output.tagKind() +
                                  (output.isTuple() ? ". If it returns (energy, forces), call setOutputsForces(True)." : "."));
        energy = output.toTensor();
    }
    if (energy.numel() != 1 || !energy.is_floating_point())
        throw OpenMMException("MLForce: the model must return a single floating point energy (kJ/mol), but it returned a tensor of shape " +
                              c10::str(energy.sizes()) + " and dtype " + string(c10::toString(energy.scalar_type())) +
                              ". Sum per-atom energies inside the model.");
    return energy;
}

string nonFiniteEnergyMessage(double energy) {
    return "MLForce: the model returned a non-finite energy (" + to_string(energy) +
           "). Check the positions of the ML region (overlapping atoms, an exploded simulation) and that the model covers its elements.";
}

string nonFiniteForceMessage(int index, int particle) {
    return "MLForce: the model gave a non-finite force on ML atom " + to_string(index) + " (particle " + to_string(particle) +
           "). Check the positions of the ML region (overlapping atoms?) and the model.";
}

string nonFiniteEnvironmentForceMessage(int particle) {
    return "MLForce: the model gave a non-finite force on environment atom " + to_string(particle) +
           ". Check the embedding model (a 1/r at r = 0?) and the positions.";
}

torch::jit::Module load(const string& data, const string& origin) {
    if (data.empty())
        throw OpenMMException("MLForce: " + origin + " holds no data; expected a TorchScript archive written by torch.jit.save().");
    torch::jit::Module module;
    try {
        istringstream in(data);
        module = torch::jit::load(in, torch::kCPU);
    }
    catch (const std::exception& e) {
        throw OpenMMException("MLForce: could not load a TorchScript model from " + origin + ": " + firstLine(e.what()) +
                              ". The model must be saved with torch.jit.save(torch.jit.script(model), path).");
    }
    if (!module.find_method("forward"))
        throw OpenMMException("MLForce: the model loaded from " + origin + " has no forward() method.");
    module.eval();
    return module;
}

void checkSignature(const torch::jit::Module& module, const vector<string>& inputNames) {
    const c10::FunctionSchema& schema = module.get_method("forward").function().getSchema();
    const auto& args = schema.arguments();
    // args[0] is self.
    int numArgs = (int) args.size() - 1;
    int numRequired = 0;
    for (int i = 1; i < (int) args.size(); i++)
        if (!args[i].default_value().has_value())
            numRequired = i;
    int numPassed = inputNames.size();
    if (numPassed < numRequired || numPassed > numArgs) {
        stringstream msg;
        msg << "MLForce: the model's forward(";
        for (int i = 1; i < (int) args.size(); i++)
            msg << (i > 1 ? ", " : "") << args[i].name();
        msg << ") takes " << numArgs << " argument" << (numArgs == 1 ? "" : "s") << ", but the force passes " << numPassed << ": (";
        for (int i = 0; i < numPassed; i++)
            msg << (i > 0 ? ", " : "") << inputNames[i];
        msg << "). Positions come first, then the box if setUsesPeriodicBoundaryConditions(True), then mm_positions, "
               "mm_charges and mm_mask if setEmbedding() is on, then one scalar per global parameter (addGlobalParameter). "
               "Change the force's settings or the model so they agree.";
        throw OpenMMException(msg.str());
    }
    for (int i = 0; i < numPassed; i++) {
        c10::TypePtr type = args[i + 1].type();
        if (type->kind() == c10::TypeKind::OptionalType)
            type = type->castRaw<c10::OptionalType>()->getElementType();
        if (type->kind() != c10::TypeKind::TensorType && type->kind() != c10::TypeKind::AnyType) {
            throw OpenMMException("MLForce: argument '" + args[i + 1].name() + "' of the model's forward() has type " + type->str() +
                                  ", but the force passes a Tensor (" + inputNames[i] + "). Annotate it as torch.Tensor (or Optional[torch.Tensor]).");
        }
    }
}

bool isCompiledPackage(const string& data) {
    // A zip archive (local file header "PK\3\4") whose entries include AOTInductor's folder.
    return data.size() > 4 && data.compare(0, 4, "PK\x03\x04") == 0 && data.find("/data/aotinductor/") != string::npos;
}

struct CompiledModel::Impl {
    std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    unordered_map<string, string> metadata;
};

CompiledModel::CompiledModel(const string& data, const string& origin) : impl(new Impl()), origin(origin) {
    // The loader reads a file: write the bytes to a private temporary file, load, remove it.
    string pattern = (std::filesystem::temp_directory_path() / "openmmhybrid-XXXXXX.pt2").string();
    vector<char> name(pattern.begin(), pattern.end());
    name.push_back('\0');
    int fd = mkstemps(name.data(), 4);
    if (fd < 0) {
        delete impl;
        throw OpenMMException("MLForce: could not create a temporary file to load the compiled model from " + origin +
                              " (is the temporary folder writable? set TMPDIR).");
    }
    close(fd);
    string path(name.data());
    {
        ofstream out(path, ios::binary);
        out.write(data.data(), data.size());
    }
    try {
        impl->loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(path);
        impl->metadata = impl->loader->get_metadata();
    }
    catch (const std::exception& e) {
        std::remove(path.c_str());
        delete impl;
        throw OpenMMException("MLForce: could not load the compiled model (AOTInductor package) from " + origin + ": " + firstLine(e.what()) +
                              ". A package runs only with the torch version and on the kind of CPU it was compiled for; "
                              "compile it again with openmmhybrid.compileModel() on this machine.");
    }
    std::remove(path.c_str());
    if (impl->metadata.count("openmmhybrid.inputs") == 0) {
        delete impl;
        throw OpenMMException("MLForce: the AOTInductor package from " + origin + " was not written by openmmhybrid.compileModel() "
                              "(it has no openmmhybrid.inputs metadata), so it is not known to return (energy, forces). "
                              "Compile the model with openmmhybrid.compileModel().");
    }
    if (impl->metadata.count("AOTI_DEVICE_KEY") && impl->metadata["AOTI_DEVICE_KEY"] != "cpu") {
        string device = impl->metadata["AOTI_DEVICE_KEY"];
        delete impl;
        throw OpenMMException("MLForce: the compiled model from " + origin + " was compiled for device '" + device +
                              "'; this version runs compiled models on the CPU (Reference and CPU platforms) only.");
    }
}

CompiledModel::~CompiledModel() {
    delete impl;
}

void CompiledModel::check(const vector<string>& inputNames, int numAtoms, bool useDouble, const vector<string>& derivativeNames) const {
    string expected;
    for (const string& name : inputNames)
        expected += (expected.empty() ? "" : ",") + name;
    const string& compiled = impl->metadata.at("openmmhybrid.inputs");
    if (compiled != expected)
        throw OpenMMException("MLForce: the compiled model from " + origin + " takes (" + compiled + "), but the force passes (" + expected +
                              "). Compile it with the same periodicity and global parameters as the force "
                              "(openmmhybrid.compileModel(..., periodic=..., parameters=[...], embedding=...)).");
    string wantedDerivatives;
    for (const string& name : derivativeNames)
        wantedDerivatives += (wantedDerivatives.empty() ? "" : ",") + name;
    auto derivatives = impl->metadata.find("openmmhybrid.derivatives");
    string compiledDerivatives = (derivatives == impl->metadata.end() ? "" : derivatives->second);
    if (compiledDerivatives != wantedDerivatives)
        throw OpenMMException("MLForce: the compiled model from " + origin + " returns the energy derivatives with respect to (" +
                              compiledDerivatives + "), but the force asks for (" + wantedDerivatives +
                              "). Compile it with openmmhybrid.compileModel(..., derivatives=[...]) naming the parameters of "
                              "addEnergyParameterDerivative(), in the same order.");
    auto atoms = impl->metadata.find("openmmhybrid.atoms");
    if (atoms != impl->metadata.end() && atoms->second != to_string(numAtoms))
        throw OpenMMException("MLForce: the compiled model from " + origin + " was compiled for " + atoms->second +
                              " ML atoms, but the force has " + to_string(numAtoms) + ". Shapes are fixed when a model is compiled: "
                              "compile it again for this region.");
    auto dtype = impl->metadata.find("openmmhybrid.dtype");
    string wanted = useDouble ? "float64" : "float32";
    if (dtype != impl->metadata.end() && dtype->second != wanted)
        throw OpenMMException("MLForce: the compiled model from " + origin + " takes " + dtype->second + " inputs, but the force passes " +
                              wanted + ". Call setUsesDoublePrecision(" + (dtype->second == "float64" ? "True" : "False") +
                              ") or compile the model for " + wanted + ".");
}

vector<torch::Tensor> CompiledModel::run(const vector<torch::Tensor>& inputs) {
    return impl->loader->run(inputs);
}

void checkModelData(const string& data, const string& origin) {
    if (isCompiledPackage(data))
        CompiledModel(data, origin);
    else
        load(data, origin);
}

} // namespace TorchModel
} // namespace OpenMMHybrid
