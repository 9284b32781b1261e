#include "EnvironmentSearch.h"
#include "ParallelFor.h"
#include "openmm/OpenMMException.h"
#include <algorithm>
#include <cmath>
#include <cstdio>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

void EnvironmentSearch::initialize(const vector<int>& candidates, double cutoff) {
    this->candidates = candidates;
    this->cutoff = cutoff;
}

// Round to the nearest integer without a call to floor() (x86-64 has no rounding instruction
// before SSE4.1): adding and subtracting 1.5 * 2^52 leaves the integer part, for |x| < 2^51.
static inline double roundFast(double x) {
    const double magic = 6755399441055744.0;
    return (x + magic) - magic;
}

void EnvironmentSearch::find(const vector<Vec3>& region, const vector<Vec3>& positions, const Vec3* box, ThreadPool& threads,
                             vector<int>& atoms, vector<Vec3>& imaged) {
    // Bounding box, centre and radius of the region.
    Vec3 lo = region[0], hi = region[0];
    for (const Vec3& r : region)
        for (int k = 0; k < 3; k++) {
            lo[k] = min(lo[k], r[k]);
            hi[k] = max(hi[k], r[k]);
        }
    center = (lo + hi) * 0.5;
    radius = 0;
    for (const Vec3& r : region)
        radius = max(radius, sqrt((r - center).dot(r - center)));
    if (box != nullptr) {
        double width = min(box[0][0], min(box[1][1], box[2][2]));
        if (2 * cutoff + 2 * radius >= width) {
            char msg[600];
            snprintf(msg, sizeof(msg),
                     "MLForce: electrostatic embedding needs 2 x cutoff + the extent of the ML region (2 x %.3f + %.3f = %.3f nm) "
                     "to be smaller than the shortest box width (%.3f nm), so that each MM atom has only one image within the "
                     "cutoff of the region. Use a smaller embedding cutoff, a smaller ML region or a larger box.",
                     cutoff, 2 * radius, 2 * cutoff + 2 * radius, width);
            throw OpenMMException(msg);
        }
    }

    // A grid of cells of side >= cutoff over the region's bounding box: an MM atom within the
    // cutoff of an ML atom is in the same cell or a neighbouring one.
    low = lo;
    int numCells = 1;
    for (int k = 0; k < 3; k++) {
        cells[k] = max(1, min(64, (int) floor((hi[k] - lo[k]) / cutoff)));
        numCells *= cells[k];
    }
    double cellSize[3], invCell[3];
    for (int k = 0; k < 3; k++) {
        cellSize[k] = max(cutoff, (hi[k] - lo[k]) / cells[k]);
        invCell[k] = 1.0 / cellSize[k];
    }
    auto cellOf = [&](const Vec3& r, int k) {
        return min(cells[k] - 1, max(0, (int) floor((r[k] - low[k]) * invCell[k])));
    };
    cellStart.assign(numCells + 1, 0);
    cellIndex.resize(region.size());
    for (int i = 0; i < (int) region.size(); i++) {
        cellIndex[i] = (cellOf(region[i], 2) * cells[1] + cellOf(region[i], 1)) * cells[0] + cellOf(region[i], 0);
        cellStart[cellIndex[i] + 1]++;
    }
    for (int c = 0; c < numCells; c++)
        cellStart[c + 1] += cellStart[c];
    sorted.resize(region.size());
    fill.assign(cellStart.begin(), cellStart.end() - 1);
    for (int i = 0; i < (int) region.size(); i++)
        sorted[fill[cellIndex[i]]++] = region[i];

    // Pass 1, over every candidate and shared by the threads: the image nearest the centre, kept
    // if it lies within radius + cutoff of the centre.  Branch-free arithmetic the compiler vectorizes.
    double cutoff2 = cutoff * cutoff, reach = radius + cutoff, reach2 = reach * reach;
    double boxLength[3] = {0, 0, 0}, inv[3] = {0, 0, 0}, bx[3] = {0, 0, 0}, by[3] = {0, 0, 0};
    bool triclinic = false;
    if (box != nullptr) {
        for (int k = 0; k < 3; k++) {
            boxLength[k] = box[k][k];
            inv[k] = 1.0 / box[k][k];
        }
        bx[1] = box[1][0];
        bx[2] = box[2][0];
        by[2] = box[2][1];
        triclinic = (bx[1] != 0 || bx[2] != 0 || by[2] != 0);
    }
    int numThreads = max(1, threads.getNumThreads());
    hits.resize(numThreads);
    const Vec3 c = center;
    const int* cand = candidates.data();
    parallelFor(threads, candidates.size(), [&](int start, int end, int thread) {
        vector<int>& mine = hits[thread];
        mine.clear();
        for (int n = start; n < end; n++) {
            const Vec3& r = positions[cand[n]];
            double dx = r[0] - c[0], dy = r[1] - c[1], dz = r[2] - c[2];
            if (box != nullptr) {
                double sz = roundFast(dz * inv[2]);
                dz -= sz * boxLength[2];
                if (triclinic) {
                    dy -= sz * by[2];
                    dx -= sz * bx[2];
                }
                double sy = roundFast(dy * inv[1]);
                dy -= sy * boxLength[1];
                if (triclinic)
                    dx -= sy * bx[1];
                dx -= roundFast(dx * inv[0]) * boxLength[0];
            }
            if (dx * dx + dy * dy + dz * dz <= reach2)
                mine.push_back(n);
        }
    }, 2048);

    // Pass 2, over the few hits: the bounding box, then the ML atoms in the neighbouring cells.
    atoms.clear();
    imaged.clear();
    Vec3 lowReach = lo - Vec3(cutoff, cutoff, cutoff), highReach = hi + Vec3(cutoff, cutoff, cutoff);
    for (int thread = 0; thread < numThreads; thread++)
        for (int n : hits[thread]) {
            int j = candidates[n];
            Vec3 d = positions[j] - center;
            if (box != nullptr) {
                d -= box[2] * roundFast(d[2] * inv[2]);
                d -= box[1] * roundFast(d[1] * inv[1]);
                d -= box[0] * roundFast(d[0] * inv[0]);
            }
            Vec3 p = center + d;
            if (p[0] < lowReach[0] || p[1] < lowReach[1] || p[2] < lowReach[2] || p[0] > highReach[0] || p[1] > highReach[1] ||
                    p[2] > highReach[2])
                continue;
            // p - low >= -cutoff >= -cell size, so truncating (x + 1) gives floor(x) + 1.
            int c0 = (int) ((p[0] - low[0]) * invCell[0] + 1.0) - 1, c1 = (int) ((p[1] - low[1]) * invCell[1] + 1.0) - 1,
                c2 = (int) ((p[2] - low[2]) * invCell[2] + 1.0) - 1;
            bool found = false;
            for (int z = max(0, c2 - 1); z <= min(cells[2] - 1, c2 + 1) && !found; z++)
                for (int y = max(0, c1 - 1); y <= min(cells[1] - 1, c1 + 1) && !found; y++)
                    for (int x = max(0, c0 - 1); x <= min(cells[0] - 1, c0 + 1) && !found; x++) {
                        int cell = (z * cells[1] + y) * cells[0] + x;
                        for (int i = cellStart[cell]; i < cellStart[cell + 1]; i++) {
                            Vec3 r = p - sorted[i];
                            if (r.dot(r) < cutoff2) {
                                found = true;
                                break;
                            }
                        }
                    }
            if (found) {
                atoms.push_back(j);
                imaged.push_back(p);
            }
        }
}
