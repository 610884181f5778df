// Family 2, prefill path (M >= 9): the tensor-core GEMM over the native layout
// (kernel_templates/wq_gemm.cuh), its heuristics table, and the one-time
// repack that lets AWQ and GPTQ checkpoints use it.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <string>

#include "common/dtype.hpp"
#include "common/error.hpp"
#include "common/json.hpp"
#include "ops/wq_internal.hpp"

namespace lowbit::wq {

namespace {

// ---- The heuristics table ---------------------------------------------------
//
// A CTA computes a BM x BN tile of Y with warps_m x warps_n warps, each warp a
// (16 tile_n) x (8 tile_m) tile of Y^T. One dequantized weight fragment feeds
// tile_m MMAs, so the dequantization cost per MMA falls with tile_m; the
// accumulators (4 tile_n tile_m floats per thread) are capped at 64 so that
// two 8-warp CTAs (or four 4-warp ones) fit on an SM at <= 128 registers.
struct TileShape {
  int bm;       // rows of X per CTA: 8 tile_m warps_m
  int warps_m;
  int tile_m;   // m8-tiles per warp
  int warps_n;
  int tile_n;   // n16-tiles per warp
  int bn() const { return 16 * tile_n * warps_n; }
  int warps() const { return warps_m * warps_n; }
};

// Rows: the M tile a plan starts from (the smallest BM >= M; 128 above 128),
// then a wide and a narrow N tile; the choice between those and split-K is
// the cost model's (choose_gemm below).
//                                 BM  wm tm  wn tn    BN  warps  warp tile (N x M)
constexpr TileShape kWide[] = {{16, 1, 2, 4, 2},    // 128   4     32 x 16
                               {32, 1, 4, 4, 2},    // 128   4     32 x 32
                               {64, 2, 4, 4, 2},    // 128   8     32 x 32
                               {128, 4, 4, 2, 4},   // 128   8     64 x 32
                               {256, 4, 8, 2, 2}};  //  64   8     32 x 64
constexpr TileShape kNarrow[] = {{16, 1, 2, 4, 1},   //  64   4     16 x 16
                                 {32, 1, 4, 4, 1},   //  64   4     16 x 32
                                 {64, 2, 4, 4, 1},   //  64   8     16 x 32
                                 {128, 4, 4, 2, 2},  //  64   8     32 x 32
                                 {256, 4, 8, 2, 1}}; //  32   8     16 x 64

// Cost model constants (only ratios matter for the choice): the sustained
// tensor rate per SM of each kernel family and tile (measured on an H100
// at M = N = K = 4096: mma.sync 128 x 128 1.6, wgmma 128 x 128 2.3, wgmma
// 256 x 128 3.35 TFLOP/s per SM), and a sustained DRAM rate.
constexpr double kFlopPerUsPerSm = 1.6e6;
constexpr double kWgmma128FlopPerUsPerSm = 2.3e6;
constexpr double kWgmma256FlopPerUsPerSm = 3.35e6;
constexpr double kBytesPerUs = 3.0e6;
constexpr double kLaunchUs = 2.0;
constexpr double kClusterBytesPerUs = 5.0e4;
constexpr int kStreamBytes = 32 * 1024;
// Stream-K: a CTA's share is at least kMinStreamChunks chunks. The other two
// only feed a stream-K plan's estimated_us in describe (choose_gemm picks
// stream-K by a measured rule, not by the estimate): an f32 tile written or
// read through L2 at ~64 bytes a clock an SM, and a ring refill (about a
// DRAM latency) per tile segment a CTA walks; both are assumptions.
constexpr double kStreamTileBytesPerUs = 1.0e5;
constexpr double kSegmentUs = 0.8;
constexpr int64_t kMinStreamChunks = 8;

struct GemmConfig {
  bool wgmma = false;        // sm_90a warpgroup kernel (wq_wgmma.cuh); else mma.sync (wq_gemm.cuh)
  TileShape tile{};
  int stages = 4;
  int group_m = 8;
  int slots = 2;             // CTAs per SM the sizes allow
  int64_t m_blocks = 0, n_blocks = 0;
  int64_t chunks = 0;        // 64-wide k-chunks
  int64_t splits = 1, chunks_per_split = 0;
  bool cluster = false;      // split-K reduced inside a thread block cluster (sm_90), not by a second kernel
  int64_t stream_ctas = 0;   // stream-K: a grid of this many CTAs sharing every tile's chunks (splits = 1); else 0
  int smem = 0;              // dynamic shared bytes
  double est_us = 0;         // the model's estimate
  bool tuned = false;        // LOWBIT_WQ_CONFIG applied
};

// Stage and epilogue sizes of wq_gemm.cuh's Gemm<Cfg> for a tile.
int stage_bytes(const TileShape& t, const lowbit_wq_matmul_desc& d) {
  const int nt = t.tile_n * t.warps_n, h = d.weight_bits / 4, gpc = d.group_size == 32 ? 2 : 1;
  const int w = nt * h * 512, s = gpc * nt * 32;
  const int z = d.symmetric ? 0 : (gpc * nt * 8 * h + 15) / 16 * 16;
  return w + s + z + t.bm * 128;
}
int epilogue_bytes(const TileShape& t) { return t.bm * (t.bn() * 2 + 16); }
// The f32 tile a CTA leaves for its cluster when the splits add up through
// distributed shared memory (wq_gemm.cuh's ClusterTile).
int cluster_tile_bytes(const TileShape& t) { return t.bm * (t.bn() + 4) * 4; }
// wq_wgmma.cuh's Wgmma<Cfg>: the X tile first, stages 1024-aligned, + 1024
// for the kernel's own alignment of the ring.
int wgmma_stage_bytes(const TileShape& t, const lowbit_wq_matmul_desc& d) {
  return (stage_bytes(t, d) + 1023) / 1024 * 1024;
}

// The warpgroup tiles (sm_90a): BM rows of X = the wgmma N; warps_n / 4
// warpgroups of 64 rows of N each (tile_n = 1: one n-tile a warp).
//                                      BM  wm tm  wn tn    BN  warps
constexpr TileShape kWgmmaTiles[] = {{128, 1, 16, 8, 1},   // 128   8   (2 warpgroups)
                                     {256, 1, 32, 8, 1},   // 128   8
                                     {128, 1, 16, 4, 1}};  //  64   4   (1 warpgroup)

// LOWBIT_WQ_CONFIG's GEMM keys, read once per plan (0 = not given).
struct Knobs {
  int kernel = 0;  // 1 mma.sync, 2 wgmma
  int bm = 0, bn = 0, splits = 0, stages = 0, occ = 0;
  int nocluster = 0;  // 1: split-K through the workspace and the reduce kernel, also on sm_90
  int streamk = 0;    // 1: stream-K grid for the chosen tile; 2: never stream-K
  bool any() const { return kernel || bm || bn || splits || stages || occ || nocluster || streamk; }
};
Knobs read_knobs() {
  Knobs k;
  k.kernel = config_knob("kernel");
  k.bm = config_knob("bm");
  k.bn = config_knob("bn");
  k.splits = config_knob("splits");
  k.stages = config_knob("stages");
  k.occ = config_knob("occ");
  k.nocluster = config_knob("nocluster");
  k.streamk = config_knob("streamk");
  return k;
}

// Clusters of up to 8 CTAs are portable (sm_90 and later).
constexpr int64_t kMaxClusterSplits = 8;

// Dynamic shared memory of a configuration: the ring, or the epilogue's tile
// if larger (+ 1024 for the warpgroup kernel's own alignment).
int config_smem(const GemmConfig& c, int stage_bytes) {
  int bytes = std::max(c.stages * stage_bytes, epilogue_bytes(c.tile));
  if (c.cluster) bytes = std::max(bytes, cluster_tile_bytes(c.tile));
  return bytes + (c.wgmma ? 1024 : 0);
}

GemmConfig evaluate(const Problem& p, const TileShape& tile, int64_t splits, const DeviceTraits& device, int occ,
                    bool cluster, bool wgmma = false, bool stream = false) {
  const lowbit_wq_matmul_desc& d = p.d;
  const int sms = std::max(device.sm_count, 1);
  GemmConfig c;
  c.wgmma = wgmma;
  c.tile = tile;
  c.chunks = ceil_div(d.k, 64);
  c.m_blocks = ceil_div(d.m, tile.bm);
  c.n_blocks = ceil_div(ceil_div(d.n, 16), tile.bn() / 16);
  c.chunks_per_split = ceil_div(c.chunks, splits);
  c.splits = ceil_div(c.chunks, c.chunks_per_split);
  c.cluster = cluster && c.splits > 1 && c.splits <= kMaxClusterSplits;
  if (stream) {
    c.splits = 1;
    c.chunks_per_split = c.chunks;
    c.cluster = false;
  }
  // Stages: as many as the CTA's share of the SM's shared memory holds
  // (mma.sync 3..8, wgmma 4..6): deep rings keep the weight stream busy at
  // small M. `occ` (the knob) overrides the CTAs an SM is sized for.
  const int want_slots = occ > 0 ? occ : wgmma ? (tile.warps() == 4 ? 2 : 1)
                                     : tile.tile_m * tile.tile_n >= 16 ? 1 : tile.warps() == 4 ? 4 : 2;
  const int budget = shared_memory_limit(device.target.sm) / want_slots - 2048;
  const int sb = wgmma ? wgmma_stage_bytes(tile, d) : stage_bytes(tile, d);
  c.stages = std::clamp(budget / sb, wgmma ? 4 : 3, wgmma ? 6 : 8);
  c.smem = config_smem(c, sb);
  // The launch bound asks for `slots` CTAs an SM, which caps the registers.
  c.slots = std::max(1, std::min(want_slots, shared_memory_limit(device.target.sm) / (c.smem + 1024)));
  // Time: the larger of tensor-core work (padded tiles included) and DRAM
  // traffic (weights once, X and Y once), spread over the grid's waves, plus
  // the split-K reduction (partials written and read, one more launch).
  const double flops = 2.0 * double(c.m_blocks * tile.bm) * double(c.n_blocks * tile.bn()) * double(d.k);
  const double bytes = double(d.n) * double(d.k) * d.weight_bits / 8.0 + double(d.m) * double(d.k) * 2.0 +
                       double(d.m) * double(d.n) * 2.0;
  const double rate = !wgmma ? kFlopPerUsPerSm : tile.bm >= 256 ? kWgmma256FlopPerUsPerSm : kWgmma128FlopPerUsPerSm;
  const double main_us = std::max(flops / (rate * sms), bytes / kBytesPerUs);
  // How well the grid fills the machine: CTAs against `slots` an SM, except
  // (a) a cluster launch, which in practice spreads its CTAs one to an SM
  // (H100: a 4-way split of 64 tiles in clusters ran 1.6x slower than
  // through the reduce kernel; choose_gemm only takes clusters that fit one
  // wave), and (b) an unsplit weight-streaming grid (M <= 32) of at least
  // 1.5 CTAs an SM whose rings keep >= kStreamBytes each in flight: it draws
  // the full DRAM bandwidth as it is (H100, 8B gate_up at M = 16: 224 CTAs
  // of 16 x 128 30.8 us, 448 of 16 x 64 34.5 us).
  const int64_t ctas = c.m_blocks * c.n_blocks * c.splits;
  if (stream) {
    // Stream-K: as many CTAs as the SMs hold at once (fewer if a share would
    // drop under kMinStreamChunks), every one with the same number of chunks.
    // The estimate adds the segments a CTA walks (about chunks per share /
    // chunks per tile + 1) and one f32 tile written and one read.
    const int64_t total = c.m_blocks * c.n_blocks * c.chunks;
    c.stream_ctas = std::max<int64_t>(1, std::min<int64_t>(int64_t(c.slots) * sms, total / kMinStreamChunks));
    const double share = double(total) / double(c.stream_ctas);
    const double segments = share / double(c.chunks) + 1.0;
    const double fill = double(c.stream_ctas) / (double(c.slots) * sms);
    c.est_us = kLaunchUs + main_us / std::max(fill, 1e-3) + segments * kSegmentUs +
               2.0 * double(tile.bm) * double(tile.bn()) * 4.0 / kStreamTileBytesPerUs;
    return c;
  }
  const bool streams_alone =
      !wgmma && tile.bm <= 32 && c.splits == 1 && 2 * ctas >= 3 * int64_t(sms) && (c.stages - 1) * sb >= kStreamBytes;
  const double score = streams_alone ? 1.0 : grid_score(ctas, c.cluster ? 1 : c.slots, sms);
  c.est_us = kLaunchUs + main_us / std::max(score, 1e-3);
  // Split-K: in a cluster, each CTA reads one tile's worth of f32 through
  // distributed shared memory (~32 bytes a clock an SM); otherwise the
  // partials go to memory and back, in one more launch.
  if (c.cluster)
    c.est_us += double(cluster_tile_bytes(tile)) / kClusterBytesPerUs;
  else if (c.splits > 1)
    c.est_us += kLaunchUs + double(c.splits) * double(d.m) * double(d.n) * 8.0 / kBytesPerUs;
  return c;
}

// How full the last round of a (non-stream-K) grid is: CTAs against the
// slots of the rounds it needs.
double fill(const GemmConfig& c, int sms) {
  const int64_t ctas = c.m_blocks * c.n_blocks * c.splits;
  const int slots = c.cluster ? 1 : c.slots;
  return grid_score(ctas, slots, std::max(sms, 1));
}

GemmConfig choose_gemm(const Problem& p, const DeviceTraits& device) {
  const lowbit_wq_matmul_desc& d = p.d;
  int row = 0;
  while (row < 3 && kWide[row].bm < d.m) ++row;
  const int64_t chunks = ceil_div(d.k, 64);
  const Knobs knobs = read_knobs();
  const bool cluster_ok = device.target.sm >= 90 && knobs.nocluster == 0;
  GemmConfig best;
  best.est_us = -1;
  const bool stream_ok = knobs.streamk != 2;
  for (const TileShape* table : {kWide, kNarrow}) {
    for (int64_t splits : {1, 2, 3, 4, 6, 8}) {
      if (splits > 1 && (chunks / splits < 8 || d.m > 256)) break;  // keep >= 512 of K per split; no split at large M
      const GemmConfig c = evaluate(p, table[row], splits, device, knobs.occ, false);
      if (best.est_us < 0 || c.est_us < best.est_us * 0.97) best = c;  // prefer wide, unsplit on near ties
    }
  }
  // On sm_90a the warpgroup kernel joins the candidates from M = 64 on
  // (its smallest M tile is 128 rows of X).
  const int kernel = knobs.kernel;
  const bool wgmma_ok = device.target.sm == 90 && device.target.arch_specific;
  if (wgmma_ok && kernel != 1 && (d.m >= 64 || kernel == 2)) {
    if (kernel == 2) best.est_us = -1;
    for (const TileShape& t : kWgmmaTiles) {
      for (int64_t splits : {1, 2, 3, 4}) {
        if (splits > 1 && (chunks / splits < 8 || d.m > 1024)) break;
        // Each split count through the reduce kernel, and for the 256-row
        // tiles (M >= 512, where the partials are large: 13.9 us of reduce
        // kernel behind a 32.6 us GEMM at M = 512 on 8B o) also pairs of
        // splits in clusters when the whole grid fits one CTA an SM (see
        // evaluate). Measured on an H100: 2-way clusters of 128 CTAs run in
        // one round, 4-way ones of 128 CTAs took two (a GPC packs whole
        // clusters only); at M = 128 clusters were not reliably faster.
        for (const bool cluster : {false, true}) {
          if (cluster && (!cluster_ok || splits != 2 || t.bm < 256)) continue;
          const GemmConfig c = evaluate(p, t, splits, device, knobs.occ, cluster, true);
          if (cluster && (!c.cluster || c.m_blocks * c.n_blocks * c.splits > device.sm_count)) continue;
          if (best.est_us < 0 || c.est_us < best.est_us * 0.97) best = c;
        }
      }
    }
  }
  // Stream-K for the 64- and 128-row tiles when the chosen grid leaves more
  // than a fifth of its last round's CTA slots idle, and each CTA's share
  // is at least kMinStreamChunks chunks. Measured (H100, f16, 8B, us, the
  // split-K plan / stream-K on the wide tile): qkv M = 64 25.7 / 21.6 (192
  // CTAs of 264 slots), qkv M = 128 26.4 / 24.5 (96 of 132); where the grid
  // was full it lost (o M = 64 15.7 / 18.3, o M = 128 16.9 / 20.4, down
  // M = 128 39.8 / 44.4: shares of 8-20 chunks, many writers a tile), at
  // M = 16 it lost everywhere (weight streaming: 11.1 / 15.8 on qkv), and on
  // the 256-row tiles it was even (qkv M = 512 57.9 / 58.1).
  if (stream_ok && best.tile.bm >= 64 && best.tile.bm <= 128 && !best.cluster &&
      fill(best, device.sm_count) <= 0.8) {
    const TileShape& t = best.wgmma ? kWgmmaTiles[0] : kWide[row];
    const GemmConfig c = evaluate(p, t, 1, device, knobs.occ, false, best.wgmma, true);
    if (c.stream_ctas >= int64_t(c.slots) * device.sm_count) best = c;  // a full grid of long enough shares
  }
  // LOWBIT_WQ_CONFIG: bm (16..256), bn (wide 1 / narrow 2), splits, stages;
  // with kernel=2: bm 128/256 and bn 1 (two warpgroups) / 2 (one).
  const int bm = knobs.bm, bn = knobs.bn, splits = knobs.splits, stages = knobs.stages;
  if (knobs.any()) {
    const bool wg = best.wgmma;
    TileShape t;
    if (wg) {
      t = bn == 2 ? kWgmmaTiles[2] : bm >= 256 ? kWgmmaTiles[1] : bm > 0 ? kWgmmaTiles[0] : best.tile;
    } else {
      int r = row;
      if (bm > 0) {
        r = 0;
        while (r < 4 && kWide[r].bm < bm) ++r;
      }
      t = (bn == 2 || (bn == 0 && best.tile.bn() != kWide[row].bn())) ? kNarrow[r] : kWide[r];
    }
    const bool stream = knobs.streamk == 1 || (knobs.streamk == 0 && splits == 0 && best.stream_ctas > 0);
    best = evaluate(p, t, splits > 0 ? std::min(splits, 16) : best.splits, device, knobs.occ, cluster_ok, wg, stream);
    if (stages > 0) {
      best.stages = std::clamp(stages, wg ? 3 : 2, 8);
      best.smem = config_smem(best, wg ? wgmma_stage_bytes(t, d) : stage_bytes(t, d));
    }
    best.tuned = true;
  }
  if (best.smem > shared_memory_limit(device.target.sm))
    fail(LOWBIT_UNSUPPORTED,
         "the prefill GEMM tile ({}x{}, {} stages, set through LOWBIT_WQ_CONFIG) needs {} bytes of shared memory per "
         "block; {} allows {}",
         best.tile.bm, best.tile.bn(), best.stages, best.smem, device.target.name(), shared_memory_limit(device.target.sm));
  return best;
}

// ---- The plan ---------------------------------------------------------------

class GemmPlan final : public OpPlan {
 public:
  GemmPlan(const Problem& p, const DeviceTraits& device) : p_(p), sm_count_(std::max(device.sm_count, 1)) {
    const lowbit_wq_matmul_desc& d = p.d;
    c_ = choose_gemm(p, device);
    layout_ = wq_native_layout(d.n, d.k, d.weight_bits, d.group_size, d.symmetric != 0, d.act_order != 0, 2);
    repack_ = d.format != LOWBIT_WQ_FORMAT_NATIVE;
    uint64_t offset = 0;
    if (repack_) {
      specs_ = repack_specs(p);
      native_offset_ = offset;
      offset += align256(uint64_t(layout_.total_bytes));
    }
    if (d.act_order) {
      permute_index_ = specs_.size();
      KernelSpec s = base_spec("wq_matmul.cuh", "lowbit::wq_permute_kernel", "lowbit::WqPermuteParams", 256);
      s.types = {{"AT", device_type(d.act_dtype)}};
      specs_.push_back(std::move(s));
      xp_offset_ = offset;
      offset += align256(uint64_t(d.m) * uint64_t(d.k) * 2);
    }
    const TileShape& t = c_.tile;
    KernelSpec s = c_.wgmma ? base_spec("wq_wgmma.cuh", "lowbit::wq_wgmma_kernel", "lowbit::WqMatmulParams", 32 * t.warps())
                            : base_spec("wq_gemm.cuh", "lowbit::wq_gemm_kernel", "lowbit::WqMatmulParams", 32 * t.warps());
    s.types = {{"AT", device_type(d.act_dtype)}, {"ST", device_type(d.scale_dtype)}};
    if (c_.wgmma) {
      s.constants = {{"kBits", std::to_string(d.weight_bits)},     {"kGroup", std::to_string(d.group_size)},
                     {"kSym", d.symmetric ? "true" : "false"},      {"kWarpgroups", std::to_string(t.warps_n / 4)},
                     {"kTileM", std::to_string(t.bm)},              {"kStages", std::to_string(c_.stages)},
                     {"kGroupM", std::to_string(c_.group_m)},
                     {"kStreamK", c_.stream_ctas > 0 ? "true" : "false"}};
    } else {
      s.constants = {{"kBits", std::to_string(d.weight_bits)},   {"kGroup", std::to_string(d.group_size)},
                     {"kSym", d.symmetric ? "true" : "false"},    {"kWarpsN", std::to_string(t.warps_n)},
                     {"kWarpsM", std::to_string(t.warps_m)},      {"kTileN", std::to_string(t.tile_n)},
                     {"kTileM", std::to_string(t.tile_m)},        {"kStages", std::to_string(c_.stages)},
                     {"kGroupM", std::to_string(c_.group_m)},
                     {"kStreamK", c_.stream_ctas > 0 ? "true" : "false"}};
    }
    // Up to 16 warps an SM (<= 128 registers a thread), except for warp
    // tiles with 64 accumulators a thread (the 128-row tiles): one CTA of 8
    // warps, registers as needed.
    s.min_blocks_per_sm = c_.slots;
    s.dynamic_shared_bytes = c_.smem;
    gemm_index_ = specs_.size();
    specs_.push_back(std::move(s));
    if (c_.stream_ctas > 0) {
      flags_offset_ = offset;
      offset += align256(uint64_t(c_.stream_ctas) * 8);
      partial_offset_ = offset;
      offset += align256(uint64_t(c_.stream_ctas) * uint64_t(t.bm) * uint64_t(t.bn()) * 4);
    }
    if (c_.splits > 1 && !c_.cluster) {
      KernelSpec r = base_spec("wq_matmul.cuh", "lowbit::wq_reduce_kernel", "lowbit::WqReduceParams", 256);
      r.types = {{"AT", device_type(d.act_dtype)}};
      specs_.push_back(std::move(r));
      partial_offset_ = offset;
      offset += align256(uint64_t(c_.splits) * uint64_t(d.m) * uint64_t(d.n) * 4);
    }
    workspace_ = offset;
  }

