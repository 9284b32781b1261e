/* Registers the serialization proxies when libOpenMMHybrid is loaded, so XmlSerializer knows the
 * plugin's classes as soon as any of them can exist. */
#include "openmmhybrid/MLForce.h"
#include "openmmhybrid/serialization/MLForceProxy.h"
#include "openmmhybrid/MTSIntegrator.h"
#include "openmmhybrid/serialization/MTSIntegratorProxy.h"
#include "openmm/serialization/SerializationProxy.h"

using namespace OpenMMHybrid;
using namespace OpenMM;

namespace {
struct ProxyRegistration {
    ProxyRegistration() {
        SerializationProxy::registerProxy(typeid(MLForce), new MLForceProxy());
        SerializationProxy::registerProxy(typeid(MTSIntegrator), new MTSIntegratorProxy());
        SerializationProxy::registerProxy(typeid(MTSLangevinIntegrator), new MTSLangevinIntegratorProxy());
    }
} registration;
}
