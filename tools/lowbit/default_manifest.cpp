// The built-in prewarm manifest: Llama-3-8B linear layers across every op
// lowbit implements. Generated as manifest text (so that
// `lowbit prewarm --print-default` shows exactly what is compiled).
//
// A new op family adds one generator function below and one entry in
// kGenerators; the model shapes live in one place (kModel).
#include <cstdint>
#include <string>

#include <fmt/format.h>

#include "manifest.hpp"

namespace lowbit::cli {

namespace {

// Llama-3-8B: hidden size 4096, MLP intermediate size 14336. The linear
// layers' activations are [M, K] with K one of these, and M the number of
// tokens in flight: decode (1), a small batch (16), a prefill chunk (4096).
// The weight shapes [K, N] of GEMM-like families: (4096, 6144) qkv,
// (4096, 4096) o, (4096, 28672) gate+up, (14336, 4096) down.
struct ModelShapes {
  const char* name;
  int64_t activation_k[2];
  int64_t tokens[3];
  int64_t weight_kn[4][2];
};

constexpr ModelShapes kModel = {
    "Llama-3-8B",
    {4096, 14336},
    {1, 16, 4096},
    {{4096, 6144}, {4096, 4096}, {4096, 28672}, {14336, 4096}},
};

// Elementwise quantization: per-tensor quantize and dequantize of the
// activations, for every implemented x / q type.
void quantize_family(const ModelShapes& m, std::string* out) {
  *out += "\n# quantize: per-tensor quantize / dequantize of the activations [M, K]\n";
  for (const char* op : {"quantize", "dequantize"})
    for (const char* x : {"f16", "bf16", "f32"})
      for (const char* q : {"s8", "u8"})
        for (int64_t k : m.activation_k)
          for (int64_t tokens : m.tokens)
            *out += fmt::format("quantize op={} scope=per_tensor x={} q={} scale=f32 dims={}x{}\n", op, x, q, tokens, k);
}

using Generator = void (*)(const ModelShapes& model, std::string* out);

// One entry per op family.
constexpr Generator kGenerators[] = {
    &quantize_family,
};

}  // namespace

std::string default_manifest_text() {
  std::string out = fmt::format(
      "# lowbit default prewarm manifest: {} linear layers across every op lowbit implements.\n"
      "# Format: one request per line, a family name then key=value tokens (see `lowbit help prewarm`).\n",
      kModel.name);
  for (Generator g : kGenerators) g(kModel, &out);
  return out;
}

}  // namespace lowbit::cli
