/* CUDA device code of MLForce on OpenMM's CUDA platform: the data path between OpenMM's device
 * arrays and the model's tensors (gather, environment search for electrostatic embedding, force
 * scatter, energy checks).  Launched on torch's stream in torch's context, so a CUDA graph
 * captures them together with the model.  The host side is CudaMLForceKernel.cpp; the arithmetic
 * mirrors the Reference platform's ReferenceMLForceKernel.cpp and EnvironmentSearch.cpp, so the
 * two platforms hand the model the same inputs. */
#include "HybridCudaKernels.h"
#include "DeviceCommon.cuh"
#include <cub/device/device_scan.cuh>
#include <cuda_runtime.h>
#include <string>

using std::string;

namespace OpenMMHybrid {
namespace cudakernels {

namespace {

struct D3 {
    double x, y, z;
};

__device__ inline D3 loadPosition(const PositionArrays& pos, int sorted) {
    if (pos.doublePosq) {
        Double4 p = static_cast<const Double4*>(pos.posq)[sorted];
        return {p.x, p.y, p.z};
    }
    float4 p = static_cast<const float4*>(pos.posq)[sorted];
    D3 r = {(double) p.x, (double) p.y, (double) p.z};
    if (pos.posqCorrection != nullptr) {
        float4 c = pos.posqCorrection[sorted];
        r.x += (double) c.x;
        r.y += (double) c.y;
        r.z += (double) c.z;
    }
    return r;
}

// d minus the lattice vector that brings it nearest the origin, in OpenMM's reduced triclinic
// form (box[0] = (ax, 0, 0), box[1] = (bx, by, 0), box[2] = (cx, cy, cz)), rounding half away from
// zero like std::round on the host.
__device__ inline D3 imageRound(D3 d, const double* box) {
    double s = round(d.z / box[8]);
    d.x -= s * box[6];
    d.y -= s * box[7];
    d.z -= s * box[8];
    s = round(d.y / box[4]);
    d.x -= s * box[3];
    d.y -= s * box[4];
    s = round(d.x / box[0]);
    d.x -= s * box[0];
    return d;
}

// The same with rounding half to even (the Reference environment search's roundFast).
__device__ inline D3 imageRint(D3 d, const double* box) {
    double s = rint(d.z * (1.0 / box[8]));
    d.x -= s * box[6];
    d.y -= s * box[7];
    d.z -= s * box[8];
    s = rint(d.y * (1.0 / box[4]));
    d.x -= s * box[3];
    d.y -= s * box[4];
    s = rint(d.x * (1.0 / box[0]));
    d.x -= s * box[0];
    return d;
}

template <class T>
__device__ inline void store3(void* out, int i, D3 r) {
    T* o = static_cast<T*>(out);
    o[3 * i] = (T) r.x;
    o[3 * i + 1] = (T) r.y;
    o[3 * i + 2] = (T) r.z;
}

__device__ inline void addFixed(long long* force, int index, double value) {
    atomicAdd(reinterpret_cast<unsigned long long*>(force + index), static_cast<unsigned long long>(static_cast<long long>(value * 0x100000000)));
}

__global__ void invertAtomIndexKernel(const int* atomIndex, int numAtoms, int* sortedIndexOf) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x)
        sortedIndexOf[atomIndex[i]] = i;
}

__global__ void writeValuesKernel(ValueWrites writes) {
    int i = threadIdx.x;
    if (i < writes.count) {
        if (writes.isDouble[i])
            *static_cast<double*>(writes.target[i]) = writes.value[i];
        else
            *static_cast<float*>(writes.target[i]) = (float) writes.value[i];
    }
}

// One block: the region is small (tens to hundreds of atoms).
template <class T>
__global__ void gatherRegionKernel(PositionArrays pos, const int* sortedIndexOf, const int* atoms, int numAtoms, const double* box,
                                   bool periodic, void* out, void* boxOut, double* region, double* bounds, double cutoff,
                                   DeviceStatus* status) {
    __shared__ double lo[3][BLOCK], hi[3][BLOCK], rad[BLOCK];
    D3 origin = loadPosition(pos, sortedIndexOf[atoms[0]]);
    D3 mylo = {1e300, 1e300, 1e300}, myhi = {-1e300, -1e300, -1e300};
    for (int i = threadIdx.x; i < numAtoms; i += blockDim.x) {
        D3 r = loadPosition(pos, sortedIndexOf[atoms[i]]);
        if (periodic && i > 0) {
            D3 d = imageRound({r.x - origin.x, r.y - origin.y, r.z - origin.z}, box);
            r = {origin.x + d.x, origin.y + d.y, origin.z + d.z};
        }
        store3<T>(out, i, r);
        if (region != nullptr) {
            region[3 * i] = r.x;
            region[3 * i + 1] = r.y;
            region[3 * i + 2] = r.z;
            mylo = {fmin(mylo.x, r.x), fmin(mylo.y, r.y), fmin(mylo.z, r.z)};
            myhi = {fmax(myhi.x, r.x), fmax(myhi.y, r.y), fmax(myhi.z, r.z)};
        }
    }
    if (periodic && boxOut != nullptr && threadIdx.x < 9)
        static_cast<T*>(boxOut)[threadIdx.x] = (T) box[threadIdx.x];
    if (region == nullptr)
        return;
    // Bounding box, centre and radius (max distance of an atom from the centre).
    lo[0][threadIdx.x] = mylo.x;
    lo[1][threadIdx.x] = mylo.y;
    lo[2][threadIdx.x] = mylo.z;
    hi[0][threadIdx.x] = myhi.x;
    hi[1][threadIdx.x] = myhi.y;
    hi[2][threadIdx.x] = myhi.z;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
        if (threadIdx.x < step)
            for (int k = 0; k < 3; k++) {
                lo[k][threadIdx.x] = fmin(lo[k][threadIdx.x], lo[k][threadIdx.x + step]);
                hi[k][threadIdx.x] = fmax(hi[k][threadIdx.x], hi[k][threadIdx.x + step]);
            }
        __syncthreads();
    }
    D3 center = {0.5 * (lo[0][0] + hi[0][0]), 0.5 * (lo[1][0] + hi[1][0]), 0.5 * (lo[2][0] + hi[2][0])};
    double myRadius = 0;
    for (int i = threadIdx.x; i < numAtoms; i += blockDim.x) {
        double dx = region[3 * i] - center.x, dy = region[3 * i + 1] - center.y, dz = region[3 * i + 2] - center.z;
        myRadius = fmax(myRadius, sqrt(dx * dx + dy * dy + dz * dz));
    }
    rad[threadIdx.x] = myRadius;
    __syncthreads();
    for (int step = blockDim.x / 2; step > 0; step /= 2) {
        if (threadIdx.x < step)
            rad[threadIdx.x] = fmax(rad[threadIdx.x], rad[threadIdx.x + step]);
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        double radius = rad[0];
        bounds[0] = center.x;
        bounds[1] = center.y;
        bounds[2] = center.z;
        bounds[3] = radius;
        if (periodic) {
            double width = fmin(box[0], fmin(box[4], box[8]));
            if (2 * cutoff + 2 * radius >= width) {
                status->regionDiameter = 2 * radius;
                status->boxTooSmall = 1;
            }
        }
    }
}

