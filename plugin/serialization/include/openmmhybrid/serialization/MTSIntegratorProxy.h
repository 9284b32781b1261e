#ifndef OPENMMHYBRID_MTSINTEGRATORPROXY_H_
#define OPENMMHYBRID_MTSINTEGRATORPROXY_H_

#include "openmm/serialization/SerializationProxy.h"

namespace OpenMMHybrid {

/** XML serialization of MTSIntegrator (type "HybridMTSIntegrator"). */
class MTSIntegratorProxy : public OpenMM::SerializationProxy {
public:
    MTSIntegratorProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const;
    void* deserialize(const OpenMM::SerializationNode& node) const;
};

/** XML serialization of MTSLangevinIntegrator (type "HybridMTSLangevinIntegrator"). */
class MTSLangevinIntegratorProxy : public OpenMM::SerializationProxy {
public:
    MTSLangevinIntegratorProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const;
    void* deserialize(const OpenMM::SerializationNode& node) const;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MTSINTEGRATORPROXY_H_*/
