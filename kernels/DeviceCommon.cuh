#ifndef OPENMMHYBRID_DEVICECOMMON_CUH_
#define OPENMMHYBRID_DEVICECOMMON_CUH_

/* Small pieces shared by the .cu files of kernels/. */

namespace OpenMMHybrid {
namespace cudakernels {

/** Threads per block of the grid-stride kernels. */
const int BLOCK = 256;

/** Blocks for n items (at least one, so that a kernel writing a count always runs). */
inline int blocksFor(int n, int block = BLOCK) {
    int blocks = (n + block - 1) / block;
    return blocks < 1 ? 1 : blocks;
}

/** OpenMM's double4 (16-byte aligned, 32 bytes); CUDA 13 deprecates the name double4. */
struct alignas(16) Double4 {
    double x, y, z, w;
};

} // namespace cudakernels
} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_DEVICECOMMON_CUH_*/