// The image of candidate n nearest the region's centre.
__device__ inline D3 candidateImage(const PositionArrays& pos, int sorted, const double* bounds, const double* box, bool periodic) {
    D3 r = loadPosition(pos, sorted);
    D3 d = {r.x - bounds[0], r.y - bounds[1], r.z - bounds[2]};
    if (periodic)
        d = imageRint(d, box);
    return {bounds[0] + d.x, bounds[1] + d.y, bounds[2] + d.z};
}

__global__ void flagEnvironmentKernel(PositionArrays pos, const int* sortedIndexOf, const int* candidates, int numCandidates,
                                      const double* region, int numRegion, const double* bounds, const double* box, bool periodic,
                                      double cutoff, int* flags) {
    double reach = bounds[3] + cutoff, reach2 = reach * reach, cutoff2 = cutoff * cutoff;
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < numCandidates; n += blockDim.x * gridDim.x) {
        D3 p = candidateImage(pos, sortedIndexOf[candidates[n]], bounds, box, periodic);
        double cx = p.x - bounds[0], cy = p.y - bounds[1], cz = p.z - bounds[2];
        int found = 0;
        if (cx * cx + cy * cy + cz * cz <= reach2)
            for (int i = 0; i < numRegion && !found; i++) {
                double dx = p.x - region[3 * i], dy = p.y - region[3 * i + 1], dz = p.z - region[3 * i + 2];
                found = (dx * dx + dy * dy + dz * dz < cutoff2);
            }
        flags[n] = found;
    }
}

