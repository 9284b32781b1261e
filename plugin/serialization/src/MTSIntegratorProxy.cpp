#include "openmmhybrid/serialization/MTSIntegratorProxy.h"
#include "openmmhybrid/MTSIntegrator.h"
#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

namespace {

void serializeCommon(const MultipleTimeStepIntegrator& integrator, SerializationNode& node) {
    node.setIntProperty("version", 1);
    node.setDoubleProperty("stepSize", integrator.getStepSize());
    node.setDoubleProperty("constraintTolerance", integrator.getConstraintTolerance());
    SerializationNode& groups = node.createChildNode("Groups");
    for (auto& g : integrator.getGroups())
        groups.createChildNode("Group").setIntProperty("group", g.first).setIntProperty("substeps", g.second);
}

vector<pair<int, int>> readGroups(const SerializationNode& node, const string& type) {
    if (node.getIntProperty("version") != 1)
        throw OpenMMException(type + ": unsupported version " + to_string(node.getIntProperty("version")) +
                              " in the XML; it was written by a newer openmm-hybrid.");
    vector<pair<int, int>> groups;
    for (auto& child : node.getChildNode("Groups").getChildren())
        groups.push_back({child.getIntProperty("group"), child.getIntProperty("substeps")});
    return groups;
}

} // namespace

MTSIntegratorProxy::MTSIntegratorProxy() : SerializationProxy("HybridMTSIntegrator") {
}

void MTSIntegratorProxy::serialize(const void* object, SerializationNode& node) const {
    serializeCommon(*reinterpret_cast<const MTSIntegrator*>(object), node);
}

void* MTSIntegratorProxy::deserialize(const SerializationNode& node) const {
    MTSIntegrator* integrator = new MTSIntegrator(node.getDoubleProperty("stepSize"), readGroups(node, "HybridMTSIntegrator"));
    integrator->setConstraintTolerance(node.getDoubleProperty("constraintTolerance"));
    return integrator;
}

MTSLangevinIntegratorProxy::MTSLangevinIntegratorProxy() : SerializationProxy("HybridMTSLangevinIntegrator") {
}

void MTSLangevinIntegratorProxy::serialize(const void* object, SerializationNode& node) const {
    const MTSLangevinIntegrator& integrator = *reinterpret_cast<const MTSLangevinIntegrator*>(object);
    serializeCommon(integrator, node);
    node.setDoubleProperty("temperature", integrator.getTemperature());
    node.setDoubleProperty("friction", integrator.getFriction());
    node.setIntProperty("randomSeed", integrator.getRandomNumberSeed());
}

void* MTSLangevinIntegratorProxy::deserialize(const SerializationNode& node) const {
    vector<pair<int, int>> groups = readGroups(node, "HybridMTSLangevinIntegrator");
    MTSLangevinIntegrator* integrator = new MTSLangevinIntegrator(node.getDoubleProperty("temperature"),
            node.getDoubleProperty("friction"), node.getDoubleProperty("stepSize"), groups);
    integrator->setConstraintTolerance(node.getDoubleProperty("constraintTolerance"));
    integrator->setRandomNumberSeed(node.getIntProperty("randomSeed"));
    return integrator;
}
