#ifndef OPENMMHYBRID_HYBRIDCUDAKERNELS_H_
#define OPENMMHYBRID_HYBRIDCUDAKERNELS_H_

/* Host-side entry points to the CUDA device code in kernels/*.cu (compiled by nvcc into the CUDA
 * platform plugin).  Plain C++ so that the platform's host code (compiled by the C++ compiler,
 * together with torch's headers) can call them.
 *
 * Every function only enqueues work on the given stream: none synchronizes, allocates or copies
 * through the host, so all of them can be captured in a CUDA graph.  A kernel runs in whichever
 * CUDA context is current on the calling thread (the ML force: torch's primary context; the MTS
 * integrator: OpenMM's context), and reads and writes device pointers of either context (both live
 * on the same device with unified addressing).
 *
 * Layout conventions (those of OpenMM's CUDA platform):
 *   posq            float4 (single and mixed precision) or double4 (double), in OpenMM's sorted
 *                   atom order; posqCorrection (mixed precision only) holds the low bits
 *   force           long long fixed point (x * 2^32), x[0..padded), y[padded..2 padded), z[...]
 *   velm            float4 (single) or double4 (mixed, double), w = 1/mass
 *   atomIndex       sorted position -> System particle index
 *   sortedIndexOf   System particle index -> sorted position (the inverse, kept by the plugin)
 */

#include <cuda_runtime_api.h>
#include <cstdint>
#include <string>

