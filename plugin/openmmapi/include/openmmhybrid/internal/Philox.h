#ifndef OPENMMHYBRID_PHILOX_H_
#define OPENMMHYBRID_PHILOX_H_

/* Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3",
 * SC11), a counter-based generator: the output is a pure function of (key, counter), so any
 * particle's noise at any step can be produced independently, on any thread or device, and a
 * checkpoint only needs the counter.  Written to compile as host code and as CUDA device code. */

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define OPENMMHYBRID_HD __host__ __device__ inline
#else
#define OPENMMHYBRID_HD inline
#endif

namespace OpenMMHybrid {
namespace philox {

struct Counter {
    uint32_t v[4];
};

OPENMMHYBRID_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
    uint64_t product = (uint64_t) a * (uint64_t) b;
    hi = (uint32_t) (product >> 32);
    lo = (uint32_t) product;
}

/** Ten rounds of Philox4x32 on `counter` with the 64-bit key (k0, k1). */
OPENMMHYBRID_HD Counter philox4x32(Counter c, uint32_t k0, uint32_t k1) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, lo0, hi1, lo1;
        mulhilo(M0, c.v[0], hi0, lo0);
        mulhilo(M1, c.v[2], hi1, lo1);
        Counter next = {{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
        c = next;
        k0 += W0;
        k1 += W1;
    }
    return c;
}

/** A uniform number in (0, 1) (never 0 or 1) from 32 random bits. */
OPENMMHYBRID_HD double uniform(uint32_t bits) {
    return ((double) bits + 0.5) * (1.0 / 4294967296.0);
}

/**
 * Three independent standard normal numbers for (seed, stream index, particle): one Philox call,
 * Box-Muller on its four outputs (the fourth normal is discarded).
 */
OPENMMHYBRID_HD void gaussian3(uint64_t seed, uint64_t index, uint32_t particle, double out[3]) {
    Counter c = {{particle, (uint32_t) index, (uint32_t) (index >> 32), 0x4F4D4D48u}};
    Counter r = philox4x32(c, (uint32_t) seed, (uint32_t) (seed >> 32));
    const double twoPi = 6.283185307179586476925286766559;
    double r1 = sqrt(-2.0 * log(uniform(r.v[0])));
    double t1 = twoPi * uniform(r.v[1]);
    double r2 = sqrt(-2.0 * log(uniform(r.v[2])));
    double t2 = twoPi * uniform(r.v[3]);
    out[0] = r1 * cos(t1);
    out[1] = r1 * sin(t1);
    out[2] = r2 * cos(t2);
}

} // namespace philox
} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_PHILOX_H_*/
