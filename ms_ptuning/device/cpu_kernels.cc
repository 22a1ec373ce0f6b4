// ms_ptuning's CPU kernels, each run as a MindSpore aot Custom op (cpu_kernels.py): one pass over memory where
// MindSpore 2.7's CPU graph launches a chain of slow elementwise kernels.
//
// DropoutMasks: layers.keep_masks' masks, bit for bit the composed int32 hash the devices compute.
//   Inputs: key int32[3] (the step's a, b, worker·a), factors int32[K, 3] (each site's s, t, words·s), threshold
//   int32[1] (round(p·2^16)), scale[1] in the masks' dtype. Outputs: K masks of one shape, 0 or scale.
// Gelu / GeluGrad, GeluTanh / GeluTanhGrad: Hugging Face's "gelu" (erf) and "gelu_new" (tanh) on float32, forward
//   (x → y) and backward ((x, dy) → dx), the erf forward as close to the exact function as torch's (1.2e-6), the
//   rest within ~4e-7 (tests/test_cpu_kernels.py).
// BiasGelu / BiasGeluGrad, BiasGeluTanh / BiasGeluTanhGrad: the same of a + bias, a linear layer's product and its
//   bias: forward (a, bias) → y, backward (a, bias, dy) → (da, dbias), dbias summed in a fixed order.
// LayerNorm / LayerNormGrad: torch's LayerNorm over the last axis, float32; the backward recomputes each row's
//   statistics and returns the weight and bias gradients summed in a fixed order.
// ResidualLayerNorm / ResidualLayerNormGrad: LayerNorm((a + bias)·mask + residual), BERT's output blocks (a linear
//   layer's product, its bias, dropout's mask or none, the residual) in one pass each way instead of 4 and 3 kernels.
// ScaledMaskedSoftmax / ScaledSoftmaxGrad: attention's softmax(scores·scale + mask) over the last axis, float32,
//   forward (scores, mask, scale) → probs and backward (probs, dprobs, scale) → dscores.
// MatMulNT / MatMulNN / MatMulTN, ColumnSums: a 2-D product op(a) · op(b) (+ bias over its rows) and a bias's
//   gradient (column sums in a fixed order), float32: the linear layers and their gradients.
// Attention / PrefixAttention, their Dropout forms and Grad: BERT's attention over the q/k/v projections' rows, a
//   layer's prefix keys and values in front, forward (outside training, or with dropout's mask, keeping the probs)
//   and backward, one kernel each way.
// Built with -ffp-contract=off: every CPU computes the same float operations.
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <thread>
#include <vector>

namespace {

// run body(first, last) over [0, tasks) on up to 8 threads, one where the work would not repay starting threads
template <typename Body>
void parallel_for(int64_t tasks, int64_t units, const Body &body) {
  const int64_t threads = std::min<int64_t>({static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())),
                                             8, std::max<int64_t>(1, units >> 17), tasks});
  if (threads <= 1) {
    body(0, tasks);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t) pool.emplace_back(body, tasks * t / threads, tasks * (t + 1) / threads);
  body(0, tasks / threads);
  for (auto &thread : pool) thread.join();
}

// Chris Wellons' lowbias32 up to its last xorshift; word j's units read h's halves (see keep_masks)
inline uint32_t mix(uint32_t h) {
  h = (h ^ (h >> 16)) * 0x7FEB352Du;
  return (h ^ (h >> 15)) * 0x846CA68Bu;
}

struct Site {
  uint32_t multiplier, offset;  // a·s and b·t + w·a·s·words: word j hashes multiplier·j + offset
  char *out;
};

template <typename Bits>  // uint32_t for float32 masks, uint16_t for 16-bit float masks
void fill_rows(const std::vector<Site> &sites, int64_t first, int64_t last, int64_t rows, int64_t width,
               uint32_t threshold, Bits scale) {
  const int64_t words = (width + 1) / 2, pairs = width / 2;
  for (int64_t task = first; task < last; ++task) {  // task = site · rows + row
    const Site &site = sites[task / rows];
    const int64_t row = task % rows;
    Bits *out = reinterpret_cast<Bits *>(site.out) + row * width;
    const uint32_t start = site.multiplier * static_cast<uint32_t>(row * words) + site.offset;
    for (int64_t c = 0; c < pairs; ++c) {
      const uint32_t h = mix(start + site.multiplier * static_cast<uint32_t>(c));
      out[2 * c] = (((h ^ (h >> 16)) & 0xFFFFu) >= threshold) ? scale : Bits(0);
      out[2 * c + 1] = (((h >> 16) ^ 0x8000u) >= threshold) ? scale : Bits(0);
    }
    if (width % 2) {  // an odd row's last unit reads its word's low half only
      const uint32_t h = mix(start + site.multiplier * static_cast<uint32_t>(pairs));
      out[width - 1] = (((h ^ (h >> 16)) & 0xFFFFu) >= threshold) ? scale : Bits(0);
    }
  }
}

template <typename Bits>
void fill(const std::vector<Site> &sites, int64_t rows, int64_t width, uint32_t threshold, const void *scale_ptr) {
  Bits scale;
  std::memcpy(&scale, scale_ptr, sizeof(Bits));
  const int64_t tasks = static_cast<int64_t>(sites.size()) * rows;
  parallel_for(tasks, tasks * width, [&](int64_t first, int64_t last) {
    fill_rows<Bits>(sites, first, last, rows, width, threshold, scale);
  });
}

