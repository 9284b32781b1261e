#ifndef OPENMMHYBRID_TESTUTILITIES_H_
#define OPENMMHYBRID_TESTUTILITIES_H_

/* Helpers shared by the C++ test bodies. */

#include "openmm/OpenMMException.h"
#include "openmm/Platform.h"
#include <exception>
#include <iostream>
#include <string>

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
