#define PLATFORM_NAME "CUDA"
#include "TestMTSIntegrator.h"

// The shared body covers the CUDA kernels (kicks, drift/O/drift, constraints, checkpoints).
void runPlatformTests() {
}
