#include "openmmhybrid/serialization/MLForceProxy.h"
#include "openmmhybrid/MLForce.h"
#include "openmm/OpenMMException.h"
#include "openmm/serialization/SerializationNode.h"
#include <cstdint>
#include <cstring>
#include <sstream>

using namespace OpenMMHybrid;
using namespace OpenMM;
using namespace std;

static const char* BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static string encodeBase64(const string& in) {
    string out;
    out.reserve(4 * ((in.size() + 2) / 3));
    size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = ((uint8_t) in[i] << 16) | ((uint8_t) in[i + 1] << 8) | (uint8_t) in[i + 2];
        out += BASE64[(v >> 18) & 63];
        out += BASE64[(v >> 12) & 63];
        out += BASE64[(v >> 6) & 63];
        out += BASE64[v & 63];
    }
    if (i < in.size()) {
        uint32_t v = (uint8_t) in[i] << 16;
        if (i + 1 < in.size())
            v |= (uint8_t) in[i + 1] << 8;
        out += BASE64[(v >> 18) & 63];
        out += BASE64[(v >> 12) & 63];
        out += (i + 1 < in.size() ? BASE64[(v >> 6) & 63] : '=');
        out += '=';
    }
    return out;
}

static string decodeBase64(const string& in) {
    int table[256];
    for (int& t : table)
        t = -1;
    for (int i = 0; i < 64; i++)
        table[(uint8_t) BASE64[i]] = i;
    string out;
    out.reserve(3 * in.size() / 4);
    uint32_t v = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=' || c == '\n' || c == '\r' || c == ' ')
            continue;
        int d = table[(uint8_t) c];
        if (d < 0)
            throw OpenMMException("MLForce: the serialized model is corrupt (not base64).");
        v = (v << 6) | d;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += (char) ((v >> bits) & 0xFF);
        }
    }
    return out;
}

MLForceProxy::MLForceProxy() : SerializationProxy("MLForce") {
}

void MLForceProxy::serialize(const void* object, SerializationNode& node) const {
    node.setIntProperty("version", 2);
    const MLForce& force = *reinterpret_cast<const MLForce*>(object);
    node.setStringProperty("name", force.getName());
    node.setIntProperty("forceGroup", force.getForceGroup());
    node.setBoolProperty("usesPeriodic", force.usesPeriodicBoundaryConditions());
    node.setBoolProperty("outputsForces", force.getOutputsForces());
    node.setBoolProperty("usesDoublePrecision", force.getUsesDoublePrecision());
    node.setStringProperty("file", force.getFile());
    SerializationNode& atoms = node.createChildNode("Atoms");
    for (int a : force.getAtoms())
        atoms.createChildNode("Atom").setIntProperty("index", a);
    SerializationNode& params = node.createChildNode("GlobalParameters");
    for (int i = 0; i < force.getNumGlobalParameters(); i++)
        params.createChildNode("Parameter").setStringProperty("name", force.getGlobalParameterName(i)).setDoubleProperty("default", force.getGlobalParameterDefaultValue(i));
    SerializationNode& derivs = node.createChildNode("EnergyParameterDerivatives");
    for (int i = 0; i < force.getNumEnergyParameterDerivatives(); i++)
        derivs.createChildNode("Parameter").setStringProperty("name", force.getEnergyParameterDerivativeName(i));
    SerializationNode& props = node.createChildNode("Properties");
    for (auto& p : force.getProperties())
        props.createChildNode("Property").setStringProperty("name", p.first).setStringProperty("value", p.second);
    if (force.usesEmbedding()) {
        // The charges as the base64 of their IEEE 754 little-endian bytes: exact and compact.
        const vector<double>& charges = force.getEmbeddingCharges();
        string bytes(charges.size() * sizeof(double), '\0');
        for (size_t i = 0; i < charges.size(); i++) {
            uint64_t v;
            memcpy(&v, &charges[i], sizeof(v));
            for (size_t b = 0; b < sizeof(double); b++)
                bytes[i * sizeof(double) + b] = (char) ((v >> (8 * b)) & 0xFF);
        }
        node.createChildNode("Embedding").setDoubleProperty("cutoff", force.getEmbeddingCutoff())
            .setIntProperty("capacity", force.getEmbeddingCapacity()).setIntProperty("numCharges", charges.size())
            .setStringProperty("charges", encodeBase64(bytes));
    }
    node.createChildNode("Model").setStringProperty("encoding", "base64").setStringProperty("data", encodeBase64(force.getModelData()));
}

void* MLForceProxy::deserialize(const SerializationNode& node) const {
    int version = node.getIntProperty("version");
    if (version < 1 || version > 2)
        throw OpenMMException("MLForce: unsupported serialization version " + to_string(version) +
                              "; this build of openmm-hybrid reads versions 1 and 2. Update openmm-hybrid.");
    vector<int> atoms;
    for (const SerializationNode& a : node.getChildNode("Atoms").getChildren())
        atoms.push_back(a.getIntProperty("index"));
    const SerializationNode& model = node.getChildNode("Model");
    if (model.getStringProperty("encoding") != "base64")
        throw OpenMMException("MLForce: unknown model encoding '" + model.getStringProperty("encoding") + "'.");
    istringstream modelStream(decodeBase64(model.getStringProperty("data")));
    MLForce* force = new MLForce(modelStream, atoms);
    try {
        force->file = node.getStringProperty("file", "");
        force->setName(node.getStringProperty("name", force->getName()));
        force->setForceGroup(node.getIntProperty("forceGroup", 0));
        force->setUsesPeriodicBoundaryConditions(node.getBoolProperty("usesPeriodic"));
        force->setOutputsForces(node.getBoolProperty("outputsForces"));
        force->setUsesDoublePrecision(node.getBoolProperty("usesDoublePrecision"));
        for (const SerializationNode& p : node.getChildNode("GlobalParameters").getChildren())
            force->addGlobalParameter(p.getStringProperty("name"), p.getDoubleProperty("default"));
        for (const SerializationNode& p : node.getChildNode("EnergyParameterDerivatives").getChildren())
            force->addEnergyParameterDerivative(p.getStringProperty("name"));
        for (const SerializationNode& p : node.getChildNode("Properties").getChildren())
            force->setProperty(p.getStringProperty("name"), p.getStringProperty("value"));
        for (const SerializationNode& e : node.getChildren()) {
            if (e.getName() != "Embedding")
                continue;
            string bytes = decodeBase64(e.getStringProperty("charges"));
            size_t n = e.getIntProperty("numCharges");
            if (bytes.size() != n * sizeof(double))
                throw OpenMMException("MLForce: the serialized embedding charges are corrupt (" + to_string(bytes.size()) +
                                      " bytes for " + to_string(n) + " charges).");
            vector<double> charges(n);
            for (size_t i = 0; i < n; i++) {
                uint64_t v = 0;
                for (size_t b = 0; b < sizeof(double); b++)
                    v |= (uint64_t) (uint8_t) bytes[i * sizeof(double) + b] << (8 * b);
                memcpy(&charges[i], &v, sizeof(v));
            }
            force->setEmbedding(e.getDoubleProperty("cutoff"), charges);
            force->setEmbeddingCapacity(e.getIntProperty("capacity", 0));
        }
    }
    catch (...) {
        delete force;
        throw;
    }
    return force;
}
