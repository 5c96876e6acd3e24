// Compiled CPU kernel of the spatially differentiated filterbank (audioexp.features.sd_filterbank).
//
// Built on first use with torch.utils.cpp_extension.load (g++ and ninja); when that fails the
// Python side falls back to the BLAS path and says so once. Tested against the per-filter
// scipy.signal.lfilter loop (tests/unit/test_sd_filterbank.py).
//
// What it computes, for each utterance b and output band i (all filters share the numerator):
//   u[t]   = x[t] - x[t-2]                                  (1 - z^-2), zero initial conditions
//   v_j[t] = u[t] - a1_j v_j[t-1] - a2_j v_j[t-2]           1 / A_j(z), one per filter j
//   y_j[t] = g_j v_j[t]                                      the filter outputs (eq. 1)
// then k spatial differentiations of the outputs, y_i <- y_(i+1) - y_i, with the top band set
// to zero after each intermediate differentiation and to a copy of the band below after the
// last one (the paper's padding), exactly as sd_filterbank_reference does.
//
// Why it is fast: time is the outer loop and the filters the inner one, so the recursion of all
// filters advances together (independent lanes: the compiler vectorises over filters and the
// latency of each filter's recursion is hidden by the others); the k differences are one pass over
// the band vector of a time step (the weights of audioexp's differentiation_matrix); the band
// vectors of kTile time steps gather in a cache-resident tile, written to the band-major output
// with 4 x 4 in-register transposes, so every output sample is written once. Work items are
// (utterance, group of output bands; a group also computes the k filters above it that its
// differences reach), shared among threads of torch's OpenMP runtime. Measured speed:
// bench/bench_sd_filterbank.py and experiments/asvspoof2017.md.

#include <torch/extension.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <type_traits>
#include <cstdint>
#include <vector>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#ifndef SD_TILE
#define SD_TILE 256  // time steps per tile: 256 x 80 doubles (160 kB) stay in L2; 32-2048 measured
#endif

