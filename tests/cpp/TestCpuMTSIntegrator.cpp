#define PLATFORM_NAME "CPU"
#include "TestMTSIntegrator.h"
