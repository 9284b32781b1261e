#define PLATFORM_NAME "Reference"
#include "TestMLForce.h"