namespace OpenMMHybrid {
namespace cudakernels {

/** Status the device writes into host-mapped memory; the host polls it without synchronizing. */
struct DeviceStatus {
    int nonFiniteEnergy;     // 1 once the model's energy was NaN or infinite
    int nonFiniteForce;      // 1 + the ML-region entry whose force was not finite
    int nonFiniteEnvForce;   // 1 + the particle index of an environment atom whose force was not finite
    int environmentCount;    // the largest environment seen that did not fit the capacity (0: none)
    int boxTooSmall;         // 1 once 2 cutoff + region extent reached the shortest box width
    double regionDiameter;   // the region's extent when boxTooSmall was set
};

/** What the positions in OpenMM's arrays look like. */
struct PositionArrays {
    const void* posq;              // float4* or double4*
    const float4* posqCorrection;  // mixed precision only, else null
    bool doublePosq;
};

/** Fill sortedIndexOf[atomIndex[i]] = i for every atom. */
void invertAtomIndex(const int* atomIndex, int numAtoms, int* sortedIndexOf, cudaStream_t stream);

/** Up to 16 scalar writes (global parameters, box vectors) carried by the kernel's arguments. */
struct ValueWrites {
    int count = 0;
    void* target[16];
    double value[16];
    int isDouble[16];
};
void writeValues(const ValueWrites& writes, cudaStream_t stream);

/**
 * Gather the ML region into the model's input tensor, imaging every atom next to the first one
 * when periodic; write the box tensor; with embedding also write the region as double3 and its
 * bounding-box centre and radius (bounds[0..3]) and check the box is wide enough.
 *
 * @param box       device double[9], rows are the box vectors (read when periodic)
 * @param out       [n, 3] float or double (outIsDouble)
 * @param boxOut    [3, 3] of the same dtype, or null
 * @param region    double[3 n] or null (no embedding)
 * @param bounds    double[4] or null
 */
void gatherRegion(PositionArrays pos, const int* sortedIndexOf, const int* atoms, int numAtoms, const double* box, bool periodic,
                  void* out, void* boxOut, bool outIsDouble, double* region, double* bounds, double cutoff, DeviceStatus* status,
                  cudaStream_t stream);

/**
 * The electrostatic-embedding environment: every candidate (a charged particle outside the region,
 * in increasing particle index) within `cutoff` of any region atom, imaged nearest the region's
 * centre, compacted in candidate order into mmPositions/mmCharges/mmMask (padding after the last
 * entry: zero charge, false mask, distinct points far outside the cutoff).  envSorted receives the
 * sorted position of each entry (for the force scatter) and envCount the number found.  When more
 * atoms are found than `capacity`, the first `capacity` are written and status->environmentCount
 * records the number found.
 *
 * @param scratch      device memory of environmentScratchBytes(numCandidates) bytes
 */
size_t environmentScratchBytes(int numCandidates);
/** Returns the first error of its launches (CUB's scan clears the runtime's last error). */
cudaError_t findEnvironment(PositionArrays pos, const int* sortedIndexOf, const int* candidates, const double* candidateCharges,
                     int numCandidates, const double* region, int numRegion, const double* bounds, const double* box, bool periodic,
                     double cutoff, int capacity, void* mmPositions, void* mmCharges, bool* mmMask, bool outIsDouble, int* envSorted,
                     int* envCount, void* scratch, DeviceStatus* status, cudaStream_t stream);

/**
 * force[sortedIndexOf[atoms[j]]] += scale * values[j] (values [n, 3], float or double), in
 * OpenMM's fixed point.  A non-finite value is skipped and reported in status->nonFiniteForce.
 */
void scatterRegionForces(const void* values, bool valuesAreDouble, double scale, const int* sortedIndexOf, const int* atoms, int numAtoms,
                         long long* force, int paddedNumAtoms, DeviceStatus* status, cudaStream_t stream);

/** force[envSorted[i]] -= gradient[i] for i < *envCount (and < capacity). */
void scatterEnvironmentForces(const void* gradient, bool isDouble, const int* envSorted, const int* envCount, int capacity,
                              const int* atomIndex, long long* force, int paddedNumAtoms, DeviceStatus* status, cudaStream_t stream);

/** Up to 8 energy parameter derivatives to add into OpenMM's energyParamDerivBuffer. */
struct DerivativeAdds {
    int count = 0;
    const void* value[8];  // device scalar, float or double (valueIsDouble)
    int index[8];          // the derivative's index in the context's list
};
/**
 * Check the energy (a device scalar) is finite (status->nonFiniteEnergy) and add the parameter
 * derivatives into derivBuffer (float or double: derivBufferIsDouble), entry `index` of buffer 0.
 */
void finishEvaluation(const void* energy, bool energyIsDouble, const DerivativeAdds& derivs, bool valuesAreDouble, void* derivBuffer,
                      bool derivBufferIsDouble, DeviceStatus* status, cudaStream_t stream);

// --- MTS integrator ---------------------------------------------------------------------------

/** saved[atomIndex[i]] = force[i] (fixed point -> double3), so reordering cannot misalign it. */
void saveLevelForces(const long long* force, int paddedNumAtoms, const int* atomIndex, int numAtoms, double* saved, cudaStream_t stream);

/** Up to 8 levels' forces (double3 per System particle) and the kick each contributes (dt_k). */
struct KickTerms {
    int count = 0;
    const double* forces[8];
    double coefficient[8];
};
/** v[i] += sum_k coefficient_k F_k[atomIndex[i]] / m_i (velm: float4 or double4, w = 1/m). */
void kick(void* velm, bool doubleVelm, const int* atomIndex, int numAtoms, const KickTerms& terms, cudaStream_t stream);

/** The thermostat's part of an inner step (Langevin BAOAB-style drift/O/drift). */
struct InnerStepParams {
    double dt;
    bool thermostat;
    double a, b, kT;       // v' = a v + b sqrt(kT/m) R
    uint64_t seed, noiseIndex;
};
/**
 * Inner step part 1: the total displacement of the step (drift dt, or drift dt/2, O step, drift
 * dt/2) into posDelta (float4 or double4 like velm) and the new velocities into velm;
 * `unconstrained` (double3 per sorted atom, or null) keeps a copy of the displacement.
 */
void innerStepDisplace(void* velm, bool doubleVelm, void* posDelta, const int* atomIndex, int numAtoms, const InnerStepParams& params,
                       double* unconstrained, cudaStream_t stream);
/**
 * Inner step part 2: positions += posDelta (with the mixed-precision correction), and with
 * constraints (unconstrained non-null) v += (posDelta - unconstrained) / dt.
 */
void innerStepMove(void* posq, float4* posqCorrection, bool doublePosq, void* velm, bool doubleVelm, const void* posDelta, int numAtoms,
                   double dt, const double* unconstrained, cudaStream_t stream);

/**
 * Whether a launch of this library's kernels failed (the runtime's last error, then cleared): an
 * empty string, or what went wrong and how to fix it.
 */
std::string launchFailure();

} // namespace cudakernels
} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_HYBRIDCUDAKERNELS_H_*/
