#ifndef OPENMMHYBRID_MLFORCE_H_
#define OPENMMHYBRID_MLFORCE_H_

/* openmm-hybrid: fast hybrid ML/MM molecular dynamics for OpenMM.
 * MLForce: a PyTorch (TorchScript) model evaluated on a subset of the System's particles. */

#include "openmm/Context.h"
#include "openmm/Force.h"
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace OpenMMHybrid {

/**
 * A Force whose energy is computed by a PyTorch model (TorchScript) from the positions of a
 * chosen subset of particles, the ML region.
 *
 * The model computes the region's energy, forward(positions[, box][, p1, p2, ...]) -> energy
 * (kJ/mol) or (energy, forces), with positions [n, 3] in nm in the order of getAtoms(), the box
 * [3, 3] in nm when usesPeriodicBoundaryConditions() is true (the region is then made whole: every
 * atom imaged next to the region's first atom), and one scalar per global parameter.  With
 * electrostatic embedding (setEmbedding()) mm_positions [capacity, 3], mm_charges [capacity] and
 * mm_mask [capacity] follow the box: every particle outside the region with a nonzero embedding
 * charge within the cutoff of an ML atom, imaged next to the region, in increasing particle index.
 * The full contract is section 4 of docs/user_guide.md.
 *
 * Entries past the real ones are padding: zero charge, false mask, and distinct positions far
 * outside the cutoff.  The capacity grows (with one message on stderr) when the environment
 * outgrows it; atoms are never dropped.  The gradient of the energy with respect to mm_positions
 * is applied as forces on those particles.  With periodic boundary conditions every evaluation
 * checks that 2 x cutoff + the region's extent (its diameter about the centre of its bounding box)
 * is smaller than the shortest box width, so that no MM atom has two images within the cutoff.
 *
 * All inputs have the dtype chosen with setUsesDoublePrecision() (float32 by default, matching the
 * weights of most models).  Forces are -dE/dpositions by autograd unless the model outputs them.
 * Derivatives of the energy with respect to global parameters (addEnergyParameterDerivative) come
 * from autograd as well.
 *
 * The model is stored inside the Force (as the bytes of the saved TorchScript archive), so a
 * serialized System carries it and no file is needed to restore it.
 *
 * Errors: bad atom lists, unreadable models, a forward() signature that does not match the inputs
 * the force passes, outputs of the wrong shape or dtype and non-finite energies or forces all throw
 * OpenMM::OpenMMException with a message that says what is wrong and how to fix it.
 */
class MLForce : public OpenMM::Force {
public:
    /**
     * Create an MLForce from a TorchScript file (written by torch.jit.save).
     *
     * @param file   path of the TorchScript archive; its bytes are read now and stored in the force
     * @param atoms  indices of the ML region's particles in the System, in the order the model
     *               sees them; must be non-empty, non-negative and free of duplicates
     */
    MLForce(const std::string& file, const std::vector<int>& atoms);
    /**
     * Create an MLForce from a TorchScript archive held in a stream (for example the bytes that
     * torch.jit.save wrote to a buffer).
     *
     * @param model  stream positioned at the start of the archive; it is read to the end
     * @param atoms  as for the other constructor
     */
    MLForce(std::istream& model, const std::vector<int>& atoms);
    /** The bytes of the TorchScript archive stored in this force. */
    const std::string& getModelData() const;
    /** The file the model was read from, or an empty string if it came from a stream. */
    const std::string& getFile() const;
    /** The particle indices of the ML region, in the order the model sees them. */
    const std::vector<int>& getAtoms() const;
    /**
     * Replace the ML region.  The same checks as in the constructor apply.  Takes effect in a
     * Context only when the Context is reinitialized.
     */
    void setAtoms(const std::vector<int>& atoms);
    /**
     * Set whether the force uses periodic boundary conditions.  If true, the model's forward()
     * receives the box vectors [3, 3] (nm) as its second argument and the region is made whole.
     */
    void setUsesPeriodicBoundaryConditions(bool periodic);
    /** Whether the force uses periodic boundary conditions. */
    bool usesPeriodicBoundaryConditions() const;
    /** Set whether the model returns (energy, forces) instead of energy alone. */
    void setOutputsForces(bool outputsForces);
    /** Whether the model returns (energy, forces). */
    bool getOutputsForces() const;
    /**
     * Set the dtype of the tensors handed to the model: float64 if true, float32 (the default) if
     * false.  Energies and forces are accumulated in double precision in either case.
     */
    void setUsesDoublePrecision(bool useDouble);
    /** Whether the model receives float64 inputs. */
    bool getUsesDoublePrecision() const;
    /** The number of global parameters. */
    int getNumGlobalParameters() const;
    /**
     * Add a global parameter, passed to forward() as a scalar tensor after positions (and box).
     *
     * @param name          the name, as used with Context::setParameter(); must be unique here
     * @param defaultValue  the value in newly created Contexts
     * @return the index of the new parameter
     */
    int addGlobalParameter(const std::string& name, double defaultValue);
    /** The name of global parameter index. */
    const std::string& getGlobalParameterName(int index) const;
    /** Rename global parameter index. */
    void setGlobalParameterName(int index, const std::string& name);
    /** The default value of global parameter index. */
    double getGlobalParameterDefaultValue(int index) const;
    /** Set the default value of global parameter index. */
    void setGlobalParameterDefaultValue(int index, double defaultValue);
    /**
     * Request the derivative of the energy with respect to a global parameter, computed by
     * autograd and reported by State::getEnergyParameterDerivatives().
     *
     * @param name  the name of a global parameter of this force
     */
    void addEnergyParameterDerivative(const std::string& name);
    /** The number of parameters whose energy derivatives are requested. */
    int getNumEnergyParameterDerivatives() const;
    /** The name of the index'th parameter whose energy derivative is requested. */
    const std::string& getEnergyParameterDerivativeName(int index) const;
    /**
     * Set a platform property.  Unknown names throw; getSupportedProperties() lists the known ones:
     * - "useCUDAGraphs" ("true"/"false", CUDA): run the whole evaluation as one CUDA graph.
     * - "CUDAGraphWarmupSteps" (integer, CUDA): eager evaluations before the capture (default 3).
     * - "modelThreads" (integer, Reference/CPU): the CPU threads the model runs on; "0" leaves
     *   torch's own setting.  Default: 1 on the CPU platform, where OpenMM's threads compute PME and
     *   the nonbonded forces at the same time and a multi-threaded model competes with them for the
     *   cores (docs/benchmarks.md has the figures); 0 on the Reference platform, which runs nothing
     *   beside it.
     */
    void setProperty(const std::string& name, const std::string& value);
    /** The properties set with setProperty(). */
    const std::map<std::string, std::string>& getProperties() const;
    /** The names setProperty() accepts. */
    static std::vector<std::string> getSupportedProperties();
    /**
     * Turn on electrostatic embedding: every evaluation also hands the model the MM point charges
     * around the region (see the class documentation for the extra forward() arguments).
     *
     * @param cutoff   the embedding cutoff in nm (> 0): a particle is in the environment when it is
     *                 within this distance of any ML atom
     * @param charges  one charge (e) per particle of the System, usually the NonbondedForce charges;
     *                 the entries of ML atoms are ignored, and particles with zero charge are never
     *                 passed.  The size is checked against the System when a Context is created.
     */
    void setEmbedding(double cutoff, const std::vector<double>& charges);
    /** Whether electrostatic embedding is on. */
    bool usesEmbedding() const;
    /** The embedding cutoff in nm (0 when embedding is off). */
    double getEmbeddingCutoff() const;
    /** The per-particle embedding charges (e); empty when embedding is off. */
    const std::vector<double>& getEmbeddingCharges() const;
    /**
     * Set the initial capacity of the environment arrays.  0 (the default) sizes them from the
     * first evaluation, with 25% headroom.  They grow when needed either way.
     */
    void setEmbeddingCapacity(int capacity);
    /** The initial capacity set with setEmbeddingCapacity() (0: automatic). */
    int getEmbeddingCapacity() const;
    /** The number of environment atoms at the last evaluation in a Context (0 before the first). */
    int getNumEnvironmentAtoms(const OpenMM::Context& context) const;
    /** The current capacity of the environment arrays in a Context (0 before the first evaluation). */
    int getEnvironmentCapacity(const OpenMM::Context& context) const;
    /**
     * How many times the model has been evaluated in a Context that contains this force (every
     * energy or force computation that includes the force's group calls it once).  Useful to check
     * that a multiple-time-step integrator evaluates the ML force only on the outer steps.
     */
    long long getNumModelCalls(const OpenMM::Context& context) const;
protected:
    OpenMM::ForceImpl* createImpl() const;
private:
    struct GlobalParameterInfo {
        std::string name;
        double defaultValue;
    };
    std::string file, modelData;
    std::vector<int> atoms;
    bool periodic, outputsForces, useDouble;
    double embeddingCutoff = 0.0;
    int embeddingCapacity = 0;
    std::vector<double> embeddingCharges;
    std::vector<GlobalParameterInfo> globalParameters;
    std::vector<std::string> energyParameterDerivatives;
    std::map<std::string, std::string> properties;
    friend class MLForceProxy;
    MLForce();
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MLFORCE_H_*/