template <class T>
__global__ void writeEnvironmentKernel(PositionArrays pos, const int* sortedIndexOf, const int* candidates, const double* charges,
                                       int numCandidates, const int* flags, const int* offsets, const double* bounds, const double* box,
                                       bool periodic, int capacity, void* mmPositions, void* mmCharges, int* envSorted) {
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < numCandidates; n += blockDim.x * gridDim.x) {
        int slot = offsets[n];
        if (flags[n] && slot < capacity) {
            int sorted = sortedIndexOf[candidates[n]];
            store3<T>(mmPositions, slot, candidateImage(pos, sorted, bounds, box, periodic));
            static_cast<T*>(mmCharges)[slot] = (T) charges[n];
            envSorted[slot] = sorted;
        }
    }
}

template <class T>
__global__ void padEnvironmentKernel(const int* total, const double* bounds, double cutoff, int capacity, void* mmPositions,
                                     void* mmCharges, bool* mmMask, int* envSorted, int* envCount, DeviceStatus* status) {
    int count = *total;
    double far = bounds[3] + 2 * cutoff + 1.0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < capacity; i += blockDim.x * gridDim.x) {
        bool real = (i < count);
        mmMask[i] = real;
        if (!real) {
            store3<T>(mmPositions, i, {bounds[0] + far + 0.05 * (i - count), bounds[1], bounds[2]});
            static_cast<T*>(mmCharges)[i] = 0;
            envSorted[i] = -1;
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        *envCount = count;
        if (count > capacity && count > status->environmentCount)
            status->environmentCount = count;
    }
}

template <class T>
__global__ void scatterRegionKernel(const T* values, double scale, const int* sortedIndexOf, const int* atoms, int numAtoms, long long* force,
                                    int padded, DeviceStatus* status) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x) {
        double f[3] = {scale * (double) values[3 * i], scale * (double) values[3 * i + 1], scale * (double) values[3 * i + 2]};
        if (!isfinite(f[0]) || !isfinite(f[1]) || !isfinite(f[2])) {
            status->nonFiniteForce = 1 + i;
            continue;
        }
        int sorted = sortedIndexOf[atoms[i]];
        for (int k = 0; k < 3; k++)
            addFixed(force, sorted + k * padded, f[k]);
    }
}

template <class T>
__global__ void scatterEnvironmentKernel(const T* gradient, const int* envSorted, const int* envCount, int capacity, const int* atomIndex,
                                         long long* force, int padded, DeviceStatus* status) {
    int count = min(*envCount, capacity);
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < count; i += blockDim.x * gridDim.x) {
        double f[3] = {-(double) gradient[3 * i], -(double) gradient[3 * i + 1], -(double) gradient[3 * i + 2]};
        int sorted = envSorted[i];
        if (!isfinite(f[0]) || !isfinite(f[1]) || !isfinite(f[2])) {
            status->nonFiniteEnvForce = 1 + atomIndex[sorted];
            continue;
        }
        for (int k = 0; k < 3; k++)
            addFixed(force, sorted + k * padded, f[k]);
    }
}

