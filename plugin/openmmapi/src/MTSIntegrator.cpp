#include "openmmhybrid/MTSIntegrator.h"
#include "openmmhybrid/HybridKernels.h"
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include <algorithm>
#include <cmath>
#include <sstream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

namespace {

string describe(const vector<pair<int, int>>& groups) {
    stringstream s;
    s << "[";
    for (size_t i = 0; i < groups.size(); i++)
        s << (i > 0 ? ", " : "") << "(" << groups[i].first << ", " << groups[i].second << ")";
    s << "]";
    return s.str();
}

/** Check the (group, substeps) pairs and merge them into levels, outermost first. */
vector<MTSLevel> buildLevels(const string& who, const vector<pair<int, int>>& groups) {
    if (groups.empty())
        throw OpenMMException(who + ": no force groups given. Pass a list of (force group, substeps) pairs, "
                              "e.g. [(1, 1), (0, 4)] to evaluate group 1 once and group 0 four times per step.");
    int seen = 0;
    for (auto& g : groups) {
        if (g.first < 0 || g.first > 31)
            throw OpenMMException(who + ": force group " + to_string(g.first) + " in " + describe(groups) +
                                  " is outside 0-31, the range of Force.setForceGroup().");
        if (g.second < 1)
            throw OpenMMException(who + ": force group " + to_string(g.first) + " has " + to_string(g.second) +
                                  " substeps in " + describe(groups) + "; the number of evaluations per step must be at least 1.");
        if ((seen & (1 << g.first)) != 0)
            throw OpenMMException(who + ": force group " + to_string(g.first) + " appears more than once in " + describe(groups) +
                                  "; list each group once (give forces that share a frequency the same group or the same substeps).");
        seen |= 1 << g.first;
    }
    vector<pair<int, int>> sorted = groups;
    stable_sort(sorted.begin(), sorted.end(), [](const pair<int, int>& a, const pair<int, int>& b) { return a.second < b.second; });
    vector<MTSLevel> levels;
    for (auto& g : sorted) {
        if (!levels.empty() && levels.back().substeps == g.second) {
            levels.back().groupMask |= 1 << g.first;
            continue;
        }
        if (!levels.empty() && g.second % levels.back().substeps != 0)
            throw OpenMMException(who + ": the substep counts in " + describe(groups) + " do not nest: " +
                                  to_string(levels.back().substeps) + " does not divide " + to_string(g.second) +
                                  ". Sorted by substeps, each count must divide the next, e.g. (1, 2, 8).");
        levels.push_back({1 << g.first, g.second});
    }
    return levels;
}

void checkStepSize(const string& who, double size) {
    if (!(size > 0) || !isfinite(size))
        throw OpenMMException(who + ": the step size must be positive and finite (got " + to_string(size) + " ps).");
}

} // namespace

MultipleTimeStepIntegrator::MultipleTimeStepIntegrator(const string& className, double stepSize, const vector<pair<int, int>>& groups) :
        className(className), groups(groups), levels(buildLevels(className, groups)) {
    setStepSize(stepSize);
    setConstraintTolerance(1e-5);
    int mask = 0;
    for (auto& level : levels)
        mask |= level.groupMask;
    setIntegrationForceGroups(mask);
}

MultipleTimeStepIntegrator::~MultipleTimeStepIntegrator() {
}

void MultipleTimeStepIntegrator::setStepSize(double size) {
    checkStepSize(className, size);
    Integrator::setStepSize(size);
}

void MultipleTimeStepIntegrator::initialize(ContextImpl& contextRef) {
    if (owner != NULL && &contextRef.getOwner() != owner)
        throw OpenMMException(className + ": this integrator is already bound to a Context; create one integrator per Context.");
    const Platform& platform = contextRef.getPlatform();
    if (!platform.supportsKernels({IntegrateMTSStepKernel::Name()}))
        throw OpenMMException(className + " is not available on the " + platform.getName() +
                              " platform. Use the Reference or CPU platform, and import openmmhybrid (or load its plugins) "
                              "before creating the Context.");
    context = &contextRef;
    owner = &contextRef.getOwner();
    kernel = platform.createKernel(IntegrateMTSStepKernel::Name(), contextRef);
    kernel.getAs<IntegrateMTSStepKernel>().initialize(contextRef.getSystem(), *this);
    forcesValid = false;
}

void MultipleTimeStepIntegrator::cleanup() {
    kernel = Kernel();
}

vector<string> MultipleTimeStepIntegrator::getKernelNames() {
    return {IntegrateMTSStepKernel::Name()};
}

void MultipleTimeStepIntegrator::stateChanged(State::DataType changed) {
    forcesValid = false;
}

double MultipleTimeStepIntegrator::computeKineticEnergy() {
    return kernel.getAs<IntegrateMTSStepKernel>().computeKineticEnergy(*context, *this);
}

void MultipleTimeStepIntegrator::step(int steps) {
    if (context == NULL)
        throw OpenMMException(className + ": this integrator is not bound to a Context; create a Context with it first.");
    IntegrateMTSStepKernel& stepKernel = kernel.getAs<IntegrateMTSStepKernel>();
    for (int i = 0; i < steps; i++) {
        if (context->updateContextState())
            forcesValid = false;
        // If the last step threw (say, a NaN energy from the ML force), the kept forces are stale.
        bool valid = forcesValid;
        forcesValid = false;
        stepKernel.execute(*context, *this, valid);
        forcesValid = true;
    }
}

void MultipleTimeStepIntegrator::createCheckpoint(ostream& stream) const {
    kernel.getAs<IntegrateMTSStepKernel>().createCheckpoint(*context, stream);
}

void MultipleTimeStepIntegrator::loadCheckpoint(istream& stream) {
    kernel.getAs<IntegrateMTSStepKernel>().loadCheckpoint(*context, stream);
    forcesValid = false;
}

MTSIntegrator::MTSIntegrator(double stepSize, const vector<pair<int, int>>& groups) :
        MultipleTimeStepIntegrator("MTSIntegrator", stepSize, groups) {
}

MTSLangevinIntegrator::MTSLangevinIntegrator(double temperature, double friction, double stepSize, const vector<pair<int, int>>& groups) :
        MultipleTimeStepIntegrator("MTSLangevinIntegrator", stepSize, groups) {
    setTemperature(temperature);
    setFriction(friction);
}

void MTSLangevinIntegrator::setTemperature(double temp) {
    if (!(temp >= 0) || !isfinite(temp))
        throw OpenMMException("MTSLangevinIntegrator: the temperature must be >= 0 K and finite (got " + to_string(temp) + ").");
    temperature = temp;
}

void MTSLangevinIntegrator::setFriction(double coeff) {
    if (!(coeff >= 0) || !isfinite(coeff))
        throw OpenMMException("MTSLangevinIntegrator: the friction must be >= 0 /ps and finite (got " + to_string(coeff) + ").");
    friction = coeff;
}

MTSThermostat MTSLangevinIntegrator::getThermostat() const {
    MTSThermostat t;
    t.enabled = true;
    t.temperature = temperature;
    t.friction = friction;
    t.randomSeed = randomSeed;
    return t;
}
