// A BoundaryObserver that keeps copies of every boundary it sees (for verify, dump and bisect), by the
// name the goldens and dump files use.
#pragma once
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "segments/core/boundary_observer.h"

namespace segpipe {

struct CapturedRoute {
  std::vector<int32_t> experts;
  std::vector<float> weights;
  int k = 0;
};

class Capture : public BoundaryObserver {
 public:
  void on_tensor(const Boundary& b, const float* data, int64_t rows, int64_t cols) override {
    const std::string name = b.name();  // kept by name: what goldens and dumps call it
    tensors[name].assign(data, data + rows * cols);
    shapes[name] = {rows, cols};
    if (std::find(order.begin(), order.end(), name) == order.end()) order.push_back(name);
  }
  void on_route(int layer, const int32_t* experts, const float* weights, int64_t T, int k) override {
    auto& r = routes[layer];
    r.experts.assign(experts, experts + T * k);
    r.weights.assign(weights, weights + T * k);
    r.k = k;
  }
  std::map<std::string, std::vector<float>> tensors;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<int, CapturedRoute> routes;
  std::vector<std::string> order;  // first-seen order = data-flow order
};

}  // namespace segpipe
