#ifndef OPENMMHYBRID_TESTUTILITIES_H_
#define OPENMMHYBRID_TESTUTILITIES_H_

/* Helpers shared by the C++ test bodies. */

#include "openmm/OpenMMException.h"
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

#endif /*OPENMMHYBRID_TESTUTILITIES_H_*/
