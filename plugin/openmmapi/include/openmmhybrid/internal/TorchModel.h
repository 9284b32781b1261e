#ifndef OPENMMHYBRID_TORCHMODEL_H_
#define OPENMMHYBRID_TORCHMODEL_H_

/* Loading and checking models (TorchScript archives and AOTInductor packages), shared by the API (early checks when a force is
 * created) and the platform kernels.  Every failure becomes an OpenMMException whose message
 * says what is wrong and how to fix it. */

#include <torch/script.h>
#include <string>
#include <vector>

namespace OpenMMHybrid {
namespace TorchModel {

/**
 * Load a TorchScript archive from its bytes.
 *
 * @param data    the bytes written by torch.jit.save
 * @param origin  where they came from (a file name or "a stream"), for error messages
 */
torch::jit::Module load(const std::string& data, const std::string& origin);

/**
 * Check that forward() accepts exactly the inputs the force passes.
 *
 * @param inputNames  the names of the inputs, e.g. {"positions", "box", "lambda"}
 */
void checkSignature(const torch::jit::Module& module, const std::vector<std::string>& inputNames);

/** The first line of an exception's message (c10::Error appends a C++ backtrace users do not need). */
std::string firstLine(const std::string& message);

/**
 * Check what forward() returned and split it into the energy and, with outputsForces, the forces.
 * Every platform calls this, so the messages for a wrong output are the same everywhere.
 *
 * @param output        what forward() returned
 * @param outputsForces the force's setOutputsForces(): a tuple (energy, forces) is expected
 * @param numAtoms      the size of the ML region (the forces must be [numAtoms, 3])
 * @param forces        set to the forces when outputsForces, else left undefined
 * @return the energy, a floating point tensor with one element
 */
torch::Tensor splitOutput(const torch::jit::IValue& output, bool outputsForces, int numAtoms, torch::Tensor& forces);

/**
 * The message for a non-finite energy returned by the model (the same on every platform).
 *
 * @param energy  the energy the model returned
 */
std::string nonFiniteEnergyMessage(double energy);

/**
 * The message for a non-finite force the model gave on an atom of the ML region.
 *
 * @param index     the atom's index in the ML region
 * @param particle  its index in the System
 */
std::string nonFiniteForceMessage(int index, int particle);

/**
 * The message for a non-finite force the model gave on an atom of the embedding environment.
 *
 * @param particle  the atom's index in the System
 */
std::string nonFiniteEnvironmentForceMessage(int particle);

/**
 * Whether the bytes are an AOTInductor package (written by openmmhybrid.compileModel, i.e. by
 * torch._inductor.aoti_compile_and_package) rather than a TorchScript archive.
 */
bool isCompiledPackage(const std::string& data);

/**
 * A model compiled ahead of time with AOTInductor: the energy and the forces in one call of native
 * code, with no TorchScript interpreter and no autograd at run time.
 *
 * The package's metadata (written by openmmhybrid.compileModel) says what it was compiled for:
 *   openmmhybrid.inputs   comma-separated input names, e.g. "positions,box,lambda"
 *   openmmhybrid.atoms    the number of ML atoms (the shapes are fixed at compile time)
 *   openmmhybrid.dtype    float32 or float64
 *   openmmhybrid.derivatives  comma-separated global parameters whose dE/dp it returns (may be empty)
 * run() returns {energy (scalar), forces ([atoms, 3], kJ/mol/nm), dE/dp for each derivative}.
 */
class CompiledModel {
public:
    /**
     * Load a package from its bytes.
     *
     * @param data    the bytes of the .pt2 file
     * @param origin  where they came from, for error messages
     */
    CompiledModel(const std::string& data, const std::string& origin);
    ~CompiledModel();
    /**
     * Check the package against what the force passes; throws an OpenMMException that says what to
     * change otherwise.
     */
    void check(const std::vector<std::string>& inputNames, int numAtoms, bool useDouble,
               const std::vector<std::string>& derivativeNames) const;
    /** Evaluate: returns {energy, forces, dE/dp...}. */
    std::vector<torch::Tensor> run(const std::vector<torch::Tensor>& inputs);
    const std::string& getOrigin() const {
        return origin;
    }
private:
    struct Impl;
    Impl* impl;
    std::string origin;
};

/** Check the bytes hold a usable model (TorchScript or compiled package); throws otherwise. */
void checkModelData(const std::string& data, const std::string& origin);

} // namespace TorchModel
} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_TORCHMODEL_H_*/
