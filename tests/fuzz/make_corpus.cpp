// Writes the seed corpora of the fuzz targets (tests/fuzz/README.md):
//   make_corpus OUT_DIR   ->  OUT_DIR/{plan_create,cache_entry,manifest}/<name>
// The checked-in tests/fuzz/corpus/ was made with it; tools/run_checks.sh
// runs it again before fuzzing so the seeds always match the current struct
// layouts (a field appended to a descriptor shifts the bytes of every seed).
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "cache/disk_store.hpp"
#include "common/sha256.hpp"
#include "lowbit/lowbit.h"
#include "manifest.hpp"

namespace {

std::string g_out;

void put(const std::string& target, const std::string& name, const void* data, size_t size) {
  const std::string dir = g_out + "/" + target;
  ::mkdir(g_out.c_str(), 0755);
  ::mkdir(dir.c_str(), 0755);
  const std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(data, 1, size, f) != size) {
    std::fprintf(stderr, "make_corpus: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  std::fclose(f);
}

// fuzz_plan_create: flags byte, then the descriptor bytes.
template <typename Desc>
void plan_seed(const std::string& name, uint8_t flags, const Desc& d) {
  std::vector<uint8_t> bytes(1 + sizeof(Desc));
  bytes[0] = flags;
  std::memcpy(bytes.data() + 1, &d, sizeof(Desc));
  put("plan_create", name, bytes.data(), bytes.size());
}

lowbit_quantize_desc q(lowbit_quantize_op op, lowbit_quantize_scope scope, lowbit_dtype x, lowbit_dtype qt,
                       std::vector<int64_t> dims) {
  lowbit_quantize_desc d;
  lowbit_quantize_desc_init(&d);
  d.op = op;
  d.scope = scope;
  d.x_dtype = x;
  d.q_dtype = qt;
  d.rank = int32_t(dims.size());
  for (size_t i = 0; i < dims.size() && i < 4; ++i) d.dims[i] = dims[i];
  return d;
}

void plan_create_seeds() {
  constexpr uint8_t kRef = 1u << 5, kWq = 1u << 1, kRaw = 1u << 0, kKeepSize = 1u << 2;
  plan_seed("q_per_tensor_f32_s8", kRef, q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {7, 33}));
  plan_seed("dq_per_tensor_bf16_u8", kRef, q(LOWBIT_QOP_DEQUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_U8, {64}));
  lowbit_quantize_desc ch = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8, {4, 5, 6});
  ch.axis = 1;
  plan_seed("q_per_channel_f16_axis1", kRef, ch);
  plan_seed("q_per_token_f32_s4", kRef, q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S4, {3, 10}));
  lowbit_quantize_desc grp = q(LOWBIT_QOP_FAKE_QUANTIZE, LOWBIT_SCOPE_PER_GROUP, LOWBIT_DTYPE_F64, LOWBIT_DTYPE_U8, {2, 64});
  grp.group_size = 16;
  grp.x_row_stride = 80;
  plan_seed("fq_per_group_f64_strided", kRef, grp);
  lowbit_quantize_desc dyn = q(LOWBIT_QOP_DYNAMIC_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_S8, {5, 48});
  plan_seed("dyn_per_token_bf16_sym", kRef, dyn);
  dyn.symmetric = 0;
  dyn.q_dtype = LOWBIT_DTYPE_U4;
  dyn.scope = LOWBIT_SCOPE_PER_GROUP;
  dyn.group_size = 8;
  plan_seed("dyn_per_group_u4_asym", kRef, dyn);
  lowbit_quantize_desc bw = q(LOWBIT_QOP_QUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {100});
  bw.qmin = -127;
  bw.qmax = 127;
  bw.alignment = 4;
  plan_seed("qbw_narrow_align4", kRef, bw);
  plan_seed("dqbw_per_token", kRef, q(LOWBIT_QOP_DEQUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S8, {2, 2, 8}));
  plan_seed("fqbw_per_channel_last", kRef, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_FAKE_QUANTIZE_BACKWARD, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_U8, {3, 9});
    d.axis = -1;
    return d;
  }());
  plan_seed("zero_sized", 0, q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {0, 4096}));
  plan_seed("bad_qrange", 0, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {8});
    d.qmin = 10;
    d.qmax = -10;
    return d;
  }());
  plan_seed("huge_dims", 0, q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {1 << 30, 1 << 30}));
  lowbit_quantize_desc small_size = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {8});
  small_size.struct_size = 12;
  plan_seed("struct_size_12", kKeepSize, small_size);

  // Quantize edge cases: the API paths (desc = NULL, reserved != 0, the
  // shorthand), ranks and axes out of range, a zero dim before a huge one
  // (the bound on the nonzero dims; tests/unit/test_fuzz_regressions.cpp).
  constexpr uint8_t kReserved = 1u << 3, kNullDesc = 1u << 4, kShorthand = 1u << 6;
  const lowbit_quantize_desc plain = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {8});
  plan_seed("null_desc", kNullDesc, plain);
  plan_seed("reserved_1", kReserved, plain);
  plan_seed("shorthand_per_group_f16_s4", kShorthand | kRef, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_GROUP, LOWBIT_DTYPE_F16, LOWBIT_DTYPE_S4, {3, 4, 96});
    d.group_size = 32;
    d.symmetric = 0;
    return d;
  }());
  plan_seed("rank_5", 0, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TENSOR, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {2, 2, 2, 2});
    d.rank = 5;
    return d;
  }());
  plan_seed("axis_out_of_range", 0, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_DEQUANTIZE, LOWBIT_SCOPE_PER_CHANNEL, LOWBIT_DTYPE_BF16, LOWBIT_DTYPE_U4, {4, 6});
    d.axis = -3;
    return d;
  }());
  plan_seed("zero_then_int64_max", 0, q(LOWBIT_QOP_FAKE_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32,
                                       LOWBIT_DTYPE_S4, {15, 33, 0, INT64_MAX}));
  plan_seed("stride_too_small", 0, [] {
    lowbit_quantize_desc d = q(LOWBIT_QOP_QUANTIZE, LOWBIT_SCOPE_PER_TOKEN, LOWBIT_DTYPE_F32, LOWBIT_DTYPE_S8, {4, 64});
    d.x_row_stride = 63;
    return d;
  }());

  // Family 2 (weight-only matmul): every format and op, both bit widths.
  auto wq = [](int32_t op, int32_t format, int32_t bits, int32_t symmetric, int64_t group, int64_t m, int64_t n,
               int64_t k) {
    lowbit_wq_matmul_desc w;
    lowbit_wq_matmul_desc_init(&w);
    w.op = op;
    w.format = format;
    w.weight_bits = bits;
    w.symmetric = symmetric;
    w.group_size = group;
    w.m = m;
    w.n = n;
    w.k = k;
    return w;
  };
  constexpr int32_t kMatmul = LOWBIT_WQ_OP_MATMUL, kRepack = LOWBIT_WQ_OP_REPACK;
  plan_seed("wq_awq_m1", kWq, wq(kMatmul, LOWBIT_WQ_FORMAT_AWQ, 4, 0, 128, 1, 4096, 4096));
  lowbit_wq_matmul_desc gptq = wq(kMatmul, LOWBIT_WQ_FORMAT_GPTQ, 8, 0, 128, 8, 4096, 4096);
  gptq.act_order = 1;
  plan_seed("wq_gptq_actorder_m8", kWq, gptq);
  plan_seed("wq_repack_plain_perchannel", kWq, wq(kRepack, LOWBIT_WQ_FORMAT_PLAIN, 8, 1, -1, 8, 4096, 4096));
  lowbit_wq_matmul_desc native = wq(kMatmul, LOWBIT_WQ_FORMAT_NATIVE, 4, 0, 64, 16, 264, 512);
  native.act_dtype = LOWBIT_DTYPE_BF16;
  native.scale_dtype = LOWBIT_DTYPE_BF16;
  native.has_bias = 1;
  native.x_row_stride = 520;
  native.y_row_stride = 272;
  plan_seed("wq_native_bf16_bias_strided", kWq, native);
  plan_seed("wq_gptq_v1_sym_g32_m33", kWq, wq(kMatmul, LOWBIT_WQ_FORMAT_GPTQ_V1, 4, 1, 32, 33, 128, 256));
  plan_seed("wq_repack_awq_g256", kWq, wq(kRepack, LOWBIT_WQ_FORMAT_AWQ, 4, 0, 256, 33, 128, 256));
  plan_seed("wq_bad_n", kWq, wq(kMatmul, LOWBIT_WQ_FORMAT_NATIVE, 4, 0, 128, 1, 4100, 4096));  // n % 8 != 0

  // Structured mode (flag 0x80): bytes that pick fields from edge-value tables.
  const uint8_t structured_q[] = {0x80 | kRef, 0, 1, 0, 4, 0, 200, 3, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 16};
  put("plan_create", "structured_quantize", structured_q, sizeof(structured_q));
  const uint8_t structured_per_channel[] = {0x80, 0, 1, 0, 0, 0, 0, 3, 0, 32, 32, 1, 0, 0, 0, 0, 0, 0, 0};
  put("plan_create", "structured_per_channel", structured_per_channel, sizeof(structured_per_channel));
  const uint8_t structured_wq[] = {0x80 | kWq, 0, 0, 0, 0, 0, 0, 1, 19, 19, 2, 2, 0, 0, 0, 0};
  put("plan_create", "structured_wq", structured_wq, sizeof(structured_wq));

  // An unknown family id (raw).
  const uint8_t raw[] = {kRaw, 0x63, 0, 0, 0, 0x40, 0, 0, 0};
  put("plan_create", "raw_family_99", raw, sizeof(raw));
}

