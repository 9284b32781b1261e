#define PLATFORM_NAME "Reference"
#include "TestMTSIntegrator.h"
