#ifndef OPENMMHYBRID_TORCHMODEL_H_
#define OPENMMHYBRID_TORCHMODEL_H_

/* Loading and checking TorchScript models, shared by the API (early checks when a force is
 * created) and the platform kernels.  Every failure becomes an OpenMMException whose message
 * says what is wrong and how to fix it. */

#include <torch/script.h>
#include <string>
#include <vector>

namespace OpenMMHybrid {
namespace TorchModel {

/**
 * Load a TorchScript archive from its bytes.
 *
 * @param data    the bytes written by torch.jit.save
 * @param origin  where they came from (a file name or "a stream"), for error messages
 */
torch::jit::Module load(const std::string& data, const std::string& origin);

/**
 * Check that forward() accepts exactly the inputs the force passes.
 *
 * @param inputNames  the names of the inputs, e.g. {"positions", "box", "lambda"}
 */
void checkSignature(const torch::jit::Module& module, const std::vector<std::string>& inputNames);

} // namespace TorchModel
} // namespace OpenMMHybrid

#endif /*OPENMMHYBRID_TORCHMODEL_H_*/
