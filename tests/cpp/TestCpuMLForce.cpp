#define PLATFORM_NAME "CPU"
#include "TestMLForce.h"
