"""The Python snippet of README.md, run as a test."""
import unittest

from .support import cache_dir


class ReadmeSnippet(unittest.TestCase):
    def test_snippet(self):
        cache = cache_dir(self)
        # --- snippet begin ---
        import lowbit

        # An offline context compiles kernels for sm_90a without a GPU.
        with lowbit.Context.offline("sm_90a", cache_dir=cache) as ctx:
            plan = ctx.quantize_plan(shape=(64, 4096), x_dtype="bf16", q_dtype="s8")
            print("lowbit", lowbit.version_string(), plan.describe())

            # Errors carry the status and lowbit's message.
            try:
                ctx.quantize_plan(shape=())
            except lowbit.InvalidProblemError as e:
                print("rejected:", e.status.name, e.message)

        # On a GPU, with torch (or anything with __cuda_array_interface__ / __dlpack__):
        #   ctx = lowbit.Context.device(0)
        #   plan = ctx.quantize_plan(shape=x.shape, x_dtype=x.dtype, q_dtype="s8")
        #   plan.run(x=x, q=q, scale=scale, stream=torch.cuda.current_stream())
        # --- snippet end ---
        plan.close()
