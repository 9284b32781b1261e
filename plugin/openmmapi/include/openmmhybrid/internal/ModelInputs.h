#ifndef OPENMMHYBRID_MODELINPUTS_H_
#define OPENMMHYBRID_MODELINPUTS_H_

/* What an MLForce passes to its model and what it differentiates, built in one place for every
 * platform's CalcMLForceKernel so that the order of the inputs, the tensors autograd differentiates
 * and the messages for a failed evaluation cannot drift apart.  The platform fills the tensors
 * (positions, box, parameter values, environment) in place and adds the gradients as forces. */

#include "openmmhybrid/MLForce.h"
#include "openmmhybrid/internal/TorchModel.h"
#include "openmm/System.h"
#include <torch/script.h>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/**
 * The inputs of an MLForce's model, in the order forward() takes them:
 *
 *   positions                        [atoms, 3], the ML region (nm)
 *   box                              [3, 3], if usesPeriodicBoundaryConditions()
 *   mm_positions, mm_charges, mm_mask [capacity, 3], [capacity], [capacity] (bool), if usesEmbedding()
 *   one scalar per global parameter  in the order of addGlobalParameter()
 *
 * The tensors are allocated once (the environment's when its capacity is set) and filled in place
 * by the platform, so a captured CUDA graph can read them.  What autograd differentiates is the
 * positions (unless the model returns the forces), the environment's positions (with embedding)
 * and the parameters named by addEnergyParameterDerivative(), in that order.
 */
class ModelInputs {
public:
    /**
     * The gradients of the energy with respect to the inputs, as computeGradients() returns them.
     * A tensor is undefined where nothing was differentiated or the energy does not depend on it.
     */
    struct Gradients {
        /** dE/d positions, [atoms, 3] (undefined when the model returns the forces) */
        torch::Tensor positions;
        /** dE/d mm_positions, [capacity, 3] (undefined without embedding) */
        torch::Tensor environment;
        /** dE/dp, one scalar per requested derivative, in the order of getDerivatives() */
        std::vector<torch::Tensor> parameters;
    };
    /**
     * Build the inputs for a force.  The environment's tensors stay undefined until
     * allocateEnvironment() is called.
     *
     * @param system         the System the force belongs to
     * @param force          the force
     * @param options        the device and floating point type (float32, or float64 with
     *                       setUsesDoublePrecision(True)) of the inputs
     * @param outputsForces  the model returns the forces, so the positions are not differentiated
     * @param differentiates false for a compiled model, which returns every force and derivative
     *                       itself: no input requires a gradient
     */
    void initialize(const OpenMM::System& system, const MLForce& force, const torch::TensorOptions& options, bool outputsForces,
                    bool differentiates = true);
    /**
     * Allocate the environment's tensors for electrostatic embedding (zero charges, a false mask)
     * and put them in the inputs.  Tensors allocated before are released, so whatever holds them
     * must be recreated.
     *
     * @param capacity  the number of MM atoms the tensors hold
     */
    void allocateEnvironment(int capacity);
    /**
     * The names of the inputs ("positions", "box", "mm_positions", "mm_charges", "mm_mask", then the
     * global parameters), for TorchModel::checkSignature() and CompiledModel::check().
     */
    const std::vector<std::string>& getNames() const {
        return names;
    }
    /** The inputs, in the order forward() takes them. */
    const std::vector<torch::jit::IValue>& getInputs() const {
        return inputs;
    }
    /** The ML region's positions, [atoms, 3]. */
    const torch::Tensor& getPositions() const {
        return positions;
    }
    /** The periodic box vectors, [3, 3] (undefined unless the force is periodic). */
    const torch::Tensor& getBox() const {
        return box;
    }
    /** The number of global parameters. */
    int getNumParameters() const {
        return parameters.size();
    }
    /** The name of a global parameter. */
    const std::string& getParameterName(int index) const {
        return parameterNames[index];
    }
    /** The scalar tensor holding a global parameter's value. */
    const torch::Tensor& getParameter(int index) const {
        return parameters[index];
    }
    /** The indices of the parameters whose energy derivatives are requested, in the force's order. */
    const std::vector<int>& getDerivatives() const {
        return derivatives;
    }
    /**
     * The particles that can be in the embedding environment: those outside the ML region with a
     * nonzero charge, in increasing order (empty without embedding).
     */
    const std::vector<int>& getCandidates() const {
        return candidates;
    }
    /** The number of MM atoms the environment's tensors hold (0 before allocateEnvironment()). */
    int getEnvironmentCapacity() const {
        return capacity;
    }
    /** The environment's positions, [capacity, 3]. */
    const torch::Tensor& getEnvironmentPositions() const {
        return mmPositions;
    }
    /** The environment's charges, [capacity]. */
    const torch::Tensor& getEnvironmentCharges() const {
        return mmCharges;
    }
    /** Which entries of the environment are atoms (the rest is padding), [capacity] (bool). */
    const torch::Tensor& getEnvironmentMask() const {
        return mmMask;
    }
    /**
     * Call the model's forward() on the inputs.  A failure becomes an OpenMMException that says
     * the model failed (and, with float32 inputs, how to pass float64).
     */
    torch::jit::IValue forward(torch::jit::Module& module) const;
    /**
     * Run a compiled model on the inputs: returns {energy, forces, dE/dp...}.  A failure is
     * reported as by forward().
     */
    std::vector<torch::Tensor> forward(TorchModel::CompiledModel& model) const;
    /**
     * Differentiate the energy with respect to the positions, the environment's positions and the
     * requested parameters (only those that are differentiated; nothing when the energy does not
     * require a gradient).  A failure becomes an OpenMMException.
     *
     * @param energy  the energy the model returned (a tensor with one element)
     */
    Gradients computeGradients(const torch::Tensor& energy) const;
private:
    /** Rebuild the lists derived from the tensors (tensorInputs, gradInputs). */
    void collect();
    torch::TensorOptions options;
    bool outputsForces = false, differentiates = true, useDouble = false, embedding = false;
    std::vector<std::string> names;
    std::vector<torch::jit::IValue> inputs;
    std::vector<torch::Tensor> tensorInputs;  // inputs as tensors, for a compiled model
    torch::Tensor positions, box;
    std::vector<torch::Tensor> parameters;
    std::vector<std::string> parameterNames;
    std::vector<int> derivatives;
    std::vector<int> candidates;
    int capacity = 0, mmInput = 0;  // mmInput: the index of mm_positions in inputs
    torch::Tensor mmPositions, mmCharges, mmMask;
    std::vector<torch::Tensor> gradInputs;  // what autograd differentiates, in the order of Gradients
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MODELINPUTS_H_*/