// e^x for x ≤ 88 (0 below -87): x = k·ln2 + r, |r| ≤ ln2/2, e^r by its Taylor series to r^8 (relative error
// < 2e-9 before rounding), 2^k by the exponent bits; branch-free so that the loops vectorize
inline float exp_float(float x) {
  const float clamped = std::min(std::max(x, -87.0f), 88.0f);
  const float shifted = clamped * 1.44269504088896341f;
  const int k = static_cast<int>(shifted + (shifted >= 0.0f ? 0.5f : -0.5f));
  const float kf = static_cast<float>(k);
  const float r = (clamped - kf * 0.693145751953125f) - kf * 1.428606765330187e-06f;
  float p = 2.4801587301587302e-05f;
  p = p * r + 1.9841269841269841e-04f;
  p = p * r + 1.3888888888888889e-03f;
  p = p * r + 8.3333333333333332e-03f;
  p = p * r + 4.1666666666666664e-02f;
  p = p * r + 1.6666666666666666e-01f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (k + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale * static_cast<float>(x >= -87.0f);  // a product, not a select: GCC vectorizes it for AVX
}

// Φ(x) = ½·erfc(−x/√2), erfc by the Chebyshev fit of Numerical Recipes' erfcc (fractional error < 1.2e-7
// everywhere, so the lower tail keeps its relative precision)
inline float normal_cdf(float x) {
  const float z = std::fabs(x) * 0.70710678118654752f;
  const float t = 1.0f / (1.0f + 0.5f * z);
  float p = 0.17087277f;
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  const float tail = 0.5f * t * exp_float(p - z * z);  // ½·erfc(|x|/√2) = Φ(−|x|)
  return x >= 0.0f ? 1.0f - tail : tail;
}

// Φ(x) = ½(1 + erf(x/√2)) for the forward GELU, erf(z) = z·P(z²)/Q(z²) on |z| ≤ 3.92 and ±1 beyond (float32's
// erf there): a rational least-squares fit (P of degree 6, Q of 4; 4e-8 off erf in exact arithmetic, ~3.4e-7 in
// float32), a quarter of erfcc's operations and no exponential: 3.5× faster. Its error is absolute, as in torch's
// ½(1 + erf): the GELU is at most 1.2e-6 off (at |x| ≈ 5.3), torch's own 1.1e-6 (tests/test_cpu_kernels.py). The
// backward keeps erfcc: its x·φ(x) needs the exponential anyway
inline float normal_cdf_rational(float x) {
  const float z = std::min(std::max(x * 0.70710678118654752f, -3.92f), 3.92f), u = z * z;
  float p = 1.991988325e-08f;
  p = p * u - 1.994231490e-06f;
  p = p * u + 1.489898122e-04f;
  p = p * u + 3.973168517e-03f;
  p = p * u + 5.139825932e-02f;
  p = p * u + 2.061217693e-01f;
  p = p * u + 1.128378778e+00f;
  float q = 1.024178757e-03f;
  q = q * u + 1.488982839e-02f;
  q = q * u + 1.175676545e-01f;
  q = q * u + 5.159994286e-01f;
  q = q * u + 1.0f;
  return 0.5f + 0.5f * (z * p / q);
}

inline float normal_density(float x) { return 0.3989422804014327f * exp_float(-0.5f * x * x); }

// ½(1 + tanh(a)) = e^{2a}/(e^{2a} + 1) and ½(1 − tanh(a)) = 1/(e^{2a} + 1): no cancellation in either tail
struct HalfTanh {
  float plus, minus;
};
inline HalfTanh half_tanh(float a) {
  const float e = exp_float(2.0f * a), inverse = 1.0f / (e + 1.0f);
  return {a >= 0.0f ? 1.0f - inverse : e * inverse, inverse};
}

constexpr float kTanhScale = 0.7978845608028654f;  // √(2/π)
constexpr float kTanhCubic = 0.044715f;

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu(const float *__restrict x, float *__restrict y, int64_t first, int64_t last) {
  for (int64_t i = first; i < last; ++i) y[i] = x[i] * normal_cdf_rational(x[i]);
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_grad(const float *__restrict x, const float *__restrict dy, float *__restrict dx, int64_t first,
               int64_t last) {
  for (int64_t i = first; i < last; ++i) dx[i] = dy[i] * (normal_cdf(x[i]) + x[i] * normal_density(x[i]));
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_tanh(const float *__restrict x, float *__restrict y, int64_t first, int64_t last) {
  for (int64_t i = first; i < last; ++i) {
    const float v = x[i];
    y[i] = v * half_tanh(kTanhScale * (v + kTanhCubic * v * v * v)).plus;
  }
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void gelu_tanh_grad(const float *__restrict x, const float *__restrict dy, float *__restrict dx, int64_t first,
                    int64_t last) {
  for (int64_t i = first; i < last; ++i) {
    const float v = x[i];
    const HalfTanh half = half_tanh(kTanhScale * (v + kTanhCubic * v * v * v));
    const float sech2 = 4.0f * half.plus * half.minus;  // 1 − tanh²
    dx[i] = dy[i] * (half.plus + 0.5f * v * sech2 * kTanhScale * (1.0f + 3.0f * kTanhCubic * v * v));
  }
}

int64_t elements(int ndim, const int64_t *shape) {
  int64_t count = 1;
  for (int d = 0; d < ndim; ++d) count *= shape[d];
  return count;
}

// chunks of 16Ki elements, shared out among the threads
constexpr int64_t kChunk = 1 << 14;

template <typename Unary>
int run_unary(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Unary unary) {
  if (nparam != 2 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *x = static_cast<const float *>(params[0]);
  float *y = static_cast<float *>(params[1]);
  const int64_t count = elements(ndims[0], shapes[0]);
  parallel_for((count + kChunk - 1) / kChunk, count, [&](int64_t first, int64_t last) {
    unary(x, y, first * kChunk, std::min(last * kChunk, count));
  });
  return 0;
}

template <typename Binary>
int run_binary(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Binary binary) {
  if (nparam != 3 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *x = static_cast<const float *>(params[0]);
  const float *dy = static_cast<const float *>(params[1]);
  float *dx = static_cast<float *>(params[2]);
  const int64_t count = elements(ndims[0], shapes[0]);
  parallel_for((count + kChunk - 1) / kChunk, count, [&](int64_t first, int64_t last) {
    binary(x, dy, dx, first * kChunk, std::min(last * kChunk, count));
  });
  return 0;
}

// (N…, H) inputs are taken in blocks of kRowBlock rows: LayerNorm's weight and bias gradients, and those of a bias
// added before an activation, are summed block by block in a fixed order whatever the number of threads
constexpr int64_t kRowBlock = 16;

int64_t row_blocks(int64_t rows) { return (rows + kRowBlock - 1) / kRowBlock; }

// out (H) = Σ of `count` rows (count, H), row by row
void column_sums(const float *rows, int64_t count, int64_t width, float *out) {
  for (int64_t i = 0; i < width; ++i) out[i] = 0.0f;
  for (int64_t r = 0; r < count; ++r)
    for (int64_t i = 0; i < width; ++i) out[i] += rows[r * width + i];
}

// totals (each H) of per-block partial sums laid out block by block, each block holding one (H) row per total in
// the totals' order; added in block order: the same sums on any number of threads
void sum_blocks(const std::vector<float> &partial, int64_t blocks, int64_t width,
                std::initializer_list<float *> totals) {
  const int64_t per_block = static_cast<int64_t>(totals.size());
  int64_t row = 0;
  for (float *total : totals) {
    for (int64_t i = 0; i < width; ++i) total[i] = 0.0f;
    for (int64_t block = 0; block < blocks; ++block)
      for (int64_t i = 0; i < width; ++i) total[i] += partial[(per_block * block + row) * width + i];
    ++row;
  }
}

// The products run dnnl_sgemm, the oneDNN GEMM that MindSpore's own CPU MatMul runs (the same results on the shapes
// compared), from the libdnnl.so.2 MindSpore has loaded: each thread takes a band of the output's rows (or columns,
// for few rows) and runs it single-threaded, faster for a BERT layer's shapes than MindSpore's kernel spreading the
// same GEMM over its spinning thread pool (RESULTS.md).
using Sgemm = int (*)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t,
                      float, float *, int64_t);

Sgemm onednn_sgemm() {
  static const Sgemm sgemm = [] {
    void *library = dlopen("libdnnl.so.2", RTLD_LAZY | RTLD_NOLOAD);
    return library == nullptr ? nullptr : reinterpret_cast<Sgemm>(dlsym(library, "dnnl_sgemm"));
  }();
  return sgemm;
}

// c (m, n) = op(a) · op(b) + beta · c with c's rows ldc apart, by `sgemm`; an empty inner dimension gives
// beta · c (oneDNN's sgemm is not asked about empty products)
void gemm(Sgemm sgemm, bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const float *a,
          int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k > 0) {
    sgemm(transpose_a ? 'T' : 'N', transpose_b ? 'T' : 'N', m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  } else if (beta == 0.0f) {
    for (int64_t r = 0; r < m; ++r) std::fill(c + r * ldc, c + r * ldc + n, 0.0f);
  }
}

// rows [first, last) of c (M, N) += bias (N), columns [begin, end)
void add_bias_band(float *c, const float *bias, int64_t n, int64_t first, int64_t last, int64_t begin, int64_t end) {
  for (int64_t r = first; r < last; ++r)
    for (int64_t j = begin; j < end; ++j) c[r * n + j] += bias[j];
}

// inputs a (M, K), or (K, M) with transpose_a; b (K, N), or (N, K) with transpose_b; optionally bias (N); output
// c (M, N) = op(a) · op(b) (+ bias), row major, float32
int run_matmul(bool transpose_a, bool transpose_b, int nparam, void **params, int *ndims, int64_t **shapes,
               const char **dtypes) {
  const Sgemm sgemm = onednn_sgemm();
  if ((nparam != 3 && nparam != 4) || sgemm == nullptr || ndims[0] != 2 || ndims[1] != 2) return 1;
  for (int i = 0; i + 1 < nparam; ++i)
    if (std::strcmp(dtypes[i], "float32") != 0) return 1;
  const float *a = static_cast<const float *>(params[0]), *b = static_cast<const float *>(params[1]);
  const float *bias = nparam == 4 ? static_cast<const float *>(params[2]) : nullptr;
  float *c = static_cast<float *>(params[nparam - 1]);
  const int64_t m = shapes[0][transpose_a ? 1 : 0], k = shapes[0][transpose_a ? 0 : 1];
  const int64_t n = shapes[1][transpose_b ? 0 : 1], lda = shapes[0][1], ldb = shapes[1][1];
  const bool by_rows = m >= n;
  parallel_for(by_rows ? m : n, m * n * k / 8, [&](int64_t first, int64_t last) {
    // the band: rows [row0, row1) × columns [col0, col1) of c
    const int64_t row0 = by_rows ? first : 0, row1 = by_rows ? last : m;
    const int64_t col0 = by_rows ? 0 : first, col1 = by_rows ? n : last;
    gemm(sgemm, transpose_a, transpose_b, row1 - row0, col1 - col0, k, transpose_a ? a + row0 : a + row0 * lda,
         lda, transpose_b ? b + col0 * ldb : b + col0, ldb, 0.0f, c + row0 * n + col0, n);
    if (bias != nullptr) add_bias_band(c, bias, n, row0, row1, col0, col1);
  });
  return 0;
}

// a (N…, H) + bias (H) into h, rows [start, start + count) of a to h's rows from 0
void add_bias_rows(const float *a, const float *bias, float *h, int64_t width, int64_t start, int64_t count) {
  for (int64_t r = 0; r < count; ++r)
    for (int64_t i = 0; i < width; ++i) h[r * width + i] = a[(start + r) * width + i] + bias[i];
}

// y = unary(a + bias): inputs a (N…, H), bias (H); output y like a
template <typename Unary>
int run_bias_unary(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Unary unary) {
  if (nparam != 3 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *a = static_cast<const float *>(params[0]), *bias = static_cast<const float *>(params[1]);
  float *y = static_cast<float *>(params[2]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  parallel_for(row_blocks(rows), rows * width, [&](int64_t first, int64_t last) {
    std::vector<float> h(kRowBlock * width);
    for (int64_t block = first; block < last; ++block) {
      const int64_t start = block * kRowBlock, count = std::min(kRowBlock, rows - start);
      add_bias_rows(a, bias, h.data(), width, start, count);
      unary(h.data(), y + start * width, 0, count * width);
    }
  });
  return 0;
}

// da = binary(a + bias, dy) and dbias = Σ rows da: inputs a (N…, H), bias (H), dy like a; outputs da, dbias
template <typename Binary>
int run_bias_binary(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Binary binary) {
  if (nparam != 5 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *a = static_cast<const float *>(params[0]), *bias = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  float *da = static_cast<float *>(params[3]), *dbias = static_cast<float *>(params[4]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  const int64_t blocks = row_blocks(rows);
  std::vector<float> partial(blocks * width);
  parallel_for(blocks, rows * width, [&](int64_t first, int64_t last) {
    std::vector<float> h(kRowBlock * width);
    for (int64_t block = first; block < last; ++block) {
      const int64_t start = block * kRowBlock, count = std::min(kRowBlock, rows - start);
      add_bias_rows(a, bias, h.data(), width, start, count);
      binary(h.data(), dy + start * width, da + start * width, 0, count * width);
      column_sums(da + start * width, count, width, &partial[block * width]);
    }
  });
  sum_blocks(partial, blocks, width, {dbias});
  return 0;
}

// Row reductions in kLanes interleaved partial results, combined in a fixed order at the end: GCC vectorizes
// them (one running total is a serial chain of additions), and every CPU gets the same result
constexpr int64_t kLanes = 16;

// Σ term(i) over [0, width), in double
template <typename Term>
inline double lane_sum(int64_t width, const Term &term) {
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes)
    for (int64_t l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
  for (int64_t l = 0; i + l < width; ++l) lanes[l] += term(i + l);
  double total = 0.0;
  for (int64_t l = 0; l < kLanes; ++l) total += lanes[l];
  return total;
}

// the largest of x[0, width), width ≥ 1: a GCC vector of kLanes floats, because GCC leaves the loop over an array
// of lanes scalar for a maximum (6× slower over a row of attention scores); the maximum is exact, so the order
// of comparisons cannot change it
typedef float FloatLanes __attribute__((vector_size(sizeof(float) * kLanes)));
inline float row_max(const float *x, int64_t width) {
  FloatLanes lanes;
  for (int64_t l = 0; l < kLanes; ++l) lanes[l] = x[0];
  int64_t i = 0;
  for (; i + kLanes <= width; i += kLanes) {
    FloatLanes block;
    std::memcpy(&block, x + i, sizeof(block));
    lanes = block > lanes ? block : lanes;
  }
  float largest = lanes[0];
  for (int64_t l = 1; l < kLanes; ++l) largest = lanes[l] > largest ? lanes[l] : largest;
  for (; i < width; ++i) largest = x[i] > largest ? x[i] : largest;
  return largest;
}

struct RowStats {
  float mean, rstd;
};

// torch's statistics: the mean, then the biased variance of the centred row, in double (H terms)
inline RowStats row_stats(const float *row, int64_t width, float eps) {
  const double sum = lane_sum(width, [&](int64_t i) { return static_cast<double>(row[i]); });
  const float mean = static_cast<float>(sum / static_cast<double>(width));
  const double squares = lane_sum(width, [&](int64_t i) {
    const double centred = static_cast<double>(row[i] - mean);
    return centred * centred;
  });
  const float variance = static_cast<float>(squares / static_cast<double>(width));
  return {mean, 1.0f / std::sqrt(variance + eps)};
}

__attribute__((target_clones("avx512f", "avx2", "default")))
void layer_norm_rows(const float *__restrict x, const float *__restrict weight, const float *__restrict bias,
                     float *__restrict y, int64_t width, float eps, int64_t first, int64_t last) {
  for (int64_t r = first; r < last; ++r) {
    const float *row = x + r * width;
    float *out = y + r * width;
    const RowStats stats = row_stats(row, width, eps);
    for (int64_t i = 0; i < width; ++i) out[i] = (row[i] - stats.mean) * stats.rstd * weight[i] + bias[i];
  }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·weight, x̂ = (x − mean)·rstd; this block's Σ dy·x̂ and Σ dy
__attribute__((target_clones("avx512f", "avx2", "default")))
void layer_norm_grad_rows(const float *__restrict x, const float *__restrict weight, const float *__restrict dy,
                          float *__restrict dx, float *__restrict dweight, float *__restrict dbias, int64_t width,
                          float eps, int64_t first, int64_t last) {
  for (int64_t i = 0; i < width; ++i) dweight[i] = dbias[i] = 0.0f;
  for (int64_t r = first; r < last; ++r) {
    const float *row = x + r * width, *grad = dy + r * width;
    float *out = dx + r * width;
    const RowStats stats = row_stats(row, width, eps);
    const double sum_g = lane_sum(width, [&](int64_t i) { return static_cast<double>(grad[i] * weight[i]); });
    const double sum_gx = lane_sum(width, [&](int64_t i) {
      return static_cast<double>(grad[i] * weight[i]) * ((row[i] - stats.mean) * stats.rstd);
    });
    const float mean_g = static_cast<float>(sum_g / static_cast<double>(width));
    const float mean_gx = static_cast<float>(sum_gx / static_cast<double>(width));
    for (int64_t i = 0; i < width; ++i) {
      const float normed = (row[i] - stats.mean) * stats.rstd;
      out[i] = stats.rstd * (grad[i] * weight[i] - mean_g - normed * mean_gx);
      dweight[i] += grad[i] * normed;
      dbias[i] += grad[i];
    }
  }
}

// h = (a + bias)·mask + residual over rows [first, last) of (N, H) inputs into h's rows from 0, mask optional: what
// BERT's output block composes (dense's product, its bias, dropout, the residual) before its LayerNorm
__attribute__((target_clones("avx512f", "avx2", "default")))
void residual_rows(const float *__restrict a, const float *__restrict bias, const float *__restrict mask,
                   const float *__restrict residual, float *__restrict h, int64_t width, int64_t first, int64_t last) {
  for (int64_t r = first; r < last; ++r) {
    const float *a_row = a + r * width, *residual_row = residual + r * width;
    float *out = h + (r - first) * width;
    if (mask != nullptr) {
      const float *mask_row = mask + r * width;
      for (int64_t i = 0; i < width; ++i) out[i] = (a_row[i] + bias[i]) * mask_row[i] + residual_row[i];
    } else {
      for (int64_t i = 0; i < width; ++i) out[i] = (a_row[i] + bias[i]) + residual_row[i];
    }
  }
}

// one row of probs = softmax(scores·scale + mask), torch's way: e^(z − max z) / Σ (a row of −inf gives NaN, as in
// torch)
__attribute__((target_clones("avx512f", "avx2", "default")))
void masked_softmax_row(const float *__restrict scores, const float *__restrict mask, float scale,
                        float *__restrict probs, int64_t width) {
  for (int64_t i = 0; i < width; ++i) probs[i] = scores[i] * scale + mask[i];
  const float largest = row_max(probs, width);
  for (int64_t i = 0; i < width; ++i) probs[i] = exp_float(probs[i] - largest);
  // times the sum's reciprocal, as torch's CPU softmax does: a division per element cost an eighth of the row
  const double sum = lane_sum(width, [&](int64_t i) { return static_cast<double>(probs[i]); });
  const float inverse = 1.0f / static_cast<float>(sum);
  for (int64_t i = 0; i < width; ++i) probs[i] = probs[i] * inverse;
}

// one row of dscores = scale · y·(dy − Σ y·dy)
__attribute__((target_clones("avx512f", "avx2", "default")))
void softmax_grad_row(const float *__restrict y, const float *__restrict dy, float scale, float *__restrict dscores,
                      int64_t width) {
  const float dot = static_cast<float>(lane_sum(width, [&](int64_t i) { return static_cast<double>(y[i] * dy[i]); }));
  for (int64_t i = 0; i < width; ++i) dscores[i] = scale * (y[i] * (dy[i] - dot));
}

// Attention over the projections' rows: query rows (B·T, H), key and value rows (B·Tk, H), the heads side by
// side in each row; optionally a layer's prefix keys and values (B, heads, P, d) in front of the rows' own. Each
// thread takes whole (batch row, head) pairs; the products read a head where it lies in the rows (rows H apart)
// and write there, so no split, stack, concat or unstack is needed around them. Scores (T, P + Tk) are the
// prefix keys' columns, then the rows' own.
struct RowsAttention {
  // without a prefix the prefix pointers (and the backward's prefix gradients) are null: P = 0, so every prefix
  // product is empty and `gemm` returns before it reads or writes them
  const float *query, *key, *value, *prefix_key = nullptr, *prefix_value = nullptr;
  int64_t batch, heads, steps, width, hidden, size, own, prefix;

  // parses `inputs` float32 inputs query, key, value, [prefix key, prefix value], then (B, heads, T, P + Tk)
  // tensors from input `fourth` on; false where the shapes do not fit together
  bool parse(void **params, int *ndims, int64_t **shapes, const char **dtypes, int inputs, bool prefixed,
             int fourth) {
    for (int i = 0; i < inputs; ++i)
      if (std::strcmp(dtypes[i], "float32") != 0) return false;
    if (ndims[0] != 2 || ndims[1] != 2 || ndims[2] != 2 || ndims[fourth] != 4) return false;
    query = static_cast<const float *>(params[0]), key = static_cast<const float *>(params[1]);
    value = static_cast<const float *>(params[2]);
    if (prefixed)
      prefix_key = static_cast<const float *>(params[3]), prefix_value = static_cast<const float *>(params[4]);
    batch = shapes[fourth][0], heads = shapes[fourth][1], steps = shapes[fourth][2], width = shapes[fourth][3];
    hidden = shapes[0][1], size = heads == 0 ? 0 : hidden / heads;
    own = batch == 0 ? 0 : shapes[1][0] / batch, prefix = width - own;
    return shapes[0][0] == batch * steps && size * heads == hidden && prefix >= 0 &&
           (prefixed ? ndims[3] == 4 && shapes[3][2] == prefix && shapes[3][3] == size : prefix == 0);
  }

  // offsets of (batch row, head) `task` in the rows and in the (B, heads, ·, ·) tensors
  int64_t query_at(int64_t task) const { return (task / heads) * steps * hidden + (task % heads) * size; }
  int64_t key_at(int64_t task) const { return (task / heads) * own * hidden + (task % heads) * size; }

  template <typename Body>
  void each_task(const Body &body) const {
    parallel_for(batch * heads, batch * heads * steps * width * size, [&](int64_t first, int64_t last) {
      std::vector<float> buffer(2 * steps * width);
      for (int64_t task = first; task < last; ++task) body(task, buffer.data(), buffer.data() + steps * width);
    });
  }

  // context rows of `task` = probs (T, P + Tk, rows `width` apart) · values
  void context(Sgemm sgemm, int64_t task, const float *probs, float *out) const {
    gemm(sgemm, false, false, steps, size, prefix, probs, width, prefix_value + task * prefix * size, size, 0.0f,
         out + query_at(task), hidden);
    gemm(sgemm, false, false, steps, size, own, probs + prefix, width, value + key_at(task), hidden,
         prefix > 0 ? 1.0f : 0.0f, out + query_at(task), hidden);
  }

  // probs of `task` = softmax(q kᵀ · scale + mask) into probs, `scores` a (T, P + Tk) buffer
  void probs_of(Sgemm sgemm, int64_t task, const float *mask, float scale, float *scores, float *probs) const {
    const float *q = query + query_at(task);
    gemm(sgemm, false, true, steps, prefix, size, q, hidden, prefix_key + task * prefix * size, size, 0.0f, scores,
         width);
    gemm(sgemm, false, true, steps, own, size, q, hidden, key + key_at(task), hidden, 0.0f, scores + prefix, width);
    if (width == 0) return;  // no keys: the context is an empty sum
    for (int64_t t = 0; t < steps; ++t)
      masked_softmax_row(scores + t * width, mask + (task * steps + t) * width, scale, probs + t * width, width);
  }
};

// the forward: inputs q, k, v, [prefix k, v], mask, [dropout mask], scale; outputs context rows, [probs]
int run_attention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, bool prefixed,
                  bool dropped) {
  const Sgemm sgemm = onednn_sgemm();
  const int inputs = 5 + 2 * prefixed + dropped, mask_at = 3 + 2 * prefixed;
  RowsAttention attention;
  if (sgemm == nullptr || nparam != inputs + 1 + dropped ||
      !attention.parse(params, ndims, shapes, dtypes, inputs, prefixed, mask_at))
    return 1;
  const float *mask = static_cast<const float *>(params[mask_at]);
  const float *keep = dropped ? static_cast<const float *>(params[mask_at + 1]) : nullptr;
  const float scale = *static_cast<const float *>(params[inputs - 1]);
  float *context = static_cast<float *>(params[inputs]);
  float *saved = dropped ? static_cast<float *>(params[inputs + 1]) : nullptr;  // the probs, for the backward
  const int64_t area = attention.steps * attention.width;
  attention.each_task([&](int64_t task, float *scores, float *probs) {
    float *kept = dropped ? saved + task * area : probs;
    attention.probs_of(sgemm, task, mask, scale, scores, kept);
    if (dropped)  // the dropped probs, in the scores' buffer
      for (int64_t i = 0; i < area; ++i) scores[i] = kept[i] * keep[task * area + i];
    attention.context(sgemm, task, dropped ? scores : kept, context);
  });
  return 0;
}

// the backward: inputs q, k, v, [prefix k, v], probs, dropout mask, dcontext rows, scale; outputs dq, dk, dv,
// [dprefix k, dprefix v]
int run_attention_grad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                       bool prefixed) {
  const Sgemm sgemm = onednn_sgemm();
  const int inputs = 7 + 2 * prefixed, probs_at = 3 + 2 * prefixed;
  RowsAttention attention;
  if (sgemm == nullptr || nparam != inputs + 3 + 2 * prefixed ||
      !attention.parse(params, ndims, shapes, dtypes, inputs, prefixed, probs_at))
    return 1;
  const float *probs = static_cast<const float *>(params[probs_at]);
  const float *keep = static_cast<const float *>(params[probs_at + 1]);
  const float *dcontext = static_cast<const float *>(params[probs_at + 2]);
  const float scale = *static_cast<const float *>(params[probs_at + 3]);
  float *dquery = static_cast<float *>(params[inputs]), *dkey = static_cast<float *>(params[inputs + 1]);
  float *dvalue = static_cast<float *>(params[inputs + 2]);
  float *dprefix_key = prefixed ? static_cast<float *>(params[inputs + 3]) : nullptr;
  float *dprefix_value = prefixed ? static_cast<float *>(params[inputs + 4]) : nullptr;
  const RowsAttention &a = attention;
  const int64_t area = a.steps * a.width, steps = a.steps, width = a.width, size = a.size, hidden = a.hidden;
  attention.each_task([&](int64_t task, float *dprobs, float *dropped) {
    const float *p = probs + task * area, *k_mask = keep + task * area, *dc = dcontext + a.query_at(task);
    const float *prefix_key = a.prefix_key + task * a.prefix * size;
    const float *prefix_value = a.prefix_value + task * a.prefix * size;
    for (int64_t i = 0; i < area; ++i) dropped[i] = p[i] * k_mask[i];
    // dvalues = dropped probsᵀ · dcontext; d(dropped probs) = dcontext · valuesᵀ
    gemm(sgemm, true, false, a.prefix, size, steps, dropped, width, dc, hidden, 0.0f,
         dprefix_value + task * a.prefix * size, size);
    gemm(sgemm, true, false, a.own, size, steps, dropped + a.prefix, width, dc, hidden, 0.0f,
         dvalue + a.key_at(task), hidden);
    gemm(sgemm, false, true, steps, a.prefix, size, dc, hidden, prefix_value, size, 0.0f, dprobs, width);
    gemm(sgemm, false, true, steps, a.own, size, dc, hidden, a.value + a.key_at(task), hidden, 0.0f,
         dprobs + a.prefix, width);
    // dscores (into the dropped probs' buffer) = scale · p·(dp − Σ p·dp), dp = d(dropped probs)·mask
    for (int64_t i = 0; i < area; ++i) dprobs[i] *= k_mask[i];
    for (int64_t t = 0; t < steps; ++t)
      softmax_grad_row(p + t * width, dprobs + t * width, scale, dropped + t * width, width);
    // dquery = dscores · keys; dkeys = dscoresᵀ · query
    gemm(sgemm, false, false, steps, size, a.prefix, dropped, width, prefix_key, size, 0.0f,
         dquery + a.query_at(task), hidden);
    gemm(sgemm, false, false, steps, size, a.own, dropped + a.prefix, width, a.key + a.key_at(task), hidden,
         a.prefix > 0 ? 1.0f : 0.0f, dquery + a.query_at(task), hidden);
    gemm(sgemm, true, false, a.prefix, size, steps, dropped, width, a.query + a.query_at(task), hidden, 0.0f,
         dprefix_key + task * a.prefix * size, size);
    gemm(sgemm, true, false, a.own, size, steps, dropped + a.prefix, width, a.query + a.query_at(task), hidden, 0.0f,
         dkey + a.key_at(task), hidden);
  });
  return 0;
}

}  // namespace

extern "C" int DropoutMasks(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                            void *stream, void *extra) {
  const int count = nparam - 4;
  if (count < 1) return 1;
  const uint32_t *key = static_cast<const uint32_t *>(params[0]);
  const uint32_t *factors = static_cast<const uint32_t *>(params[1]);
  const uint32_t threshold = *static_cast<const uint32_t *>(params[2]);
  const int dims = ndims[4];
  const int64_t width = dims ? shapes[4][dims - 1] : 1;
  int64_t rows = 1;
  for (int d = 0; d + 1 < dims; ++d) rows *= shapes[4][d];
  std::vector<Site> sites(count);
  for (int k = 0; k < count; ++k)  // wrapping uint32 products: the bits of the graph's int32 ones
    sites[k] = {key[0] * factors[3 * k], key[1] * factors[3 * k + 1] + key[2] * factors[3 * k + 2],
                static_cast<char *>(params[4 + k])};
  if (rows * width == 0) return 0;
  if (std::strcmp(dtypes[4], "float32") == 0) {
    fill<uint32_t>(sites, rows, width, threshold, params[3]);
  } else if (std::strcmp(dtypes[4], "float16") == 0 || std::strcmp(dtypes[4], "bfloat16") == 0) {
    fill<uint16_t>(sites, rows, width, threshold, params[3]);
  } else {
    return 2;
  }
  return 0;
}

extern "C" int Gelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_unary(nparam, params, ndims, shapes, dtypes, gelu);
}

extern "C" int GeluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_binary(nparam, params, ndims, shapes, dtypes, gelu_grad);
}

extern "C" int GeluTanh(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_unary(nparam, params, ndims, shapes, dtypes, gelu_tanh);
}

extern "C" int GeluTanhGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                            void *) {
  return run_binary(nparam, params, ndims, shapes, dtypes, gelu_tanh_grad);
}

// inputs a (N…, H), bias (H); output y = activation(a + bias) like a
extern "C" int BiasGelu(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_bias_unary(nparam, params, ndims, shapes, dtypes, gelu);
}

// inputs a (N…, H), bias (H), dy like a; outputs da like a, dbias (H)
extern "C" int BiasGeluGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                            void *) {
  return run_bias_binary(nparam, params, ndims, shapes, dtypes, gelu_grad);
}

extern "C" int BiasGeluTanh(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                            void *) {
  return run_bias_unary(nparam, params, ndims, shapes, dtypes, gelu_tanh);
}

extern "C" int BiasGeluTanhGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                void *) {
  return run_bias_binary(nparam, params, ndims, shapes, dtypes, gelu_tanh_grad);
}

// inputs x (N…, H), weight (H), bias (H), eps (1); output y like x
extern "C" int LayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  if (nparam != 5 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *x = static_cast<const float *>(params[0]), *weight = static_cast<const float *>(params[1]);
  const float *bias = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *y = static_cast<float *>(params[4]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  parallel_for(row_blocks(rows), rows * width, [&](int64_t first, int64_t last) {
    layer_norm_rows(x, weight, bias, y, width, eps, first * kRowBlock, std::min(last * kRowBlock, rows));
  });
  return 0;
}

// inputs x (N…, H), weight (H), dy like x, eps (1); outputs dx like x, dweight (H), dbias (H)
extern "C" int LayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                             void *) {
  if (nparam != 7 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *x = static_cast<const float *>(params[0]), *weight = static_cast<const float *>(params[1]);
  const float *dy = static_cast<const float *>(params[2]);
  const float eps = *static_cast<const float *>(params[3]);
  float *dx = static_cast<float *>(params[4]), *dweight = static_cast<float *>(params[5]);
  float *dbias = static_cast<float *>(params[6]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  const int64_t blocks = row_blocks(rows);
  std::vector<float> partial(2 * blocks * width);  // per block: Σ dy·x̂, then Σ dy
  parallel_for(blocks, rows * width, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block)
      layer_norm_grad_rows(x, weight, dy, dx, &partial[2 * block * width], &partial[(2 * block + 1) * width], width,
                           eps, block * kRowBlock, std::min((block + 1) * kRowBlock, rows));
  });
  sum_blocks(partial, blocks, width, {dweight, dbias});
  return 0;
}

// inputs a (N…, H), bias (H), mask like a (only when nparam is 9), residual like a, weight (H), beta (H), eps (1);
// outputs y = LayerNorm(h) and h = (a + bias)·mask + residual, like a (the backward's input: it keeps one
// activation per block, as the composition kept the LayerNorm's input)
extern "C" int ResidualLayerNorm(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                 void *) {
  if ((nparam != 8 && nparam != 9) || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const int masked = nparam == 9;
  const float *a = static_cast<const float *>(params[0]), *bias = static_cast<const float *>(params[1]);
  const float *mask = masked ? static_cast<const float *>(params[2]) : nullptr;
  const float *residual = static_cast<const float *>(params[2 + masked]);
  const float *weight = static_cast<const float *>(params[3 + masked]);
  const float *beta = static_cast<const float *>(params[4 + masked]);
  const float eps = *static_cast<const float *>(params[5 + masked]);
  float *y = static_cast<float *>(params[6 + masked]), *h = static_cast<float *>(params[7 + masked]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  parallel_for(row_blocks(rows), rows * width, [&](int64_t first, int64_t last) {
    const int64_t start = first * kRowBlock, stop = std::min(last * kRowBlock, rows);
    residual_rows(a, bias, mask, residual, h + start * width, width, start, stop);
    layer_norm_rows(h, weight, beta, y, width, eps, start, stop);
  });
  return 0;
}

// inputs h (ResidualLayerNorm's second output), mask (only when nparam is 10), weight (H), dy like h, eps (1);
// outputs da like h, dbias (H), dresidual like h, dweight (H), dbeta (H): the sums over rows in a fixed block order
extern "C" int ResidualLayerNormGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                     void *, void *) {
  if ((nparam != 9 && nparam != 10) || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const int masked = nparam == 10;
  const float *h = static_cast<const float *>(params[0]);
  const float *mask = masked ? static_cast<const float *>(params[1]) : nullptr;
  const float *weight = static_cast<const float *>(params[1 + masked]);
  const float *dy = static_cast<const float *>(params[2 + masked]);
  const float eps = *static_cast<const float *>(params[3 + masked]);
  float *da = static_cast<float *>(params[4 + masked]), *dbias = static_cast<float *>(params[5 + masked]);
  float *dresidual = static_cast<float *>(params[6 + masked]), *dweight = static_cast<float *>(params[7 + masked]);
  float *dbeta = static_cast<float *>(params[8 + masked]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  const int64_t blocks = row_blocks(rows);
  std::vector<float> partial(3 * blocks * width);  // per block: Σ dy·x̂, Σ dy, Σ da
  parallel_for(blocks, rows * width, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      const int64_t start = block * kRowBlock, stop = std::min(start + kRowBlock, rows);
      float *sums = &partial[3 * block * width];
      layer_norm_grad_rows(h, weight, dy, dresidual, sums, sums + width, width, eps, start, stop);
      for (int64_t at = start * width; at < stop * width; ++at)
        da[at] = mask != nullptr ? dresidual[at] * mask[at] : dresidual[at];
      column_sums(da + start * width, stop - start, width, sums + 2 * width);
    }
  });
  sum_blocks(partial, blocks, width, {dweight, dbeta, dbias});
  return 0;
}

// (a, b, scale (1)) → out, all float32 and of one shape, computed row by row (last axis) by `row_of`
template <typename Row>
int run_scaled_rows(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, Row row_of) {
  if (nparam != 4 || std::strcmp(dtypes[0], "float32") != 0 || std::strcmp(dtypes[1], "float32") != 0) return 1;
  const float *a = static_cast<const float *>(params[0]), *b = static_cast<const float *>(params[1]);
  const float scale = *static_cast<const float *>(params[2]);
  float *out = static_cast<float *>(params[3]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = elements(ndims[0], shapes[0]) / width;
  parallel_for(row_blocks(rows), rows * width, [&](int64_t first, int64_t last) {
    for (int64_t r = first * kRowBlock; r < std::min(last * kRowBlock, rows); ++r)
      row_of(a + r * width, b + r * width, scale, out + r * width, width);
  });
  return 0;
}

// inputs scores (R…, S), mask like scores, scale (1); output probs like scores
extern "C" int ScaledMaskedSoftmax(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                   void *) {
  return run_scaled_rows(nparam, params, ndims, shapes, dtypes, masked_softmax_row);
}

// inputs probs (R…, S), dprobs like probs, scale (1); output dscores like probs
extern "C" int ScaledSoftmaxGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                 void *) {
  return run_scaled_rows(nparam, params, ndims, shapes, dtypes, softmax_grad_row);
}

// inputs a (M, K), b (N, K), optionally bias (N); output a · bᵀ (+ bias) (M, N): torch's Linear
extern "C" int MatMulNT(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_matmul(false, true, nparam, params, ndims, shapes, dtypes);
}

// inputs a (M, K), b (K, N), optionally bias (N); output a · b (+ bias) (M, N): GPT-2's Conv1D, Linear's input
// gradient
extern "C" int MatMulNN(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_matmul(false, false, nparam, params, ndims, shapes, dtypes);
}

// inputs a (K, M), b (K, N); output aᵀ · b (M, N): the weight gradients
extern "C" int MatMulTN(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_matmul(true, false, nparam, params, ndims, shapes, dtypes);
}

// input dy (R…, N); output (N) its column sums, added block by block in a fixed order: a bias's gradient
extern "C" int ColumnSums(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                          void *) {
  if (nparam != 2 || std::strcmp(dtypes[0], "float32") != 0) return 1;
  const float *dy = static_cast<const float *>(params[0]);
  float *sums = static_cast<float *>(params[1]);
  const int64_t width = shapes[0][ndims[0] - 1], rows = width == 0 ? 0 : elements(ndims[0], shapes[0]) / width;
  const int64_t blocks = row_blocks(rows);
  std::vector<float> partial(blocks * width);
  parallel_for(blocks, rows * width, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      const int64_t start = block * kRowBlock;
      column_sums(dy + start * width, std::min(kRowBlock, rows - start), width, &partial[block * width]);
    }
  });
  sum_blocks(partial, blocks, width, {sums});
  return 0;
}

// attention outside training: inputs query (B·T, H), key and value (B·Tk, H) rows, mask (B, heads, T, Tk), scale
// (1); output the context rows (B·T, H): softmax(q kᵀ · scale + mask) v per batch row and head
extern "C" int Attention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *, void *) {
  return run_attention(nparam, params, ndims, shapes, dtypes, false, false);
}

// Attention with prefix keys and values (B, heads, P, d) after the rows and a mask (B, heads, T, P + Tk)
extern "C" int PrefixAttention(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                               void *) {
  return run_attention(nparam, params, ndims, shapes, dtypes, true, false);
}

// Attention in training: a dropout mask (0 or 1/(1 − p)) like the mask after it; outputs the context rows and the
// probs before dropout (the backward's input)
extern "C" int AttentionDropout(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                                void *) {
  return run_attention(nparam, params, ndims, shapes, dtypes, false, true);
}

extern "C" int PrefixAttentionDropout(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                      void *, void *) {
  return run_attention(nparam, params, ndims, shapes, dtypes, true, true);
}

// inputs query, key, value rows, probs, dropout mask, dcontext rows, scale; outputs dquery, dkey, dvalue rows
extern "C" int AttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes, void *,
                             void *) {
  return run_attention_grad(nparam, params, ndims, shapes, dtypes, false);
}

// the same with prefix keys and values after the rows; outputs also dprefix keys, dprefix values
extern "C" int PrefixAttentionGrad(int nparam, void **params, int *ndims, int64_t **shapes, const char **dtypes,
                                   void *, void *) {
  return run_attention_grad(nparam, params, ndims, shapes, dtypes, true);
}
