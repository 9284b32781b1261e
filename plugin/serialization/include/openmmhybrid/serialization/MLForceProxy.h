#ifndef OPENMMHYBRID_MLFORCEPROXY_H_
#define OPENMMHYBRID_MLFORCEPROXY_H_

#include "openmm/serialization/SerializationProxy.h"

namespace OpenMMHybrid {

/**
 * Serializes an MLForce, model included: the TorchScript archive is stored base64-encoded in the
 * XML, so a serialized System restores without the original model file.  Registered for
 * XmlSerializer when the library is loaded.
 *
 * Version history: 1 = first version.
 */
class MLForceProxy : public OpenMM::SerializationProxy {
public:
    MLForceProxy();
    void serialize(const void* object, OpenMM::SerializationNode& node) const;
    void* deserialize(const OpenMM::SerializationNode& node) const;
};

} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_MLFORCEPROXY_H_*/
