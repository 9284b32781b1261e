#define PLATFORM_NAME "CPU"
#include "TestMTSIntegrator.h"

// The Reference and CPU platforms have no tests of their own beyond the shared body.
void runPlatformTests() {
}
