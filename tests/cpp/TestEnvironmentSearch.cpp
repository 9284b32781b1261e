/* Tests of EnvironmentSearch, the host neighbour search of electrostatic embedding (Reference and
 * CPU platforms): the environment it finds against a brute-force search over periodic images. */

#include "EnvironmentSearch.h"
#include "TestUtilities.h"
#include "openmm/internal/AssertionUtilities.h"
#include "openmm/internal/ThreadPool.h"
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

using namespace OpenMM;
using namespace OpenMMHybrid;
using namespace std;

// Imaged positions are computed as centre + (r - centre - n box) here and as r - n box by the brute
// force: a few roundings of coordinates up to ~30 nm, eps64 * 30 * 8 ~ 5e-14; 1e-12 nm leaves margin.
static const double POSITION_TOLERANCE = 1e-12;

struct Expected {
    vector<int> atoms;
    vector<Vec3> imaged;
};

/** Every candidate with an image (shifts of -3..3 box vectors) within the cutoff of an ML atom. */
static Expected bruteForce(const vector<Vec3>& region, const vector<Vec3>& positions, const vector<int>& candidates,
                           const Vec3* box, double cutoff) {
    Expected result;
    int reach = (box == nullptr ? 0 : 3);
    for (int j : candidates) {
        int found = 0;
        Vec3 image;
        for (int a = -reach; a <= reach; a++)
            for (int b = -reach; b <= reach; b++)
                for (int c = -reach; c <= reach; c++) {
                    Vec3 p = positions[j];
                    if (box != nullptr)
                        p += box[0] * a + box[1] * b + box[2] * c;
                    bool within = false;
                    for (const Vec3& r : region)
                        within = within || (p - r).dot(p - r) < cutoff * cutoff;
                    if (within) {
                        found++;
                        image = p;
                    }
                }
        ASSERT(found <= 1);  // the box check guarantees one image at most
        if (found) {
            result.atoms.push_back(j);
            result.imaged.push_back(image);
        }
    }
    return result;
}

/** A region of n atoms (a random walk of 0.14 nm steps from start) and m MM particles spread over
 * several periodic copies of the box (or a 6 nm cube without one). */
static void makeSystem(int n, int m, const Vec3& start, const Vec3* box, unsigned seed, vector<Vec3>& region,
                       vector<Vec3>& positions, vector<int>& candidates) {
    mt19937 rng(seed);
    normal_distribution<double> step(0.0, 0.14 / sqrt(3.0));
    uniform_real_distribution<double> unit(-1.0, 2.0);  // fractional coordinates: up to one box outside
    region.assign(1, start);
    for (int i = 1; i < n; i++)
        region.push_back(region.back() + Vec3(step(rng), step(rng), step(rng)));
    positions = region;
    candidates.clear();
    for (int j = 0; j < m; j++) {
        Vec3 p = (box == nullptr ? Vec3(6 * unit(rng), 6 * unit(rng), 6 * unit(rng)) / 3.0 :
                  box[0] * unit(rng) + box[1] * unit(rng) + box[2] * unit(rng));
        candidates.push_back((int) positions.size());
        positions.push_back(p);
    }
}

static void checkAgainstBruteForce(int n, int m, const Vec3* box, double cutoff, unsigned seed, int threads) {
    vector<Vec3> region, positions;
    vector<int> candidates;
    makeSystem(n, m, Vec3(1.2, 1.4, 1.1), box, seed, region, positions, candidates);
    Expected expected = bruteForce(region, positions, candidates, box, cutoff);
    ASSERT(expected.atoms.size() > 10);  // the test exercises real hits
    ASSERT(expected.atoms.size() < candidates.size());  // ... and real misses
    EnvironmentSearch search;
    search.initialize(candidates, cutoff);
    ThreadPool pool(threads);
    vector<int> atoms;
    vector<Vec3> imaged;
    search.find(region, positions, box, pool, atoms, imaged);
    ASSERT_EQUAL_CONTAINERS(expected.atoms, atoms);
    for (int i = 0; i < (int) atoms.size(); i++)
        ASSERT_EQUAL_VEC(expected.imaged[i], imaged[i], POSITION_TOLERANCE);
}

void testNonPeriodic() {
    checkAgainstBruteForce(5, 2000, nullptr, 0.8, 1, 1);    // a small region: one cell
    checkAgainstBruteForce(200, 2000, nullptr, 0.5, 2, 1);  // a large region: a grid of cells
}

