#ifndef OPENMMHYBRID_MTSSCHEDULE_H_
#define OPENMMHYBRID_MTSSCHEDULE_H_

/* The order of operations of one outer step of a multiple-time-step integrator (rRESPA), shared
 * by every platform's IntegrateMTSStepKernel so that they cannot drift apart.  The platform
 * supplies the three operations; this decides when each runs and with which coefficients. */

#include "openmmhybrid/MTSIntegrator.h"
#include "openmm/OpenMMException.h"
#include <cstdint>
#include <istream>
#include <ostream>
#include <vector>

namespace OpenMMHybrid {

/**
 * Take one outer step.
 *
 * @param integrator     the integrator: its levels (innermost last; each substep count divides the
 *                       next) and its outer step
 * @param forcesValid    the forces kept from the previous step are those of the current state
 * @param computeForces  computeForces(k, groupMask): evaluate and keep level k's forces (the force
 *                       groups in groupMask) at the current positions
 * @param kick           kick(c): v += sum_k c[k] F_k / m (c[k] == 0 for the levels to skip)
 * @param innerStep      innerStep(h): the innermost step of size h (drift, or drift/O/drift)
 *
 * Every level's forces at the final positions are kept for the next step.  Inside the step, the
 * closing half kick of a level's substep and the next opening half kick use the same forces and
 * are applied as one full kick.
 */
template <class ComputeForces, class Kick, class InnerStep>
void takeMTSStep(const MultipleTimeStepIntegrator& integrator, bool forcesValid, ComputeForces computeForces, Kick kick,
                 InnerStep innerStep) {
    const std::vector<MTSLevel>& levels = integrator.getLevels();
    double dt = integrator.getStepSize();
    int numLevels = (int) levels.size();
    int innerSubsteps = levels.back().substeps;
    double innerDt = dt / innerSubsteps;
    // Opening half kicks of every level, with the forces kept from the last step if still valid.
    std::vector<double> coefficients(numLevels);
    for (int k = 0; k < numLevels; k++) {
        if (!forcesValid)
            computeForces(k, levels[k].groupMask);
        coefficients[k] = 0.5 * dt / levels[k].substeps;
    }
    kick(coefficients);
    // Inner steps.  After each, every level whose substep ends here is evaluated once: inside the
    // step its closing and the next opening half kick use the same forces (one full kick); at the
    // end of the step only the closing half kick is applied and the forces are kept.
    for (int j = 1; j <= innerSubsteps; j++) {
        innerStep(innerDt);
        bool last = (j == innerSubsteps);
        for (int k = 0; k < numLevels; k++) {
            coefficients[k] = 0.0;
            if (j % (innerSubsteps / levels[k].substeps) == 0) {
                computeForces(k, levels[k].groupMask);
                coefficients[k] = (last ? 0.5 : 1.0) * dt / levels[k].substeps;
            }
        }
        kick(coefficients);
    }
}

/**
 * The integrator's own checkpoint state, the same on every platform (so a checkpoint moves between
 * platforms): a version, the Philox key and the number of O steps taken.
 */
inline void writeMTSCheckpoint(std::ostream& stream, uint64_t seed, uint64_t noiseIndex) {
    const uint32_t version = 1;
    stream.write((const char*) &version, sizeof(version));
    stream.write((const char*) &seed, sizeof(seed));
    stream.write((const char*) &noiseIndex, sizeof(noiseIndex));
}

/** Read what writeMTSCheckpoint() wrote; throws if the stream holds something else. */
inline void readMTSCheckpoint(std::istream& stream, uint64_t& seed, uint64_t& noiseIndex) {
    uint32_t version = 0;
    stream.read((char*) &version, sizeof(version));
    if (!stream || version != 1)
        throw OpenMM::OpenMMException("MTS integrator: the checkpoint holds no MTS integrator state this version can read "
                                      "(it was written by another integrator or another version of openmm-hybrid).");
    stream.read((char*) &seed, sizeof(seed));
    stream.read((char*) &noiseIndex, sizeof(noiseIndex));
}

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MTSSCHEDULE_H_*/
