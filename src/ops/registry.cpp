// The op families lowbit knows: one line each.
#include "common/error.hpp"
#include "ops/op_plan.hpp"
#include "ops/quantize.hpp"
#include "ops/wq.hpp"

namespace lowbit {

namespace {

struct Family {
  lowbit_op_family id;
  const char* name;
  std::unique_ptr<OpPlan> (*create)(const void* desc, const DeviceTraits& device);
  void (*reference)(const void* desc, const lowbit_arg* args, size_t count);
};

constexpr Family kFamilies[] = {
    {LOWBIT_FAMILY_QUANTIZE, "quantize", &quantize::create, &quantize::reference},
    {LOWBIT_FAMILY_WEIGHT_MATMUL, "weight_matmul", &wq::create, &wq::reference},
};

const Family& find_family(const lowbit_op_desc& op) {
  for (const Family& f : kFamilies)
    if (f.id == op.family) return f;
  fail(LOWBIT_INVALID_ARGUMENT, "lowbit_op_desc.family = {} is not a LOWBIT_FAMILY_* value", op.family);
}

}  // namespace

std::unique_ptr<OpPlan> create_op_plan(const lowbit_op_desc& op, const DeviceTraits& device) {
  const Family& family = find_family(op);
  if (op.desc == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_op_desc.desc is NULL ({} descriptor expected)", family.name);
  return family.create(op.desc, device);
}

void run_reference(const lowbit_op_desc& op, const lowbit_arg* args, size_t count) {
  const Family& family = find_family(op);
  if (op.desc == nullptr) fail(LOWBIT_INVALID_ARGUMENT, "lowbit_op_desc.desc is NULL ({} descriptor expected)", family.name);
  if (args == nullptr && count > 0) fail(LOWBIT_INVALID_ARGUMENT, "args is NULL but num_args = {}", count);
  // The same argument rules as lowbit_plan_run.
  for (size_t i = 0; i < count; ++i)
    if (args[i].reserved != 0) fail(LOWBIT_INVALID_ARGUMENT, "args[{}].reserved must be 0", i);
  family.reference(op.desc, args, count);
}

}  // namespace lowbit
