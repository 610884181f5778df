#include "runtime/plan.hpp"

#include "common/error.hpp"
#include "common/json.hpp"
#include "cuda/driver.hpp"

namespace lowbit {

Plan::Plan(std::shared_ptr<Context> context, const lowbit_op_desc& op) : context_(std::move(context)) {
  op_ = create_op_plan(op, context_->traits());
  for (const KernelSpec& spec : op_->kernels()) {
    KernelCache::Result r = context_->kernels().get(spec);
    if (spec.dynamic_shared_bytes > 48 * 1024 && !context_->offline()) {
      ScopedContext scope(context_->cu_context());
      cu_check(driver().FuncSetAttribute(r.kernel->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                         spec.dynamic_shared_bytes),
               "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)");
    }
    functions_.push_back(r.kernel->function);
    kernels_.push_back(std::move(r.kernel));
    origins_.push_back(r.origin);
  }
}

void Plan::run(const lowbit_arg* args, size_t count, uint64_t workspace, size_t workspace_bytes, CUstream stream) const {
  if (context_->offline())
    fail(LOWBIT_NO_DEVICE, "this plan belongs to an offline context ({}): it can be compiled but not run",
         context_->traits().target.name());
  if (args == nullptr && count > 0) fail(LOWBIT_INVALID_ARGUMENT, "args is NULL but num_args = {}", count);
  for (size_t i = 0; i < count; ++i)
    if (args[i].reserved != 0) fail(LOWBIT_INVALID_ARGUMENT, "args[{}].reserved must be 0", i);
  const size_t needed = op_->workspace_size();
  if (workspace_bytes < needed)
    fail(LOWBIT_WORKSPACE_TOO_SMALL, "the plan needs {} bytes of workspace, got {}", needed, workspace_bytes);
  if (needed > 0 && workspace == 0) fail(LOWBIT_INVALID_ARGUMENT, "workspace is NULL but {} bytes are needed", needed);
  // Launch in the plan's CUDA context even from a thread that has another
  // (or none) current; a no-op in the usual case.
  ScopedContext scope(context_->cu_context());
  op_->run(RunArgs(args, count), workspace, workspace_bytes, functions_.data(), stream);
}

std::string Plan::describe() const {
  std::string kernels = "[";
  for (size_t i = 0; i < kernels_.size(); ++i) {
    const LoadedKernel& k = *kernels_[i];
    if (i > 0) kernels += ",";
    kernels += JsonObject()
                   .add("template", op_->kernels()[i].header)
                   .add("name", k.name)
                   .add("key", k.key)
                   .add("cache", origin_name(origins_[i]))
                   .add("registers", int64_t(k.registers))
                   .add("spill_store_bytes", int64_t(k.report.spill_store_bytes))
                   .add("spill_load_bytes", int64_t(k.report.spill_load_bytes))
                   .add("stack_frame_bytes", int64_t(k.report.stack_frame_bytes))
                   .add("ptx_only", k.ptx_only)
                   .raw("compile", k.metadata.empty() ? "{}" : k.metadata)
                   .str();
  }
  kernels += "]";
  const std::string problem = op_->describe();
  return JsonObject()
      .add("family", op_->family())
      .add("arch", context_->traits().target.name())
      .add("workspace_bytes", uint64_t(op_->workspace_size()))
      .raw("problem", problem)
      .raw("kernels", kernels)
      .str();
}

}  // namespace lowbit
