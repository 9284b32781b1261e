#ifndef OPENMMHYBRID_MTSINTEGRATOR_H_
#define OPENMMHYBRID_MTSINTEGRATOR_H_

/* openmm-hybrid: native multiple-time-step integrators.
 * MultipleTimeStepIntegrator (the shared base), MTSIntegrator (velocity-Verlet rRESPA) and
 * MTSLangevinIntegrator (BAOAB-RESPA). */

#include "openmm/Integrator.h"
#include "openmm/Kernel.h"
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace OpenMMHybrid {

/**
 * One level of a multiple-time-step schedule: the force groups kicked together and how many times
 * per (outer) step they are evaluated.  Groups that share a substep count form one level.
 */
struct MTSLevel {
    int groupMask;  ///< bit i set: force group i belongs to this level
    int substeps;   ///< evaluations per outer step
};

/**
 * The Langevin thermostat a multiple-time-step integrator applies on its innermost step, as the
 * platform kernels see it (disabled for the plain velocity-Verlet integrator).
 */
struct MTSThermostat {
    bool enabled = false;
    double temperature = 0.0;  ///< K
    double friction = 0.0;     ///< 1/ps
    int randomSeed = 0;        ///< 0: pick a seed when the Context is created
};

/**
 * Base class of MTSIntegrator and MTSLangevinIntegrator: rRESPA (Tuckerman, Berne & Martyna,
 * J. Chem. Phys. 97, 1990 (1992)) with any number of levels.  Not constructed directly.
 *
 * `groups` lists (force group, substeps) pairs: the group's forces are evaluated `substeps` times
 * per step of size getStepSize().  Sorted by substeps, each count must divide the next.  The
 * schedule is the one of OpenMM's Python openmm.MTSIntegrator: half kicks at each level around the
 * levels inside it, and at the innermost level the drift (and, for Langevin, the O step), position
 * and velocity constraints, with the innermost step size.  Force groups not listed are ignored.
 *
 * Differences from the Python CustomIntegrator versions, none of which changes the trajectory
 * beyond rounding: each level's forces are computed once per time point and reused across step
 * boundaries (the Python version recomputes the inner levels at the start of every step), kicks
 * that fall on the same time point are applied in one pass, virtual sites are placed after every
 * inner step (not only at the end of the step), and the Langevin constants follow later changes of
 * the step size, temperature and friction.
 *
 * Velocities are synchronous with positions (velocity Verlet): getState() returns v(t), and the
 * kinetic energy is 1/2 sum m v^2 of the current velocities, with no half-step shift as the
 * leapfrog VerletIntegrator and LangevinMiddleIntegrator need.
 */
class MultipleTimeStepIntegrator : public OpenMM::Integrator {
public:
    ~MultipleTimeStepIntegrator() override;
    /** The (force group, substeps) pairs as given to the constructor. */
    const std::vector<std::pair<int, int>>& getGroups() const {
        return groups;
    }
    /** The levels, outermost (fewest substeps) first, groups with equal substeps merged. */
    const std::vector<MTSLevel>& getLevels() const {
        return levels;
    }
    /** The thermostat applied on the innermost step (for the platform kernels). */
    virtual MTSThermostat getThermostat() const {
        return MTSThermostat();
    }
    /** Set the outer step size in ps; must be positive. */
    void setStepSize(double size) override;
    /** Advance the simulation by `steps` outer steps. */
    void step(int steps) override;
protected:
    MultipleTimeStepIntegrator(const std::string& className, double stepSize, const std::vector<std::pair<int, int>>& groups);
    void initialize(OpenMM::ContextImpl& context) override;
    void cleanup() override;
    std::vector<std::string> getKernelNames() override;
    void stateChanged(OpenMM::State::DataType changed) override;
    double computeKineticEnergy() override;
    bool kineticEnergyRequiresForce() const override {
        return false;
    }
    void createCheckpoint(std::ostream& stream) const override;
    void loadCheckpoint(std::istream& stream) override;
    std::string className;
private:
    std::vector<std::pair<int, int>> groups;
    std::vector<MTSLevel> levels;
    OpenMM::Kernel kernel;
    bool forcesValid = false;
};

/**
 * Velocity-Verlet rRESPA: a native, drop-in replacement for OpenMM's Python openmm.MTSIntegrator.
 *
 *     MTSIntegrator integrator(0.004, {{1, 1}, {0, 4}});  // group 1 every 4 fs, group 0 every 1 fs
 */
class MTSIntegrator : public MultipleTimeStepIntegrator {
public:
    /**
     * @param stepSize  the outer step in ps
     * @param groups    (force group 0-31, substeps per outer step) pairs; each group at most once;
     *                  sorted by substeps, each count divides the next
     */
    MTSIntegrator(double stepSize, const std::vector<std::pair<int, int>>& groups);
};

/**
 * BAOAB-RESPA (Lagardere et al., J. Phys. Chem. Lett. 10, 2593 (2019)): a native, drop-in
 * replacement for OpenMM's Python openmm.MTSLangevinIntegrator.  The O step (friction and noise)
 * acts at the innermost level with the innermost step size.
 *
 * The noise comes from a counter-based generator (Philox4x32-10) keyed by the random seed and
 * indexed by (particle, O step), so trajectories do not depend on the number of threads, and
 * checkpoints restore the stream exactly.
 */
class MTSLangevinIntegrator : public MultipleTimeStepIntegrator {
public:
    /**
     * @param temperature  the heat bath temperature in K
     * @param friction     the friction coefficient in 1/ps
     * @param stepSize     the outer step in ps
     * @param groups       as for MTSIntegrator
     */
    MTSLangevinIntegrator(double temperature, double friction, double stepSize, const std::vector<std::pair<int, int>>& groups);
    /** The heat bath temperature in K. */
    double getTemperature() const {
        return temperature;
    }
    /** Set the heat bath temperature in K (>= 0); takes effect on the next step. */
    void setTemperature(double temperature);
    /** The friction coefficient in 1/ps. */
    double getFriction() const {
        return friction;
    }
    /** Set the friction coefficient in 1/ps (>= 0); takes effect on the next step. */
    void setFriction(double friction);
    /** The random number seed; 0 (the default) picks a new seed for every Context. */
    int getRandomNumberSeed() const {
        return randomSeed;
    }
    /** Set the random number seed.  It is read when a Context is created (or reinitialized). */
    void setRandomNumberSeed(int seed) {
        randomSeed = seed;
    }
    MTSThermostat getThermostat() const override;
private:
    double temperature, friction;
    int randomSeed = 0;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MTSINTEGRATOR_H_*/