void cache_entry_seeds() {
  constexpr uint8_t kFix = 1u << 0, kDisk = 1u << 1, kAny = 1u << 3;
  lowbit::CacheEntry e;
  e.base_key = lowbit::sha256(std::string("lowbit fuzz seed"));
  e.nvrtc_version = 13000;
  e.kind = lowbit::PayloadKind::Cubin;
  e.metadata =
      "{\"kernel\":\"quantize<XT=float>\",\"family\":\"quantize\",\"arch\":\"sm_90a\",\"nvrtc\":13000,"
      "\"options\":\"-arch=sm_90a\",\"compile_ms\":12.5,\"registers\":16,\"spill_stores\":0,\"spill_loads\":0,"
      "\"stack_frame\":0,\"shared_bytes\":0,\"created\":1700000000}";
  e.payload = {0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33, 0, 0, 0, 0, 0, 0, 0, 0};
  auto seed = [&](const std::string& name, uint8_t flags, const std::vector<uint8_t>& bytes) {
    std::vector<uint8_t> b(1, flags);
    b.insert(b.end(), bytes.begin(), bytes.end());
    put("cache_entry", name, b.data(), b.size());
  };
  const std::vector<uint8_t> valid = lowbit::DiskStore::serialize(e);
  seed("valid_cubin", 0, valid);
  seed("valid_cubin_disk", kDisk, valid);
  seed("valid_cubin_disk_any", kDisk | kAny, valid);
  seed("valid_cubin_fix", kFix | kDisk, valid);
  lowbit::CacheEntry p = e;
  p.kind = lowbit::PayloadKind::Ptx;
  p.nvrtc_version = 0;
  p.payload.assign({'.', 'v', 'e', 'r', 's', 'i', 'o', 'n', ' ', '8', '.', '0', '\n'});
  p.metadata = "{\"registers\":-1,\"kernel\":\"x\\\"y\\\\z\\u0041\"}";
  seed("valid_ptx_v0", kDisk, lowbit::DiskStore::serialize(p));
  lowbit::CacheEntry empty = e;
  empty.metadata.clear();
  empty.payload.clear();
  seed("valid_empty", kFix, lowbit::DiskStore::serialize(empty));
  std::vector<uint8_t> truncated(valid.begin(), valid.begin() + 100);
  seed("truncated_header", kDisk, truncated);
  std::vector<uint8_t> flipped = valid;
  flipped[flipped.size() - 3] ^= 1;
  seed("bad_checksum", kDisk, flipped);
  std::vector<uint8_t> longer = valid;
  longer.push_back(0);
  seed("trailing_byte_fixed", kFix | kDisk, longer);
  // Header fields one at a time (offsets in src/cache/disk_store.hpp), the
  // checksum recomputed so that the field itself is what gets judged.
  auto patched = [&](size_t offset, std::initializer_list<uint8_t> bytes) {
    std::vector<uint8_t> b = valid;
    std::copy(bytes.begin(), bytes.end(), b.begin() + offset);
    return b;
  };
  constexpr uint8_t kWrongName = 1u << 2;
  seed("bad_magic", kFix | kDisk, patched(0, {'L', 'O', 'W', 'B', 'I', 'T', 'X'}));
  seed("format_99", kFix | kDisk, patched(8, {99, 0, 0, 0}));
  seed("nvrtc_negative", kFix | kDisk, patched(12, {0, 0, 0, 0x80}));
  seed("metadata_len_huge", kFix | kDisk, patched(48, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  seed("payload_len_huge", kFix | kDisk, patched(56, {0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}));
  seed("kind_7", kFix | kDisk, patched(64, {7}));
  seed("reserved_nonzero", kFix | kDisk, patched(70, {1}));
  seed("valid_wrong_name", kDisk | kWrongName, valid);
  seed("empty_file", kDisk, {});
}

void manifest_seeds() {
  auto seed = [](const std::string& name, const std::string& text) { put("manifest", name, text.data(), text.size()); };
  seed("one_line", "quantize op=quantize scope=per_tensor x=bf16 q=s8 scale=f32 dims=4096x4096\n");
  seed("every_key",
       "# every key, long and short names\r\n"
       "quantize op=dynamic_quantize scope=per_group x_dtype=f16 q_dtype=u4 scale_dtype=f16 dims=2x3x4x64 "
       "x_row_stride=64 axis=-1 group_size=32 qmin=0 qmax=15 alignment=8 symmetric=0\r\n"
       "\tquantize\top=fake_quantize_backward   scope=per_channel axis=2 dims=8x8x8 # trailing comment\n"
       "\n   \n#only a comment");
  seed("errors",
       "quantize op=quantize\nquantize x=bf17\nquantize dims=1x2x3x4x5\nquantize qmin=99999999999\n"
       "quantize symmetric=2\nquantize op=quantize op=dequantize\nmatmul x=f16\n");
  seed("numbers", "quantize dims=0 stride=-1 group=9223372036854775807 qmin=-2147483648 qmax=2147483647\n");
  seed("default", lowbit::cli::default_manifest_text());
  static const char binary[] = "quantize dims=4\0x4 \xff\xfe\n";
  seed("binary", std::string(binary, sizeof(binary) - 1));
  // Every op, scope and dtype name once, valid lines.
  seed("every_op_scope_dtype",
       "quantize op=quantize scope=per_tensor x=f32 q=s8 dims=7x33\n"
       "quantize op=dequantize scope=per_channel axis=0 x=f16 q=u8 dims=4x5x6\n"
       "quantize op=quantize_backward scope=per_token x=bf16 q=s4 dims=3x10\n"
       "quantize op=dequantize_backward scope=per_group group=16 x=f64 q=u4 dims=2x64\n"
       "quantize op=fake_quantize scope=per_tensor x=f32 q=s8 scale=f32 dims=100 qmin=-127 qmax=127 align=4\n"
       "quantize op=fake_quantize_backward scope=per_channel axis=-1 x=f32 q=u8 dims=3x9\n"
       "quantize op=dynamic_quantize scope=per_token x=bf16 q=s8 scale=bf16 dims=5x48 symmetric=1\n"
       "quantize op=quantize x=f32 q=s32 dims=0x4096\n");
  // A line as `lowbit prewarm --print` writes it (format_manifest_item).
  seed("canonical",
       "quantize op=quantize scope=per_group x=f16 q=s4 scale=f32 dims=3x4x96 stride=96 axis=0 group=32 qmin=-8 "
       "qmax=7 align=16 symmetric=0\n");
  seed("edge_tokens",
       "quantize =v\nquantize x=\nquantize dims=x\nquantize dims=4x\nquantize dims=+4\nquantize dims=-0\n"
       "quantize qmin=0x10\nquantize dims=99999999999999999999\nquantize stride=9223372036854775808\n"
       "wq op=matmul\nQUANTIZE op=quantize\nquantize op=quantize\rquantize op=dequantize\n"
       "quantize  op=quantize\t\tdims=1x1x1x1 # four\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_corpus OUT_DIR\n");
    return 2;
  }
  g_out = argv[1];
  plan_create_seeds();
  cache_entry_seeds();
  manifest_seeds();
  return 0;
}
