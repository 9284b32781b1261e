/* pybind11 bindings of openmm-hybrid.
 *
 * OpenMM's Python objects are SWIG proxies.  To make an MLForce a real openmm.Force (accepted by
 * System.addForce, XmlSerializer, copy), the C++ object is handed to Python as a SWIG pointer of
 * type "OpenMM::Force *" and the Python class openmmhybrid.MLForce (a subclass of openmm.Force)
 * holds it.  The functions below take that Python object, find the C++ MLForce behind it through
 * SWIG's runtime and act on it.
 */
#include "openmmhybrid/MLForce.h"
#include "openmmhybrid/MTSIntegrator.h"
#include "openmm/OpenMMException.h"
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sstream>
#include "swigpyrun.h"

namespace py = pybind11;
using namespace OpenMMHybrid;
using OpenMM::Force;
using OpenMM::Integrator;

static swig_type_info* swigType(const char* name) {
    swig_type_info* type = SWIG_TypeQuery(name);
    if (type == nullptr)
        throw std::runtime_error(std::string("openmmhybrid: OpenMM's SWIG type '") + name + "' was not found; import openmm first "
                                 "(and build openmm-hybrid with a SWIG runtime compatible with OpenMM's, SWIG >= 4.4).");
    return type;
}

static swig_type_info* forceType() {
    static swig_type_info* type = swigType("OpenMM::Force *");
    return type;
}

static swig_type_info* integratorType() {
    static swig_type_info* type = swigType("OpenMM::Integrator *");
    return type;
}

static swig_type_info* contextType() {
    static swig_type_info* type = swigType("OpenMM::Context *");
    return type;
}

static const OpenMM::Context& asContext(py::handle obj) {
    void* ptr = nullptr;
    if (!SWIG_IsOK(SWIG_ConvertPtr(obj.ptr(), &ptr, contextType(), 0)) || ptr == nullptr)
        throw py::type_error("expected an openmm.Context, got " + std::string(py::str(py::type::of(obj))));
    return *reinterpret_cast<OpenMM::Context*>(ptr);
}

/** The C++ integrator behind an openmm.Integrator Python object, cast to T (nullptr if it is not one). */
template <class T>
static T* asIntegratorOrNull(py::handle obj) {
    void* ptr = nullptr;
    if (!SWIG_IsOK(SWIG_ConvertPtr(obj.ptr(), &ptr, integratorType(), 0)))
        return nullptr;
    return dynamic_cast<T*>(reinterpret_cast<Integrator*>(ptr));
}

template <class T>
static T& asIntegrator(py::handle obj, const char* expected) {
    T* integrator = asIntegratorOrNull<T>(obj);
    if (integrator == nullptr)
        throw py::type_error(std::string("expected an openmmhybrid.") + expected + ", got " + std::string(py::str(py::type::of(obj))));
    return *integrator;
}