__global__ void finishKernel(const void* energy, bool energyIsDouble, DerivativeAdds derivs, bool valuesAreDouble, void* derivBuffer,
                             bool derivBufferIsDouble, DeviceStatus* status) {
    double e = energyIsDouble ? *static_cast<const double*>(energy) : (double) *static_cast<const float*>(energy);
    if (!isfinite(e))
        status->nonFiniteEnergy = 1;
    for (int i = 0; i < derivs.count; i++) {
        double v = valuesAreDouble ? *static_cast<const double*>(derivs.value[i]) : (double) *static_cast<const float*>(derivs.value[i]);
        if (derivBufferIsDouble)
            static_cast<double*>(derivBuffer)[derivs.index[i]] += v;
        else
            static_cast<float*>(derivBuffer)[derivs.index[i]] += (float) v;
    }
}

} // namespace

void invertAtomIndex(const int* atomIndex, int numAtoms, int* sortedIndexOf, cudaStream_t stream) {
    invertAtomIndexKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(atomIndex, numAtoms, sortedIndexOf);
}

void writeValues(const ValueWrites& writes, cudaStream_t stream) {
    if (writes.count > 0)
        writeValuesKernel<<<1, 32, 0, stream>>>(writes);
}

void gatherRegion(PositionArrays pos, const int* sortedIndexOf, const int* atoms, int numAtoms, const double* box, bool periodic, void* out,
                  void* boxOut, bool outIsDouble, double* region, double* bounds, double cutoff, DeviceStatus* status, cudaStream_t stream) {
    if (outIsDouble)
        gatherRegionKernel<double><<<1, BLOCK, 0, stream>>>(pos, sortedIndexOf, atoms, numAtoms, box, periodic, out, boxOut, region, bounds,
                                                            cutoff, status);
    else
        gatherRegionKernel<float><<<1, BLOCK, 0, stream>>>(pos, sortedIndexOf, atoms, numAtoms, box, periodic, out, boxOut, region, bounds,
                                                           cutoff, status);
}

// The compaction and the padding for one dtype of the model's inputs.
template <class T>
static void writeEnvironment(PositionArrays pos, const int* sortedIndexOf, const int* candidates, const double* charges, int numCandidates,
                             const int* flags, const int* offsets, const double* bounds, const double* box, bool periodic, double cutoff,
                             int capacity, void* mmPositions, void* mmCharges, bool* mmMask, int* envSorted, int* envCount,
                             DeviceStatus* status, cudaStream_t stream) {
    if (numCandidates > 0)
        writeEnvironmentKernel<T><<<blocksFor(numCandidates), BLOCK, 0, stream>>>(pos, sortedIndexOf, candidates, charges, numCandidates, flags,
                                                                                offsets, bounds, box, periodic, capacity, mmPositions,
                                                                                mmCharges, envSorted);
    padEnvironmentKernel<T><<<blocksFor(capacity), BLOCK, 0, stream>>>(offsets + numCandidates, bounds, cutoff, capacity, mmPositions,
                                                                       mmCharges, mmMask, envSorted, envCount, status);
}

// Scratch layout: flags[numCandidates + 1] | offsets[numCandidates + 1] | cub's temporary storage.
static size_t alignUp(size_t n) {
    return (n + 255) / 256 * 256;
}

static size_t cubBytes(int numItems) {
    size_t bytes = 0;
    cub::DeviceScan::ExclusiveSum(nullptr, bytes, (const int*) nullptr, (int*) nullptr, numItems);
    return bytes;
}

size_t environmentScratchBytes(int numCandidates) {
    return 2 * alignUp(sizeof(int) * (numCandidates + 1)) + alignUp(cubBytes(numCandidates + 1));
}

