#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/OpenMMException.h"
#include <sstream>

using namespace OpenMM;
using namespace std;

namespace OpenMMHybrid {
namespace TorchModel {

// The first line of a c10::Error is the message; the rest is a C++ backtrace users do not need.
static string firstLine(const string& s) {
    size_t end = s.find('\n');
    return end == string::npos ? s : s.substr(0, end);
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

} // namespace TorchModel
} // namespace OpenMMHybrid