void testRectangularBox() {
    Vec3 box[3] = {Vec3(4.0, 0, 0), Vec3(0, 4.5, 0), Vec3(0, 0, 5.0)};
    checkAgainstBruteForce(8, 3000, box, 1.0, 3, 1);
    Vec3 large[3] = {Vec3(7.0, 0, 0), Vec3(0, 7.5, 0), Vec3(0, 0, 8.0)};
    checkAgainstBruteForce(150, 6000, large, 0.6, 4, 1);
}

void testTriclinicBox() {
    // OpenMM's reduced form: a along x, b in the xy plane, |b_x| <= a_x / 2, and so on.
    Vec3 box[3] = {Vec3(4.2, 0, 0), Vec3(1.4, 4.0, 0), Vec3(-1.3, 1.5, 4.1)};
    checkAgainstBruteForce(8, 3000, box, 0.9, 5, 1);
    Vec3 large[3] = {Vec3(7.0, 0, 0), Vec3(2.2, 6.8, 0), Vec3(-2.1, 2.4, 7.0)};
    checkAgainstBruteForce(120, 6000, large, 0.6, 6, 1);
}

void testThreadsGiveTheSameEnvironment() {
    // The same code on the same inputs: 1 and 3 threads give identical lists, in candidate order.
    Vec3 box[3] = {Vec3(4.2, 0, 0), Vec3(1.4, 4.0, 0), Vec3(-1.3, 1.5, 4.1)};
    vector<Vec3> region, positions;
    vector<int> candidates;
    makeSystem(30, 20000, Vec3(1.0, 1.0, 1.0), box, 7, region, positions, candidates);
    vector<int> atoms1, atoms3;
    vector<Vec3> imaged1, imaged3;
    EnvironmentSearch one, three;
    one.initialize(candidates, 0.8);
    three.initialize(candidates, 0.8);
    ThreadPool pool1(1), pool3(3);
    one.find(region, positions, box, pool1, atoms1, imaged1);
    three.find(region, positions, box, pool3, atoms3, imaged3);
    ASSERT(atoms1.size() > 100);
    ASSERT_EQUAL_CONTAINERS(atoms1, atoms3);
    for (int i = 0; i < (int) atoms1.size(); i++)
        ASSERT_EQUAL_VEC(imaged1[i], imaged3[i], 0);
    // Repeated calls reuse the buffers and give the same result.
    vector<int> again;
    vector<Vec3> imagedAgain;
    three.find(region, positions, box, pool3, again, imagedAgain);
    ASSERT_EQUAL_CONTAINERS(atoms3, again);
}

/** find() for a region and the MM particles after it in positions, all of them candidates. */
static EnvironmentSearch findAfterRegion(const vector<Vec3>& region, const vector<Vec3>& mm, const Vec3* box, double cutoff,
                                         vector<int>& atoms) {
    vector<Vec3> positions = region;
    vector<int> candidates;
    for (const Vec3& p : mm) {
        candidates.push_back((int) positions.size());
        positions.push_back(p);
    }
    EnvironmentSearch search;
    search.initialize(candidates, cutoff);
    ThreadPool pool(1);
    vector<Vec3> imaged;
    search.find(region, positions, box, pool, atoms, imaged);
    return search;
}

void testCentreAndRadius() {
    vector<int> atoms;
    EnvironmentSearch search = findAfterRegion({Vec3(1, 1, 1), Vec3(1.4, 1, 1), Vec3(1, 1.2, 1)}, {Vec3(1.1, 1.1, 1.5)},
                                               nullptr, 0.6, atoms);
    ASSERT_EQUAL_VEC(Vec3(1.2, 1.1, 1.0), search.getCenter(), 1e-15);
    ASSERT_EQUAL_TOL(sqrt(0.2 * 0.2 + 0.1 * 0.1), search.getRadius(), 1e-15);
    ASSERT_EQUAL(1, (int) atoms.size());
}

void testBoxTooSmall() {
    // 2 x cutoff + the region's extent must stay below the shortest box width.
    Vec3 box[3] = {Vec3(2.0, 0, 0), Vec3(0, 3.0, 0), Vec3(0, 0, 3.0)};
    vector<int> atoms;
    assertThrows([&]() { findAfterRegion({Vec3(1, 1, 1), Vec3(1.3, 1, 1)}, {Vec3(0.1, 0.1, 0.1)}, box, 0.9, atoms); },
                 "shortest box width (2.000 nm)");
}

int main() {
    try {
        testNonPeriodic();
        testRectangularBox();
        testTriclinicBox();
        testThreadsGiveTheSameEnvironment();
        testCentreAndRadius();
        testBoxTooSmall();
    }
    catch (const exception& e) {
        cout << "exception: " << e.what() << endl;
        return 1;
    }
    cout << "Done" << endl;
    return 0;
}