namespace {

// One time step of every filter: v_j[t] = u[t] - a1_j v_j[t-1] - a2_j v_j[t-2], y_j = g_j v_j[t].
// (The arguments are restrict-qualified so that the compiler vectorises over filters.)
template <typename scalar_t>
inline void advance(int64_t nf, scalar_t u, const scalar_t* __restrict a1, const scalar_t* __restrict a2,
                    const scalar_t* __restrict g, scalar_t* __restrict v1, scalar_t* __restrict v2,
                    scalar_t* __restrict y) {
  for (int64_t j = 0; j < nf; ++j) {
    const scalar_t v = u - a1[j] * v1[j] - a2[j] * v2[j];
    v2[j] = v1[j];
    v1[j] = v;
    y[j] = g[j] * v;
  }
}

// The k-th difference of bands 0..n-1 in one pass: row[i] = sum_m inner[m] y[i + m], m < w.
template <typename scalar_t, int W>
inline void difference(int64_t n, int64_t w_runtime, const scalar_t* __restrict inner,
                       const scalar_t* __restrict y, scalar_t* __restrict row) {
  const int64_t w = W > 0 ? W : w_runtime;
  for (int64_t i = 0; i < n; ++i) {
    scalar_t acc = inner[0] * y[i];
    for (int64_t m = 1; m < w; ++m) acc += inner[m] * y[i + m];
    row[i] = acc;
  }
}

// Write a time-major tile (steps x nout, row stride `stride`) into band-major `out` (row stride n):
// each band's run of the tile is written once. In float64 with AVX2, 4 x 4 blocks are transposed
// in registers.
template <typename scalar_t>
inline void store_tile(const scalar_t* __restrict tile, int64_t stride, int64_t steps, int64_t nout,
                       scalar_t* __restrict out, int64_t n) {
  int64_t i0 = 0, s_blocked = 0;
#ifdef __AVX2__
  if constexpr (std::is_same_v<scalar_t, double>) {
    s_blocked = steps / 4 * 4;
    for (; i0 + 4 <= nout; i0 += 4) {
      for (int64_t s = 0; s < s_blocked; s += 4) {
        const __m256d r0 = _mm256_load_pd(tile + s * stride + i0);  // bands i0..i0+3 at time s
        const __m256d r1 = _mm256_load_pd(tile + (s + 1) * stride + i0);
        const __m256d r2 = _mm256_load_pd(tile + (s + 2) * stride + i0);
        const __m256d r3 = _mm256_load_pd(tile + (s + 3) * stride + i0);
        const __m256d t0 = _mm256_unpacklo_pd(r0, r1), t1 = _mm256_unpackhi_pd(r0, r1);
        const __m256d t2 = _mm256_unpacklo_pd(r2, r3), t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(out + i0 * n + s, _mm256_permute2f128_pd(t0, t2, 0x20));
        _mm256_storeu_pd(out + (i0 + 1) * n + s, _mm256_permute2f128_pd(t1, t3, 0x20));
        _mm256_storeu_pd(out + (i0 + 2) * n + s, _mm256_permute2f128_pd(t0, t2, 0x31));
        _mm256_storeu_pd(out + (i0 + 3) * n + s, _mm256_permute2f128_pd(t1, t3, 0x31));
      }
      for (int64_t i = i0; i < i0 + 4; ++i) {
        for (int64_t s = s_blocked; s < steps; ++s) out[i * n + s] = tile[s * stride + i];
      }
    }
  }
#endif
  for (int64_t i = i0; i < nout; ++i) {
    for (int64_t s = 0; s < steps; ++s) out[i * n + s] = tile[s * stride + i];
  }
}

// One work item: utterance x (n samples), output bands [band_lo, band_hi), written to out
// (band-major, n per band). W: k + 1 known at compile time (0: any, read from w_runtime).
template <typename scalar_t, int W>
void filter_item(const scalar_t* __restrict x, int64_t n, const scalar_t* __restrict a1_all,
                 const scalar_t* __restrict a2_all, const scalar_t* __restrict g_all, int64_t num_filters,
                 const scalar_t* __restrict inner, const scalar_t* __restrict top, int64_t w_runtime,
                 int64_t band_lo, int64_t band_hi, scalar_t* __restrict out) {
  const int64_t w = W > 0 ? W : w_runtime;  // taps of the differentiated bands (k + 1)
  const int64_t k = w - 1;
  // Filters [f_lo, f_hi) cover the bands' support: band i < N - k sums filters i..i+k with the
  // weights `inner`; band i >= N - k (the paper's padding) sums filters N-w..N-1 with top[i-(N-k)].
  const int64_t f_lo = std::min(band_lo, std::max<int64_t>(0, num_filters - w));
  const int64_t f_hi = std::min(num_filters, band_hi + k);
  const int64_t nf = f_hi - f_lo;
  const int64_t shift = band_lo - f_lo;                                   // band i reads y[i - f_lo ...]
  const int64_t n_inner = std::max<int64_t>(0, std::min(band_hi, num_filters - k) - band_lo);
  const int64_t nout = band_hi - band_lo;
  constexpr int64_t kTile = SD_TILE;  // time steps per tile
  const int64_t stride = (nout + 3) / 4 * 4;  // rows of the tile start on 32-byte boundaries
  std::vector<scalar_t> v1_buf(nf, scalar_t(0)), v2_buf(nf, scalar_t(0)), y_buf(nf, scalar_t(0));
  std::vector<scalar_t> a1_buf(a1_all + f_lo, a1_all + f_hi), a2_buf(a2_all + f_lo, a2_all + f_hi);
  std::vector<scalar_t> g_buf(g_all + f_lo, g_all + f_hi);
  if (W == 1) {  // k = 0: the band is the filter output (times inner[0], folded into the gain)
    for (auto& gj : g_buf) gj *= inner[0];
  }
  scalar_t* __restrict v1 = v1_buf.data();  // v_j[t-1]
  scalar_t* __restrict v2 = v2_buf.data();  // v_j[t-2]
  const scalar_t* __restrict a1 = a1_buf.data();
  const scalar_t* __restrict a2 = a2_buf.data();
  const scalar_t* __restrict g = g_buf.data();
  scalar_t* y = y_buf.data();  // the filter outputs at time t
  std::vector<scalar_t> tile_buf(kTile * stride + 8);
  scalar_t* __restrict tile = tile_buf.data();
  while (reinterpret_cast<uintptr_t>(tile) % 32) ++tile;
  const scalar_t* ys = y + shift;
  const scalar_t* ytop = y + (num_filters - w - f_lo);
  scalar_t xm1 = 0, xm2 = 0;
  for (int64_t t0 = 0; t0 < n; t0 += kTile) {
    const int64_t steps = std::min(kTile, n - t0);
    for (int64_t s = 0; s < steps; ++s) {
      const scalar_t xt = x[t0 + s];
      const scalar_t u = xt - xm2;
      xm2 = xm1;
      xm1 = xt;
      scalar_t* __restrict row = tile + s * stride;  // the output bands at time t0 + s
      scalar_t* yt = W == 1 ? row : y;
      advance(nf, u, a1, a2, g, v1, v2, yt);
      if (W == 1) continue;
      difference<scalar_t, W>(n_inner, w, inner, ys, row);
      for (int64_t i = n_inner; i < nout; ++i) {     // the top bands
        const scalar_t* __restrict c = top + (band_lo + i - (num_filters - k)) * w;
        scalar_t acc = 0;
        for (int64_t m = 0; m < w; ++m) acc += c[m] * ytop[m];
        row[i] = acc;
      }
    }
    store_tile(tile, stride, steps, nout, out + t0, n);
  }
}

template <typename scalar_t>
void run_item(int64_t w, const scalar_t* x, int64_t n, const scalar_t* a1, const scalar_t* a2, const scalar_t* g,
              int64_t nfilt, const scalar_t* inner, const scalar_t* top, int64_t lo, int64_t hi, scalar_t* out) {
  switch (w) {  // the paper's k = 0, 2, 4, 6 (and the odd ones) unrolled; any other k works too
    case 1: return filter_item<scalar_t, 1>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 2: return filter_item<scalar_t, 2>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 3: return filter_item<scalar_t, 3>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 4: return filter_item<scalar_t, 4>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 5: return filter_item<scalar_t, 5>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 6: return filter_item<scalar_t, 6>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    case 7: return filter_item<scalar_t, 7>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
    default: return filter_item<scalar_t, 0>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, out);
  }
}

