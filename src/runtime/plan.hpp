// A plan: an op family's validated problem plus its loaded kernels. Created
// once (compiling or loading), then run any number of times from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cache/kernel_cache.hpp"
#include "ops/op_plan.hpp"
#include "runtime/context.hpp"

namespace lowbit {

class Plan {
 public:
  Plan(std::shared_ptr<Context> context, const lowbit_op_desc& op);

  size_t workspace_size() const { return op_->workspace_size(); }
  void run(const lowbit_arg* args, size_t count, uint64_t workspace, size_t workspace_bytes, CUstream stream) const;
  std::string describe() const;

 private:
  std::shared_ptr<Context> context_;
  std::unique_ptr<OpPlan> op_;
  std::vector<std::shared_ptr<const LoadedKernel>> kernels_;
  std::vector<KernelOrigin> origins_;
  std::vector<CUfunction> functions_;
};

}  // namespace lowbit
