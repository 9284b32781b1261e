#define PLATFORM_NAME "CPU"
#include "TestMLForce.h"

// The Reference and CPU platforms have no tests of their own beyond the shared body.
void runPlatformTests() {
}
