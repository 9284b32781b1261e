#ifndef OPENMMHYBRID_TESTUTILITIES_H_
#define OPENMMHYBRID_TESTUTILITIES_H_

/* Helpers shared by the C++ test bodies. */

#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include "openmm/Vec3.h"
#include <algorithm>
#include <cmath>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

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

/** The exit status with which a test tells ctest it was skipped (SKIP_RETURN_CODE in CMake). */
static constexpr int SKIPPED = 77;

/**
 * Load OpenMM's plugins (OPENMM_PLUGIN_DIR, set by CMake), and, if OpenMM has the platform the
 * tests are for, openmm-hybrid's plugin for it (HYBRID_PLUGIN); run the tests and turn the outcome
 * into the exit status ctest reads.  Without the platform (the CUDA tests on a machine without a
 * GPU or without OpenMM-CUDA) the tests are skipped, with the reason.
 */
template <class F>
static int runTests(const std::string& platformName, F tests) {
    try {
        OpenMM::Platform::loadPluginsFromDirectory(OPENMM_PLUGIN_DIR);
        bool present = false;
        for (int i = 0; i < OpenMM::Platform::getNumPlatforms(); i++)
            present = present || OpenMM::Platform::getPlatform(i).getName() == platformName;
        if (!present) {
            std::cout << "skipped: OpenMM has no " << platformName << " platform here (the CUDA platform needs "
                         "OpenMM-CUDA-13 and an NVIDIA GPU)" << std::endl;
            return SKIPPED;
        }
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

/** The largest magnitude of any component of the vectors. */
static inline double largestComponent(const std::vector<OpenMM::Vec3>& a) {
    double m = 0;
    for (const OpenMM::Vec3& p : a)
        m = std::max(m, std::max(std::fabs(p[0]), std::max(std::fabs(p[1]), std::fabs(p[2]))));
    return m;
}

#endif /*OPENMMHYBRID_TESTUTILITIES_H_*/