  const char* family() const override { return "wq"; }
  const std::vector<KernelSpec>& kernels() const override { return specs_; }
  size_t workspace_size() const override { return size_t(workspace_); }

  void run(const RunArgs& args, uint64_t workspace, size_t, const CUfunction* functions, CUstream stream) const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    const int64_t rows = run_rows(args, d);
    WqMatmulParams k{};
    k.x = args.get(LOWBIT_ARG_X, "activations", true, 16);
    k.y = args.get(LOWBIT_ARG_Y, "output", true, 2);
    k.bias = d.has_bias ? args.get(LOWBIT_ARG_BIAS, "bias", true, 2) : 0;
    uint64_t native = 0;
    if (repack_) {
      const RepackSources src = repack_sources(args, d);
      native = workspace + native_offset_;
      // One-time repack: again only when the sources or the workspace change.
      std::lock_guard<std::mutex> lock(repack_mutex_);
      if (!repacked_ || std::memcmp(&src, &repacked_from_, sizeof(src)) != 0 || workspace != repacked_into_) {
        launch_repack(p_, layout_, src, native, functions, sm_count_, stream);
        repacked_ = true;
        repacked_from_ = src;
        repacked_into_ = workspace;
      }
    } else {
      native = args.get(LOWBIT_ARG_W_NATIVE, "native weights", true, 16);
    }
    k.w = native;
    k.scale = native + uint64_t(layout_.scale_offset);
    k.zero = d.symmetric ? 0 : native + uint64_t(layout_.zero_offset);
    k.n_tiles = layout_.nt;
    k.m = rows;
    k.m_plan = d.m;
    k.n = d.n;
    k.k = d.k;
    k.x_stride = p_.x_stride;
    k.y_stride = p_.y_stride;
    k.ngroups = p_.ngroups;
    k.k_steps = c_.chunks;
    k.steps_per_split = c_.chunks_per_split;
    if (d.act_order) {
      launch_permute(p_, k.x, workspace + xp_offset_, native + uint64_t(layout_.perm_offset), rows,
                     functions[permute_index_], sm_count_, stream);
      k.x = workspace + xp_offset_;
      k.x_stride = d.k;
    }
    if (c_.cluster)
      k.cluster_splits = c_.splits;
    else if (c_.splits > 1 || c_.stream_ctas > 0)
      k.partial = workspace + partial_offset_;
    const int64_t m_blocks = ceil_div(rows, c_.tile.bm);
    unsigned grid = unsigned(m_blocks * c_.n_blocks);
    if (c_.stream_ctas > 0) {
      // Fewer rows than the plan's m: fewer tiles, at most one CTA a chunk.
      k.stream_ctas = std::min(c_.stream_ctas, m_blocks * c_.n_blocks * c_.chunks);
      k.stream_flags = workspace + flags_offset_;
      k.stream_nonce = next_nonce();
      grid = unsigned(k.stream_ctas);
    }
    launch_kernel(functions[gemm_index_], grid, unsigned(c_.splits), 1, unsigned(32 * c_.tile.warps()),
                  size_t(c_.smem), stream, &k, false, c_.cluster ? unsigned(c_.splits) : 1u);
    if (c_.splits > 1 && !c_.cluster)
      launch_reduce(p_, k.partial, k.y, k.bias, rows, c_.splits, functions[gemm_index_ + 1], sm_count_, stream);
  }

