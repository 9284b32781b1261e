#ifndef OPENMMHYBRID_TESTUTILITIES_H_
#define OPENMMHYBRID_TESTUTILITIES_H_

/* Helpers shared by the C++ test bodies. */

#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include <algorithm>
#include <cmath>
#include <exception>
#include <iostream>
#include <string>

/*
 * Tolerances derived from the arithmetic, as in tests/python/precision.py: two computations of the
 * same quantity that round differently (different code, or float32 against float64) differ by at
 * most about SAFETY * sqrt(terms) * eps * scale, where scale is the sum of the magnitudes of what is
 * added up and terms the number of rounding steps that reach the result.
 */
static constexpr double EPS32 = 1.1920928955078125e-07;  // 2^-23: the spacing of floats just above 1
static constexpr double EPS64 = 2.220446049250313e-16;   // 2^-52: the same for doubles
static constexpr double SAFETY = 8.0;                    // two evaluations, four standard deviations each

static inline double roundingBound(double scale, double eps, int terms = 1) {
    return SAFETY * std::sqrt((double) std::max(terms, 1)) * eps * std::fabs(scale);
}

/** ASSERT_EQUAL_TOL and ASSERT_EQUAL_VEC divide the difference by max(1, |expected|): an absolute
 * bound as their tolerance. */
static inline double relativeTo(double bound, double expectedMagnitude) {
    return bound / std::max(1.0, std::fabs(expectedMagnitude));
}

/** Runs code and checks that it throws an OpenMMException whose message contains expected. */
template <class F>
static void assertThrows(F code, const std::string& expected) {
    try {
        code();
    }
    catch (const OpenMM::OpenMMException& e) {
        std::string message = e.what();
        if (message.find(expected) == std::string::npos)
            throw OpenMM::OpenMMException("expected an error containing '" + expected + "', got: " + message);
        return;
    }
    throw OpenMM::OpenMMException("expected an error containing '" + expected + "', but nothing was thrown");
}

/**
 * Load OpenMM's and openmm-hybrid's plugins (OPENMM_PLUGIN_DIR, HYBRID_PLUGIN, set by CMake), run
 * the tests and turn the outcome into the exit status ctest reads.
 */
template <class F>
static int runTests(F tests) {
    try {
        OpenMM::Platform::loadPluginsFromDirectory(OPENMM_PLUGIN_DIR);
        OpenMM::Platform::loadPluginLibrary(HYBRID_PLUGIN);
        tests();
    }
    catch (const std::exception& e) {
        std::cout << "exception: " << e.what() << std::endl;
        return 1;
    }
    std::cout << "Done" << std::endl;
    return 0;
}

#endif /*OPENMMHYBRID_TESTUTILITIES_H_*/