/** Wrap a new integrator as an owning SWIG object (an openmm.Integrator). */
static py::object wrapOwnedIntegrator(Integrator* integrator) {
    PyObject* obj = SWIG_NewPointerObj(integrator, integratorType(), SWIG_POINTER_OWN);
    if (obj == nullptr) {
        delete integrator;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(obj);
}

/** The C++ Force behind an openmm.Force Python object, or nullptr if it is not one. */
static Force* asForce(py::handle obj) {
    void* ptr = nullptr;
    if (!SWIG_IsOK(SWIG_ConvertPtr(obj.ptr(), &ptr, forceType(), 0)))
        return nullptr;
    return reinterpret_cast<Force*>(ptr);
}

static MLForce& asMLForce(py::handle obj) {
    Force* force = asForce(obj);
    MLForce* ml = dynamic_cast<MLForce*>(force);
    if (ml == nullptr)
        throw py::type_error("expected an openmmhybrid.MLForce, got " + std::string(py::str(py::type::of(obj))) +
                             (force != nullptr ? " (an openmm.Force of another class)" : ""));
    return *ml;
}

/** Wrap a new MLForce as an owning SWIG object (an openmm.Force). */
static py::object wrapOwned(MLForce* force) {
    PyObject* obj = SWIG_NewPointerObj(static_cast<Force*>(force), forceType(), SWIG_POINTER_OWN);
    if (obj == nullptr) {
        delete force;
        throw py::error_already_set();
    }
    return py::reinterpret_steal<py::object>(obj);
}

PYBIND11_MODULE(_openmmhybrid, m) {
    m.doc() = "Low-level bindings of openmm-hybrid; use the classes in openmmhybrid instead.";
    py::module_ openmm = py::module_::import("openmm");
    static py::object openmmException = openmm.attr("OpenMMException");
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p)
                std::rethrow_exception(p);
        }
        catch (const OpenMM::OpenMMException& e) {
            PyErr_SetString(openmmException.ptr(), e.what());
        }
    });

    m.def("MLForce_fromFile", [](const std::string& file, const std::vector<int>& atoms) {
        return wrapOwned(new MLForce(file, atoms));
    }, py::arg("file"), py::arg("atoms"), "Create an MLForce from a TorchScript file; returns an owning openmm.Force.");
    m.def("MLForce_fromBytes", [](const py::bytes& data, const std::vector<int>& atoms) {
        std::istringstream in{std::string(data)};
        return wrapOwned(new MLForce(in, atoms));
    }, py::arg("data"), py::arg("atoms"), "Create an MLForce from the bytes of a TorchScript archive.");
    m.def("isMLForce", [](py::handle obj) {
        return dynamic_cast<MLForce*>(asForce(obj)) != nullptr;
    }, "Whether obj is an openmm.Force whose C++ object is an MLForce.");

    m.def("getModelData", [](py::handle f) { return py::bytes(asMLForce(f).getModelData()); });
    m.def("getFile", [](py::handle f) { return asMLForce(f).getFile(); });
    m.def("getAtoms", [](py::handle f) { return asMLForce(f).getAtoms(); });
    m.def("setAtoms", [](py::handle f, const std::vector<int>& atoms) { asMLForce(f).setAtoms(atoms); });
    m.def("setUsesPeriodicBoundaryConditions", [](py::handle f, bool v) { asMLForce(f).setUsesPeriodicBoundaryConditions(v); });
    m.def("setOutputsForces", [](py::handle f, bool v) { asMLForce(f).setOutputsForces(v); });
    m.def("getOutputsForces", [](py::handle f) { return asMLForce(f).getOutputsForces(); });
    m.def("setUsesDoublePrecision", [](py::handle f, bool v) { asMLForce(f).setUsesDoublePrecision(v); });
    m.def("getUsesDoublePrecision", [](py::handle f) { return asMLForce(f).getUsesDoublePrecision(); });
    m.def("getNumGlobalParameters", [](py::handle f) { return asMLForce(f).getNumGlobalParameters(); });
    m.def("addGlobalParameter", [](py::handle f, const std::string& name, double value) {
        return asMLForce(f).addGlobalParameter(name, value);
    });
    m.def("getGlobalParameterName", [](py::handle f, int i) { return asMLForce(f).getGlobalParameterName(i); });
    m.def("setGlobalParameterName", [](py::handle f, int i, const std::string& name) { asMLForce(f).setGlobalParameterName(i, name); });
    m.def("getGlobalParameterDefaultValue", [](py::handle f, int i) { return asMLForce(f).getGlobalParameterDefaultValue(i); });
    m.def("setGlobalParameterDefaultValue", [](py::handle f, int i, double v) { asMLForce(f).setGlobalParameterDefaultValue(i, v); });
    m.def("addEnergyParameterDerivative", [](py::handle f, const std::string& name) { asMLForce(f).addEnergyParameterDerivative(name); });
    m.def("getNumEnergyParameterDerivatives", [](py::handle f) { return asMLForce(f).getNumEnergyParameterDerivatives(); });
    m.def("getEnergyParameterDerivativeName", [](py::handle f, int i) { return asMLForce(f).getEnergyParameterDerivativeName(i); });
    m.def("setProperty", [](py::handle f, const std::string& name, const std::string& value) { asMLForce(f).setProperty(name, value); });
    m.def("getProperties", [](py::handle f) { return asMLForce(f).getProperties(); });
    m.def("getSupportedProperties", &MLForce::getSupportedProperties);
    m.def("setEmbedding", [](py::handle f, double cutoff, const std::vector<double>& charges) { asMLForce(f).setEmbedding(cutoff, charges); });
    m.def("usesEmbedding", [](py::handle f) { return asMLForce(f).usesEmbedding(); });
    m.def("getEmbeddingCutoff", [](py::handle f) { return asMLForce(f).getEmbeddingCutoff(); });
    m.def("getEmbeddingCharges", [](py::handle f) { return asMLForce(f).getEmbeddingCharges(); });
    m.def("setEmbeddingCapacity", [](py::handle f, int c) { asMLForce(f).setEmbeddingCapacity(c); });
    m.def("getEmbeddingCapacity", [](py::handle f) { return asMLForce(f).getEmbeddingCapacity(); });
    m.def("getNumEnvironmentAtoms", [](py::handle f, py::handle context) { return asMLForce(f).getNumEnvironmentAtoms(asContext(context)); });
    m.def("getEnvironmentCapacity", [](py::handle f, py::handle context) { return asMLForce(f).getEnvironmentCapacity(asContext(context)); });
    m.def("getNumModelCalls", [](py::handle f, py::handle context) { return asMLForce(f).getNumModelCalls(asContext(context)); });

    // Multiple-time-step integrators.
    using Groups = std::vector<std::pair<int, int>>;
    m.def("MTSIntegrator_create", [](double dt, const Groups& groups) {
        return wrapOwnedIntegrator(new MTSIntegrator(dt, groups));
    }, py::arg("dt"), py::arg("groups"), "Create an MTSIntegrator; returns an owning openmm.Integrator.");
    m.def("MTSLangevinIntegrator_create", [](double temperature, double friction, double dt, const Groups& groups) {
        return wrapOwnedIntegrator(new MTSLangevinIntegrator(temperature, friction, dt, groups));
    }, py::arg("temperature"), py::arg("friction"), py::arg("dt"), py::arg("groups"),
       "Create an MTSLangevinIntegrator; returns an owning openmm.Integrator.");
    m.def("isMTSIntegrator", [](py::handle obj) { return asIntegratorOrNull<MTSIntegrator>(obj) != nullptr; });
    m.def("isMTSLangevinIntegrator", [](py::handle obj) { return asIntegratorOrNull<MTSLangevinIntegrator>(obj) != nullptr; });
    m.def("MTS_getGroups", [](py::handle obj) {
        return asIntegrator<MultipleTimeStepIntegrator>(obj, "MTSIntegrator or MTSLangevinIntegrator").getGroups();
    });
    m.def("MTS_getTemperature", [](py::handle obj) { return asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").getTemperature(); });
    m.def("MTS_setTemperature", [](py::handle obj, double t) { asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").setTemperature(t); });
    m.def("MTS_getFriction", [](py::handle obj) { return asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").getFriction(); });
    m.def("MTS_setFriction", [](py::handle obj, double f) { asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").setFriction(f); });
    m.def("MTS_getRandomNumberSeed", [](py::handle obj) {
        return asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").getRandomNumberSeed();
    });
    m.def("MTS_setRandomNumberSeed", [](py::handle obj, int seed) {
        asIntegrator<MTSLangevinIntegrator>(obj, "MTSLangevinIntegrator").setRandomNumberSeed(seed);
    });
}