// All work items (utterance, group of `group` bands), shared among `threads` threads.
template <typename scalar_t>
void run_all(const scalar_t* xp, int64_t bsz, int64_t n, const scalar_t* a1p, const scalar_t* a2p,
             const scalar_t* gp, int64_t nfilt, const scalar_t* ip, const scalar_t* tp, int64_t w, int64_t group,
             int64_t threads, scalar_t* op) {
  const int64_t ngroups = (nfilt + group - 1) / group;
  const int64_t items = bsz * ngroups;
  auto run = [&](int64_t item) {
    const int64_t b = item / ngroups, lo = (item % ngroups) * group, hi = std::min(nfilt, lo + group);
    run_item<scalar_t>(w, xp + b * n, n, a1p, a2p, gp, nfilt, ip, tp, lo, hi, op + (b * nfilt + lo) * n);
  };
#ifdef _OPENMP
  // torch's own OpenMP runtime (its libgomp.so.1 is already loaded): its threads do the work,
  // instead of spinning after torch's last parallel op while threads of ours wait for the cores
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t item = 0; item < items; ++item) run(item);
#else
  std::atomic<int64_t> next(0);
  auto worker = [&] {
    for (int64_t item = next++; item < items; item = next++) run(item);
  };
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
#endif
}

// x (batch, time); a1, a2, gain (filters,): A_j(z) = 1 + a1_j z^-1 + a2_j z^-2 and g_j;
// inner (w,): the weights of an inner band on filters i..i+k; top (k, w): the weights of the
// top k bands on filters N-w..N-1 (both rows of audioexp's differentiation_matrix);
// out (batch, filters, time), written in full. Bands are split into groups of `group` for
// `num_threads` threads.
void sd_filterbank_cpu(torch::Tensor x, torch::Tensor a1, torch::Tensor a2, torch::Tensor gain,
                       torch::Tensor inner, torch::Tensor top, int64_t group, int64_t num_threads,
                       torch::Tensor out) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu(), "x must be a contiguous CPU (batch, time) tensor");
  const int64_t bsz = x.size(0), n = x.size(1), nfilt = a1.size(0), w = inner.size(0);
  for (const auto& t : {a1, a2, gain, inner, top, out}) {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == x.scalar_type(),
                "coefficients and out must be contiguous CPU tensors of x's dtype");
  }
  TORCH_CHECK(a2.size(0) == nfilt && gain.size(0) == nfilt, "a1, a2 and gain must have one value per filter");
  TORCH_CHECK(w >= 1 && w <= nfilt, "inner must have 1 to num_filters weights");
  TORCH_CHECK(top.dim() == 2 && top.size(0) == w - 1 && top.size(1) == w, "top must have shape (k, k + 1)");
  TORCH_CHECK(out.dim() == 3 && out.size(0) == bsz && out.size(1) == nfilt && out.size(2) == n,
              "out must have shape (batch, filters, time)");
  group = std::max<int64_t>(1, std::min(group, nfilt));
  const int64_t items = bsz * ((nfilt + group - 1) / group);
  const int64_t threads = std::max<int64_t>(1, std::min(num_threads, items));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "sd_filterbank_cpu", [&] {
    run_all<scalar_t>(x.data_ptr<scalar_t>(), bsz, n, a1.data_ptr<scalar_t>(), a2.data_ptr<scalar_t>(),
                      gain.data_ptr<scalar_t>(), nfilt, inner.data_ptr<scalar_t>(), top.data_ptr<scalar_t>(), w,
                      group, threads, out.data_ptr<scalar_t>());
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sd_filterbank_cpu", &sd_filterbank_cpu, "Spatially differentiated IIR filterbank (CPU)",
        py::call_guard<py::gil_scoped_release>());
}
