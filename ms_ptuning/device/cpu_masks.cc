// The CPU kernel of layers.keep_masks: the same dropout masks, bit for bit, as the composed int32 hash the
// devices compute, in one pass instead of ~25 MindSpore int32 kernels (see cpu_masks.py).
//
// Inputs: key int32[3] (the step's a, b, worker·a), factors int32[K, 3] (each site's s, t, words·s), threshold
// int32[1] (round(p·2^16)), scale[1] in the masks' dtype. Outputs: K masks of one shape, 0 or scale.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

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
  const int64_t tasks = static_cast<int64_t>(sites.size()) * rows, units = tasks * width;
  // threads only where a mask is large enough to repay starting them (~tens of µs)
  const int64_t threads = std::min<int64_t>({static_cast<int64_t>(std::max(1u, std::thread::hardware_concurrency())),
                                             8, std::max<int64_t>(1, units >> 17), tasks});
  if (threads <= 1) {
    fill_rows<Bits>(sites, 0, tasks, rows, width, threshold, scale);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; ++t)
    pool.emplace_back(fill_rows<Bits>, std::cref(sites), tasks * t / threads, tasks * (t + 1) / threads, rows, width,
                      threshold, scale);
  fill_rows<Bits>(sites, 0, tasks / threads, rows, width, threshold, scale);
  for (auto &thread : pool) thread.join();
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
