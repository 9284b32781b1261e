#ifndef OPENMMHYBRID_PARALLELFOR_H_
#define OPENMMHYBRID_PARALLELFOR_H_

#include "openmm/internal/ThreadPool.h"

namespace OpenMMHybrid {

/**
 * Run body(start, end, thread) over [0, n) split into one contiguous piece per platform thread (in
 * one piece on the calling thread for n < minParallel, where waking the threads costs more than the
 * loop).  Piece k always covers the same range for a given thread count, so results that are
 * merged in piece order do not depend on scheduling.
 */
template <class Body>
void parallelFor(OpenMM::ThreadPool& threads, int n, const Body& body, int minParallel = 4096) {
    int numThreads = threads.getNumThreads();
    if (numThreads <= 1 || n < minParallel) {
        body(0, n, 0);
        return;
    }
    threads.execute([&](OpenMM::ThreadPool& pool, int thread) {
        body((int) ((long long) n * thread / numThreads), (int) ((long long) n * (thread + 1) / numThreads), thread);
    });
    threads.waitForThreads();
}

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_PARALLELFOR_H_*/
