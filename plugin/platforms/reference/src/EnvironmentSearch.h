#ifndef OPENMMHYBRID_ENVIRONMENTSEARCH_H_
#define OPENMMHYBRID_ENVIRONMENTSEARCH_H_

/* The neighbour search of electrostatic embedding on the host (Reference and CPU platforms):
 * which MM particles lie within the cutoff of any ML atom, and where their image next to the
 * region is.  One pass over the candidate particles (linear in the size of the System) with a
 * cell grid over the ML atoms, so the work per candidate does not grow with the size of the
 * region either. */

#include "openmm/Vec3.h"
#include "openmm/internal/ThreadPool.h"
#include <vector>

namespace OpenMMHybrid {

class EnvironmentSearch {
public:
    /**
     * @param candidates  the particles that may enter the environment (charged, not ML atoms),
     *                    in increasing index; the result keeps this order
     * @param cutoff      nm
     */
    void initialize(const std::vector<int>& candidates, double cutoff);
    /**
     * Find the environment.
     *
     * @param region     the ML atoms' positions, already whole (imaged next to each other)
     * @param positions  all particles' positions
     * @param box        the periodic box vectors (OpenMM's reduced form), or nullptr
     * @param threads    the platform's threads, which share the pass over the candidates
     * @param atoms      out: the particles within the cutoff of any ML atom
     * @param imaged     out: their positions, imaged next to the region
     * Throws OpenMMException if the box is too small for a unique image (see MLForce).
     */
    void find(const std::vector<OpenMM::Vec3>& region, const std::vector<OpenMM::Vec3>& positions, const OpenMM::Vec3* box,
              OpenMM::ThreadPool& threads, std::vector<int>& atoms, std::vector<OpenMM::Vec3>& imaged);
    /** The centre of the region's bounding box at the last find(). */
    const OpenMM::Vec3& getCenter() const {
        return center;
    }
    /** The largest distance of an ML atom from the centre at the last find(). */
    double getRadius() const {
        return radius;
    }
private:
    std::vector<int> candidates;
    double cutoff = 0;
    OpenMM::Vec3 center, low;
    double radius = 0;
    int cells[3] = {1, 1, 1};
    std::vector<int> cellStart, cellIndex, fill;  // kept between calls so that find() does not allocate
    std::vector<OpenMM::Vec3> sorted;  // ML positions in cell order
    std::vector<std::vector<int>> hits;  // per thread: candidates within radius + cutoff of the centre
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_ENVIRONMENTSEARCH_H_*/
