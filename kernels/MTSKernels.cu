/* CUDA device code of the multiple-time-step integrators (MTSIntegrator, MTSLangevinIntegrator) on
 * OpenMM's CUDA platform.  Launched on OpenMM's stream in OpenMM's context, between OpenMM's own
 * force computations and constraint kernels.  Forces of each level are kept per System particle
 * (not per sorted position), so OpenMM's atom reordering between steps cannot misalign them.  The
 * random numbers are the Reference platform's: Philox keyed by (seed, inner-step counter, particle
 * index), so both platforms draw the same noise for the same particle at the same step. */
#include "HybridCudaKernels.h"
#include "DeviceCommon.cuh"
#include "openmmhybrid/internal/Philox.h"
#include <cuda_runtime.h>

namespace OpenMMHybrid {
namespace cudakernels {

namespace {

__global__ void saveLevelForcesKernel(const long long* force, int padded, const int* atomIndex, int numAtoms, double* saved) {
    const double scale = 1.0 / (double) 0x100000000LL;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x) {
        int p = atomIndex[i];
        saved[3 * p] = scale * force[i];
        saved[3 * p + 1] = scale * force[i + padded];
        saved[3 * p + 2] = scale * force[i + 2 * padded];
    }
}

template <class V4>
__global__ void kickKernel(V4* velm, const int* atomIndex, int numAtoms, KickTerms terms) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x) {
        V4 v = velm[i];
        if (v.w == 0)
            continue;
        int p = atomIndex[i];
        double dx = 0, dy = 0, dz = 0;
        for (int k = 0; k < terms.count; k++) {
            const double* f = terms.forces[k] + 3 * p;
            dx += terms.coefficient[k] * f[0];
            dy += terms.coefficient[k] * f[1];
            dz += terms.coefficient[k] * f[2];
        }
        double invMass = v.w;
        v.x += dx * invMass;
        v.y += dy * invMass;
        v.z += dz * invMass;
        velm[i] = v;
    }
}

template <class V4>
__global__ void innerStepDisplaceKernel(V4* velm, V4* posDelta, const int* atomIndex, int numAtoms, InnerStepParams params,
                                        double* unconstrained) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x) {
        V4 v = velm[i];
        if (v.w == 0)
            continue;
        double d[3], vel[3] = {(double) v.x, (double) v.y, (double) v.z};
        if (!params.thermostat) {
            for (int k = 0; k < 3; k++)
                d[k] = vel[k] * params.dt;
        }
        else {
            double noise[3];
            philox::gaussian3(params.seed, params.noiseIndex, (uint32_t) atomIndex[i], noise);
            double scale = params.b * sqrt(params.kT * (double) v.w);
            for (int k = 0; k < 3; k++) {
                d[k] = vel[k] * (0.5 * params.dt);
                vel[k] = vel[k] * params.a + noise[k] * scale;
                d[k] += vel[k] * (0.5 * params.dt);
            }
            v.x = vel[0];
            v.y = vel[1];
            v.z = vel[2];
            velm[i] = v;
        }
        V4 delta = posDelta[i];
        delta.x = d[0];
        delta.y = d[1];
        delta.z = d[2];
        posDelta[i] = delta;
        if (unconstrained != nullptr) {
            // The value as stored (float in single precision), so that an unconstrained atom gets
            // exactly no velocity correction in innerStepMove.
            unconstrained[3 * i] = (double) delta.x;
            unconstrained[3 * i + 1] = (double) delta.y;
            unconstrained[3 * i + 2] = (double) delta.z;
        }
    }
}

template <class P4, class V4>
__global__ void innerStepMoveKernel(P4* posq, float4* correction, V4* velm, const V4* posDelta, int numAtoms, double dt,
                                    const double* unconstrained) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < numAtoms; i += blockDim.x * gridDim.x) {
        V4 v = velm[i];
        if (v.w == 0)
            continue;
        V4 delta = posDelta[i];
        P4 p = posq[i];
        double x = p.x, y = p.y, z = p.z;
        if (correction != nullptr) {
            float4 c = correction[i];
            x += c.x;
            y += c.y;
            z += c.z;
        }
        x += delta.x;
        y += delta.y;
        z += delta.z;
        p.x = x;
        p.y = y;
        p.z = z;
        posq[i] = p;
        if (correction != nullptr)
            correction[i] = make_float4((float) (x - (double) p.x), (float) (y - (double) p.y), (float) (z - (double) p.z), 0.0f);
        if (unconstrained != nullptr) {
            double invDt = 1.0 / dt;
            v.x += (delta.x - unconstrained[3 * i]) * invDt;
            v.y += (delta.y - unconstrained[3 * i + 1]) * invDt;
            v.z += (delta.z - unconstrained[3 * i + 2]) * invDt;
            velm[i] = v;
        }
    }
}

} // namespace

void saveLevelForces(const long long* force, int paddedNumAtoms, const int* atomIndex, int numAtoms, double* saved, cudaStream_t stream) {
    saveLevelForcesKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(force, paddedNumAtoms, atomIndex, numAtoms, saved);
}

void kick(void* velm, bool doubleVelm, const int* atomIndex, int numAtoms, const KickTerms& terms, cudaStream_t stream) {
    if (terms.count == 0)
        return;
    if (doubleVelm)
        kickKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<Double4*>(velm), atomIndex, numAtoms, terms);
    else
        kickKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<float4*>(velm), atomIndex, numAtoms, terms);
}

void innerStepDisplace(void* velm, bool doubleVelm, void* posDelta, const int* atomIndex, int numAtoms, const InnerStepParams& params,
                       double* unconstrained, cudaStream_t stream) {
    if (doubleVelm)
        innerStepDisplaceKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<Double4*>(velm), static_cast<Double4*>(posDelta),
                                                                           atomIndex, numAtoms, params, unconstrained);
    else
        innerStepDisplaceKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<float4*>(velm), static_cast<float4*>(posDelta),
                                                                           atomIndex, numAtoms, params, unconstrained);
}

void innerStepMove(void* posq, float4* posqCorrection, bool doublePosq, void* velm, bool doubleVelm, const void* posDelta, int numAtoms,
                   double dt, const double* unconstrained, cudaStream_t stream) {
    if (doublePosq)
        innerStepMoveKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<Double4*>(posq), (float4*) nullptr,
                                                                       static_cast<Double4*>(velm), static_cast<const Double4*>(posDelta),
                                                                       numAtoms, dt, unconstrained);
    else if (doubleVelm)
        innerStepMoveKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<float4*>(posq), posqCorrection,
                                                                       static_cast<Double4*>(velm), static_cast<const Double4*>(posDelta),
                                                                       numAtoms, dt, unconstrained);
    else
        innerStepMoveKernel<<<blocksFor(numAtoms), BLOCK, 0, stream>>>(static_cast<float4*>(posq), posqCorrection,
                                                                       static_cast<float4*>(velm), static_cast<const float4*>(posDelta),
                                                                       numAtoms, dt, unconstrained);
}

} // namespace cudakernels
} // namespace OpenMMHybrid
