#define PLATFORM_NAME "Reference"
#include "TestMTSIntegrator.h"

// The Reference and CPU platforms have no tests of their own beyond the shared body.
void runPlatformTests() {
}