cudaError_t findEnvironment(PositionArrays pos, const int* sortedIndexOf, const int* candidates, const double* candidateCharges, int numCandidates,
                     const double* region, int numRegion, const double* bounds, const double* box, bool periodic, double cutoff,
                     int capacity, void* mmPositions, void* mmCharges, bool* mmMask, bool outIsDouble, int* envSorted, int* envCount,
                     void* scratch, DeviceStatus* status, cudaStream_t stream) {
    char* base = static_cast<char*>(scratch);
    int* flags = reinterpret_cast<int*>(base);
    int* offsets = reinterpret_cast<int*>(base + alignUp(sizeof(int) * (numCandidates + 1)));
    void* temp = base + 2 * alignUp(sizeof(int) * (numCandidates + 1));
    size_t tempBytes = alignUp(cubBytes(numCandidates + 1));
    // Errors of earlier launches first: CUB's scan clears the runtime's last error.
    cudaError_t error = cudaPeekAtLastError();
    if (error != cudaSuccess)
        return error;
    // flags[numCandidates] stays 0, so offsets[numCandidates] is the total.
    error = cudaMemsetAsync(flags + numCandidates, 0, sizeof(int), stream);
    if (error != cudaSuccess)
        return error;
    if (numCandidates > 0)
        flagEnvironmentKernel<<<blocksFor(numCandidates), BLOCK, 0, stream>>>(pos, sortedIndexOf, candidates, numCandidates, region, numRegion,
                                                                            bounds, box, periodic, cutoff, flags);
    error = cudaPeekAtLastError();
    if (error != cudaSuccess)
        return error;
    error = cub::DeviceScan::ExclusiveSum(temp, tempBytes, flags, offsets, numCandidates + 1, stream);
    if (error != cudaSuccess)
        return error;
    if (outIsDouble)
        writeEnvironment<double>(pos, sortedIndexOf, candidates, candidateCharges, numCandidates, flags, offsets, bounds, box, periodic, cutoff,
                                 capacity, mmPositions, mmCharges, mmMask, envSorted, envCount, status, stream);
    else
        writeEnvironment<float>(pos, sortedIndexOf, candidates, candidateCharges, numCandidates, flags, offsets, bounds, box, periodic, cutoff,
                                capacity, mmPositions, mmCharges, mmMask, envSorted, envCount, status, stream);
    return cudaPeekAtLastError();
}

void scatterRegionForces(const void* values, bool valuesAreDouble, double scale, const int* sortedIndexOf, const int* atoms, int numAtoms,
                         long long* force, int paddedNumAtoms, DeviceStatus* status, cudaStream_t stream) {
    if (valuesAreDouble)
        scatterRegionKernel<double><<<blocksFor(numAtoms, 128), 128, 0, stream>>>(static_cast<const double*>(values), scale, sortedIndexOf,
                                                                                  atoms, numAtoms, force, paddedNumAtoms, status);
    else
        scatterRegionKernel<float><<<blocksFor(numAtoms, 128), 128, 0, stream>>>(static_cast<const float*>(values), scale, sortedIndexOf,
                                                                                 atoms, numAtoms, force, paddedNumAtoms, status);
}

void scatterEnvironmentForces(const void* gradient, bool isDouble, const int* envSorted, const int* envCount, int capacity,
                              const int* atomIndex, long long* force, int paddedNumAtoms, DeviceStatus* status, cudaStream_t stream) {
    if (isDouble)
        scatterEnvironmentKernel<double><<<blocksFor(capacity), BLOCK, 0, stream>>>(static_cast<const double*>(gradient), envSorted, envCount,
                                                                                    capacity, atomIndex, force, paddedNumAtoms, status);
    else
        scatterEnvironmentKernel<float><<<blocksFor(capacity), BLOCK, 0, stream>>>(static_cast<const float*>(gradient), envSorted, envCount,
                                                                                   capacity, atomIndex, force, paddedNumAtoms, status);
}

void finishEvaluation(const void* energy, bool energyIsDouble, const DerivativeAdds& derivs, bool valuesAreDouble, void* derivBuffer,
                      bool derivBufferIsDouble, DeviceStatus* status, cudaStream_t stream) {
    finishKernel<<<1, 1, 0, stream>>>(energy, energyIsDouble, derivs, valuesAreDouble, derivBuffer, derivBufferIsDouble, status);
}

std::string launchFailure() {
    cudaError_t error = cudaPeekAtLastError();
    if (error == cudaSuccess)
        return "";
    cudaGetLastError();
    string message = string(cudaGetErrorString(error)) + " (or an earlier asynchronous error)";
    if (error == cudaErrorNoKernelImageForDevice || error == cudaErrorInvalidDeviceFunction)
        message += ". The plugin was not compiled for this GPU: rebuild with CMAKE_CUDA_ARCHITECTURES including it";
    return message + ".";
}

} // namespace cudakernels
} // namespace OpenMMHybrid