  std::string describe() const override {
    const lowbit_wq_matmul_desc& d = p_.d;
    const TileShape& t = c_.tile;
    std::string config = JsonObject()
                             .add("kernel", c_.wgmma ? "gemm (wgmma m64nBMk16, A from registers, cp.async)"
                                                     : "gemm (mma.sync m16n8k16, cp.async)")
                             .add("tile_m", int64_t(t.bm))
                             .add("tile_n", int64_t(t.bn()))
                             .add("tile_k", int64_t(64))
                             .add("warps", fmt::format("{}x{}", t.warps_m, t.warps_n))
                             .add("warp_tile", c_.wgmma ? fmt::format("{}x16 (warpgroup {}x64)", t.bm, t.bm)
                                                        : fmt::format("{}x{}", 8 * t.tile_m, 16 * t.tile_n))
                             .add("stages", int64_t(c_.stages))
                             .add("shared_bytes", int64_t(c_.smem))
                             .add("ctas_per_sm", int64_t(c_.slots))
                             .add("split_k", c_.splits)
                             .add("chunks_per_split", c_.chunks_per_split)
                             .add("split_k_reduce", c_.stream_ctas > 0 ? "stream-K (ordered fixup in the GEMM)"
                                                    : c_.splits == 1   ? "none"
                                                    : c_.cluster       ? "cluster (distributed shared memory)"
                                                                       : "workspace + reduce kernel")
                             .add("stream_ctas", c_.stream_ctas)
                             .add("grid", c_.stream_ctas > 0 ? fmt::format("{}x1", c_.stream_ctas)
                                                             : fmt::format("{}x{}", c_.m_blocks * c_.n_blocks, c_.splits))
                             .add("estimated_us", c_.est_us)
                             .add("from_env", c_.tuned)
                             .str();
    return matmul_problem_json(p_)
        .add("exact_weights", false)
        .add("path", repack_ ? "prefill: one-time repack into the workspace, then the tensor-core GEMM"
                              : d.act_order ? "prefill: tensor-core GEMM with permuted X" : "prefill: tensor-core GEMM")
        .raw("config", config)
        .str();
  }

 private:
  Problem p_;
  int sm_count_;
  GemmConfig c_;
  WqNativeLayout layout_{};
  bool repack_ = false;
  size_t permute_index_ = 0, gemm_index_ = 0;
  uint64_t native_offset_ = 0, xp_offset_ = 0, partial_offset_ = 0, flags_offset_ = 0, workspace_ = 0;
  // Stream-K flags hold a run's nonce: distinct per run (and per plan), never 0.
  mutable std::atomic<uint64_t> runs_{0};
  uint64_t next_nonce() const {
    uint64_t z = runs_.fetch_add(1, std::memory_order_relaxed) + uint64_t(reinterpret_cast<uintptr_t>(this));
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;  // splitmix64's finalizer
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return z == 0 ? 1 : z;
  }
  std::vector<KernelSpec> specs_;
  mutable std::mutex repack_mutex_;
  mutable bool repacked_ = false;
  mutable RepackSources repacked_from_{};
  mutable uint64_t repacked_into_ = 0;
};

}  // namespace

std::unique_ptr<OpPlan> create_gemm_plan(const Problem& p, const DeviceTraits& device) {
  return std::make_unique<GemmPlan>(p, device);
}

}  // namespace lowbit::wq
