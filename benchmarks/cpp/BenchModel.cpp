/* The floor for MLForce's cost: a TorchScript model's forward + backward called from C++ exactly
 * as the Reference/CPU kernel calls it (preallocated input, forward, energy.item(),
 * autograd::grad, read the gradient), with no OpenMM around it.  For a compiled model (MODEL.pt2,
 * an AOTInductor package from openmmhybrid.compileModel) the same with one call that returns the
 * energy and the forces.
 *
 * Usage: BenchModel MODEL.pt|MODEL.pt2 POSITIONS.txt REPEATS TOUCH_BYTES
 *   POSITIONS.txt: one "x y z" line per atom (nm).  TOUCH_BYTES > 0 also writes that many bytes
 *   of another buffer before each call ("cold" timing: what a Context's large force and position
 *   arrays do to the caches between evaluations).
 * Prints: warm_median_us warm_min_us cold_median_us cold_min_us
 */
#include <torch/script.h>
#include <torch/autograd.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <memory>
#include <string>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <vector>

using namespace std;

static pair<double, double> medianMin(vector<double> t) {
    sort(t.begin(), t.end());
    return {t[t.size() / 2], t[0]};
}

int main(int argc, char** argv) {
    if (argc != 5) {
        cerr << "usage: BenchModel MODEL.pt POSITIONS.txt REPEATS TOUCH_BYTES" << endl;
        return 2;
    }
    string modelPath = argv[1];
    bool compiled = modelPath.size() > 4 && modelPath.compare(modelPath.size() - 4, 4, ".pt2") == 0;
    torch::jit::Module module;
    unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
    if (compiled)
        loader = make_unique<torch::inductor::AOTIModelPackageLoader>(modelPath);
    else {
        module = torch::jit::load(modelPath);
        module.eval();
    }
    vector<float> coords;
    ifstream in(argv[2]);
    for (float x; in >> x;)
        coords.push_back(x);
    int n = coords.size() / 3, repeats = atoi(argv[3]);
    size_t touchBytes = atol(argv[4]);
    vector<char> junk(max<size_t>(touchBytes, 1));
    torch::Tensor positions = torch::zeros({n, 3}, torch::TensorOptions().dtype(torch::kFloat32).requires_grad(!compiled));
    vector<torch::jit::IValue> inputs = {positions};
    vector<torch::Tensor> compiledInputs = {positions};
    double sink = 0;
    auto evaluate = [&]() {
        memcpy(positions.data_ptr<float>(), coords.data(), coords.size() * sizeof(float));
        if (compiled) {
            vector<torch::Tensor> out = loader->run(compiledInputs);
            sink += out[0].item<double>();
            sink += out[1].data_ptr<float>()[0];
            return;
        }
        torch::Tensor energy = module.forward(inputs).toTensor();
        sink += energy.item<double>();
        torch::Tensor grad = torch::autograd::grad({energy}, {positions})[0];
        sink += grad.data_ptr<float>()[0];
    };
    vector<double> warm, cold;
    for (int pass = 0; pass < 2; pass++) {
        vector<double>& times = (pass == 0 ? warm : cold);
        for (int i = 0; i < repeats + 20; i++) {
            if (pass == 1)
                memset(junk.data(), i, junk.size());
            auto start = chrono::steady_clock::now();
            evaluate();
            double us = chrono::duration<double, micro>(chrono::steady_clock::now() - start).count();
            if (i >= 20)
                times.push_back(us);
        }
    }
    auto w = medianMin(warm), c = medianMin(cold);
    cout << w.first << " " << w.second << " " << c.first << " " << c.second << endl;
    return sink == 12345.678 ? 1 : 0;
}
