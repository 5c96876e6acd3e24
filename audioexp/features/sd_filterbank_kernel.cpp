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
//
// Two entry points share the filter loop (filter_item, which hands each tile to a sink):
// sd_filterbank_cpu writes the band signals; sd_centroids_cpu (the replay front-end, issue 17)
// turns each tile of band vectors, while it is in cache, into the rectified envelope's DFT and
// CF/CM per frame, and never stores the bands (see "The replay front-end fused" below; tested
// against the torch path in tests/unit/test_replay_speed.py; bench/bench_replay_frontend.py).

#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <atomic>
#include <thread>
#include <type_traits>
#include <cstdint>
#include <vector>
#ifdef __AVX2__
#include <immintrin.h>
#endif

#ifndef SD_STRIP
#define SD_STRIP 1024  // bands per strip of the chunk transform (1024: the whole tile; 8-16 measured no faster)
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

// One work item: utterance x (its first n samples), output bands [band_lo, band_hi), handed to
// `sink` a tile at a time: sink(tile, stride, steps, t0) gets the band vectors of time steps
// t0 .. t0 + steps - 1 (steps <= tile_steps), band i - band_lo of step t0 + s at tile[s * stride + i].
// W: k + 1 known at compile time (0: any, read from w_runtime).
template <typename scalar_t, int W, typename Sink>
void filter_item(const scalar_t* __restrict x, int64_t n, const scalar_t* __restrict a1_all,
                 const scalar_t* __restrict a2_all, const scalar_t* __restrict g_all, int64_t num_filters,
                 const scalar_t* __restrict inner, const scalar_t* __restrict top, int64_t w_runtime,
                 int64_t band_lo, int64_t band_hi, int64_t tile_steps, Sink& sink) {
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
  const int64_t kTile = tile_steps;  // time steps per tile
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
    sink(static_cast<const scalar_t*>(tile), stride, steps, t0);  // the band vectors of steps t0 .. t0 + steps - 1
  }
}

template <typename scalar_t, typename Sink>
void run_item(int64_t w, const scalar_t* x, int64_t n, const scalar_t* a1, const scalar_t* a2, const scalar_t* g,
              int64_t nfilt, const scalar_t* inner, const scalar_t* top, int64_t lo, int64_t hi, int64_t tile_steps,
              Sink& sink) {
  switch (w) {  // the paper's k = 0, 2, 4, 6 (and the odd ones) unrolled; any other k works too
    case 1: return filter_item<scalar_t, 1>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 2: return filter_item<scalar_t, 2>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 3: return filter_item<scalar_t, 3>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 4: return filter_item<scalar_t, 4>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 5: return filter_item<scalar_t, 5>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 6: return filter_item<scalar_t, 6>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    case 7: return filter_item<scalar_t, 7>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
    default: return filter_item<scalar_t, 0>(x, n, a1, a2, g, nfilt, inner, top, w, lo, hi, tile_steps, sink);
  }
}

// Run item(0), ..., item(items - 1) on `threads` threads.
template <typename Item>
void parallel_items(int64_t items, int64_t threads, const Item& item) {
#ifdef _OPENMP
  // torch's own OpenMP runtime (its libgomp.so.1 is already loaded): its threads do the work,
  // instead of spinning after torch's last parallel op while threads of ours wait for the cores
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t i = 0; i < items; ++i) item(i);
#else
  std::atomic<int64_t> next(0);
  auto worker = [&] {
    for (int64_t i = next++; i < items; i = next++) item(i);
  };
  std::vector<std::thread> pool;
  for (int64_t i = 1; i < threads; ++i) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
#endif
}

// All work items (utterance, group of `group` bands), shared among `threads` threads.
template <typename scalar_t>
void run_all(const scalar_t* xp, int64_t bsz, int64_t n, const scalar_t* a1p, const scalar_t* a2p,
             const scalar_t* gp, int64_t nfilt, const scalar_t* ip, const scalar_t* tp, int64_t w, int64_t group,
             int64_t threads, scalar_t* op) {
  const int64_t ngroups = (nfilt + group - 1) / group;
  parallel_items(bsz * ngroups, threads, [&](int64_t item) {
    const int64_t b = item / ngroups, lo = (item % ngroups) * group, hi = std::min(nfilt, lo + group);
    scalar_t* out = op + (b * nfilt + lo) * n;
    auto store = [&](const scalar_t* tile, int64_t stride, int64_t steps, int64_t t0) {
      store_tile(tile, stride, steps, hi - lo, out + t0, n);
    };
    run_item<scalar_t>(w, xp + b * n, n, a1p, a2p, gp, nfilt, ip, tp, lo, hi, SD_TILE, store);
  });
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


// ---- The replay front-end fused behind the filters: envelope spectra and eq. 6/7 (float64) ----
//
// What it computes, per utterance and band (audioexp.features.replay's CF and CM): the band
// signal y, rectified |y|, cut into hop-long chunks c_j; the frames are chunk pairs
// (c_j, c_{j+1}) (frame = 2 hop = the DFT length N, the paper's 20 ms, 10 ms, 320 points); the
// periodic Hamming window's DFT of bins 0 .. K-1 of each frame, W[k] = a0 F[k] - a1 (F[k-1] + F[k+1])
// with F the frame's rectangular DFT and F[-1] = conj(F[1]); per frame
//   CF = sum_k f_k |W[k]| / sum_{k >= 1 (or 0)} |W[k]|   (0 when that sum is <= eps),
//   CM = sum_k f_k |W[k]| / sum_k f_k.
// How: each chunk's rectangular DFT X_j[k] (k = 0 .. K) is computed once, right after the filters
// produce the chunk (a tile of hop band vectors still in cache; the rectified signal is never
// stored), and shared by its two frames: F[k] = X_j[k] + (-1)^k X_{j+1}[k]. Pairing sample n with
// hop-1-n (about the chunk's centre m = (hop-1)/2) halves the products:
//   X[k] = e^{-2 pi i m k / N} (sum_{n < hop/2} e_n cos(k a_n) + i sum_{n < hop/2} o_n sin(k a_n)),
// e_n = |c_n| + |c_{hop-1-n}|, o_n = |c_n| - |c_{hop-1-n}|, a_n = 2 pi (m - n) / N (n < hop/2).
// Then n pairs with n' = hop/2-1-n (a_n' = pi/2 - a_n), so every sum runs over n < hop/4:
// - even bins k = 2p: cos(k a) and sin(k a) at n' equal those at n up to the sign (-1)^p, so they
//   are sums of e_n +- e_n' and o_n +- o_n' (0 mod 4: e+, o-; 2 mod 4: e-, o+);
// - odd bins come in pairs k -+ 1 around k = 2 mod 4, from four sums shared by the pair:
//   cos((k -+ 1) a) = cos(k a) cos(a) +- sin(k a) sin(a) (and the same for sin), so with
//   A = sum (e_n cos a_n - e_n' sin a_n) cos(k a_n), B = sum (e_n sin a_n + e_n' cos a_n) sin(k a_n),
//   C = sum (o_n cos a_n + o_n' sin a_n) sin(k a_n), D = sum (o_n sin a_n - o_n' cos a_n) cos(k a_n):
//   P[k - 1] = A + B, P[k + 1] = A - B, Q[k - 1] = C - D, Q[k + 1] = C + D.
// (1640 products per chunk and band for 21 bins, against 6720 for the plain DFT.) The sums are
// small products of (samples x bins) bases with (samples x bands) blocks, register-blocked over
// bins and bands.

struct CentroidSpec {
  int64_t hop, half, kc, nbins, frames;  // kc = K + 1 bins of the chunks' DFT (the window reaches bin K)
  // the bases (rows n < half / 2, columns k, see the comment above): cos(k a_n) of k = 0 mod 4, of
  // k = 2 mod 4 (<= K), sin(k a_n) of k = 4, 8, ..., of k = 2 mod 4; cos(k a_n), sin(k a_n) of the
  // odd pairs' centres k = 2, 6, ... (n_pair of them); and (cos a_n, sin a_n)
  const double *cos_0, *cos_2, *sin_0, *sin_2, *cos_pair, *sin_pair, *rot1;
  int64_t n_c0, n_c2, n_s0, n_pair;
  const double* rot;                     // (kc, 2): e^{-2 pi i m k / N}, re and im
  const double* freqs;                   // (K,): f_k in Hz
  double freq_sum, a0, a1, eps;
  bool include_dc;
};

// out[k * ostride + b] = sum_{n < len} bt[n * ldb + k] * in[n * stride + b], k < rows,
// b_begin <= b < b_end (multiples of 4; ostride: the output's row stride).
#ifdef __AVX2__
template <int KB, int NB>
inline void basis_block(const double* __restrict bt, int64_t ldb, const double* __restrict in, int64_t half,
                        int64_t stride, double* __restrict out, int64_t ostride) {
  __m256d acc[KB][NB];
  for (int kk = 0; kk < KB; ++kk)
    for (int j = 0; j < NB; ++j) acc[kk][j] = _mm256_setzero_pd();
  for (int64_t n = 0; n < half; ++n) {
    __m256d v[NB];
    for (int j = 0; j < NB; ++j) v[j] = _mm256_load_pd(in + n * stride + 4 * j);
    const double* b = bt + n * ldb;
    for (int kk = 0; kk < KB; ++kk) {
      const __m256d c = _mm256_broadcast_sd(b + kk);
      for (int j = 0; j < NB; ++j) acc[kk][j] = _mm256_fmadd_pd(c, v[j], acc[kk][j]);
    }
  }
  for (int kk = 0; kk < KB; ++kk)
    for (int j = 0; j < NB; ++j) _mm256_store_pd(out + kk * ostride + 4 * j, acc[kk][j]);
}

template <int NB>
inline void basis_rows(const double* bt, int64_t ldb, int64_t k0, int64_t kb, const double* in, int64_t half,
                       int64_t stride, double* out, int64_t ostride) {
  switch (kb) {
    case 6: return basis_block<6, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
    case 5: return basis_block<5, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
    case 4: return basis_block<4, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
    case 3: return basis_block<3, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
    case 2: return basis_block<2, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
    default: return basis_block<1, NB>(bt + k0, ldb, in, half, stride, out + k0 * ostride, ostride);
  }
}
#endif

inline void basis_product(const double* __restrict bt, int64_t ldb, int64_t rows, const double* __restrict in,
                          int64_t half, int64_t stride, double* __restrict out, int64_t ostride, int64_t b_begin,
                          int64_t b_end) {
#ifdef __AVX2__
  // blocks of 6 bins x 8 bands: 12 accumulators, 2 loads and 6 broadcasts per 12 FMAs
  for (int64_t b0 = b_begin; b0 < b_end; b0 += 8) {
    const bool eight = b0 + 8 <= b_end;
    for (int64_t k0 = 0; k0 < rows; k0 += 6) {
      const int64_t kb = std::min<int64_t>(6, rows - k0);
      if (eight) {
        basis_rows<2>(bt, ldb, k0, kb, in + b0, half, stride, out + b0, ostride);
      } else {
        basis_rows<1>(bt, ldb, k0, kb, in + b0, half, stride, out + b0, ostride);
      }
    }
  }
#else
  for (int64_t k = 0; k < rows; ++k) {
    double* __restrict o = out + k * ostride;
    for (int64_t b = b_begin; b < b_end; ++b) o[b] = 0.0;
    for (int64_t n = 0; n < half; ++n) {
      const double c = bt[n * ldb + k];
      const double* __restrict v = in + n * stride;
      for (int64_t b = b_begin; b < b_end; ++b) o[b] += c * v[b];
    }
  }
#endif
}

// The sink of one work item: takes the filters' tiles (one chunk each), writes CF and CM of its
// bands (rows of `frames` values, `frames` apart).
class CentroidSink {
 public:
  static constexpr int64_t kStrip = SD_STRIP;

  CentroidSink(const CentroidSpec& spec, int64_t nout, double* cf, double* cm)
      : s_(spec), nout_(nout), stride_((nout + 3) / 4 * 4), cf_(cf), cm_(cm) {
    const int64_t st = stride_, h = s_.half, kc = s_.kc;
    const int64_t q = h / 2 * st, pr = s_.n_pair * st;
    // P and Q have room for the odd pairs' last bin (up to K + 2); the frame's F (2 kc rows) reuses ep_ .. om_
    const int64_t sizes[] = {(kc + 3) * st, (kc + 3) * st, 2 * kc * st, 2 * kc * st, q, q, q, q, q, q, q, q,
                             pr, pr, pr, pr};
    int64_t total = 0;
    for (int64_t v : sizes) total += v + 4;
    buf_.assign(total + 4, 0.0);
    double* p = buf_.data();
    while (reinterpret_cast<uintptr_t>(p) % 32) ++p;
    double** dst[] = {&p_, &q_, &xa_, &xb_, &ep_, &em_, &op_, &om_, &ai_, &bi_, &ci_, &di_, &pa_, &pb_, &pc_, &pd_};
    for (int i = 0; i < 16; ++i) {
      *dst[i] = p;
      p += (sizes[i] + 3) / 4 * 4;
    }
  }

  void operator()(const double* tile, int64_t stride, int64_t steps, int64_t t0) {
    // the caller runs the filters over whole chunks only, one chunk per tile (stride == stride_, steps == hop)
    const int64_t chunk = t0 / s_.hop, h = s_.half, hop = s_.hop, st = stride_, kc = s_.kc;
    // strips of kStrip bands: rectified, folded twice (one pass over the tile), transformed while in cache
    const int64_t qh = h / 2;
    for (int64_t b0 = 0; b0 < st; b0 += kStrip) {
      const int64_t b1 = std::min(st, b0 + kStrip);
      for (int64_t n = 0; n < qh; ++n) {  // samples n, hop-1-n (about the chunk's centre), h-1-n, hop-h+n
        const double* __restrict ta = tile + n * st;
        const double* __restrict tb = tile + (hop - 1 - n) * st;
        const double* __restrict tc = tile + (h - 1 - n) * st;
        const double* __restrict td = tile + (hop - h + n) * st;
        const double cn = s_.rot1[2 * n], sn = s_.rot1[2 * n + 1];
        double* __restrict epn = ep_ + n * st;
        double* __restrict emn = em_ + n * st;
        double* __restrict opn = op_ + n * st;
        double* __restrict omn = om_ + n * st;
        double* __restrict ain = ai_ + n * st;
        double* __restrict bin = bi_ + n * st;
        double* __restrict cin = ci_ + n * st;
        double* __restrict din = di_ + n * st;
        for (int64_t b = b0; b < b1; ++b) {
          const double ua = std::fabs(ta[b]), ub = std::fabs(tb[b]), uc = std::fabs(tc[b]), ud = std::fabs(td[b]);
          const double e = ua + ub, o = ua - ub, e1 = uc + ud, o1 = uc - ud;  // e_n, o_n, e_n', o_n'
          epn[b] = e + e1;
          emn[b] = e - e1;
          opn[b] = o + o1;
          omn[b] = o - o1;
          ain[b] = e * cn - e1 * sn;
          bin[b] = e * sn + e1 * cn;
          cin[b] = o * cn + o1 * sn;
          din[b] = o * sn - o1 * cn;
        }
      }
      // real parts about the centre (P, rows k = 0 .. K) and imaginary parts (Q, rows k - 1 = 0 .. K - 1)
      basis_product(s_.cos_0, s_.n_c0, s_.n_c0, ep_, qh, st, p_, 4 * st, b0, b1);           // k = 0, 4, 8, ...
      basis_product(s_.cos_2, s_.n_c2, s_.n_c2, em_, qh, st, p_ + 2 * st, 4 * st, b0, b1);  // k = 2, 6, 10, ...
      basis_product(s_.sin_0, s_.n_s0, s_.n_s0, om_, qh, st, q_ + 3 * st, 4 * st, b0, b1);  // k = 4, 8, ...
      basis_product(s_.sin_2, s_.n_c2, s_.n_c2, op_, qh, st, q_ + st, 4 * st, b0, b1);      // k = 2, 6, 10, ...
      basis_product(s_.cos_pair, s_.n_pair, s_.n_pair, ai_, qh, st, pa_, st, b0, b1);       // odd k, in pairs
      basis_product(s_.sin_pair, s_.n_pair, s_.n_pair, bi_, qh, st, pb_, st, b0, b1);
      basis_product(s_.sin_pair, s_.n_pair, s_.n_pair, ci_, qh, st, pc_, st, b0, b1);
      basis_product(s_.cos_pair, s_.n_pair, s_.n_pair, di_, qh, st, pd_, st, b0, b1);
    }
    for (int64_t j = 0; j < s_.n_pair; ++j) {  // the pair k - 1, k + 1 around k = 4 j + 2
      const int64_t k = 4 * j + 2;
      const double* __restrict a = pa_ + j * st;
      const double* __restrict bb = pb_ + j * st;
      const double* __restrict c = pc_ + j * st;
      const double* __restrict d = pd_ + j * st;
      double* __restrict plo = p_ + (k - 1) * st;
      double* __restrict phi = p_ + (k + 1) * st;
      double* __restrict qlo = q_ + (k - 2) * st;
      double* __restrict qhi = q_ + k * st;
      for (int64_t b = 0; b < st; ++b) {
        plo[b] = a[b] + bb[b];
        phi[b] = a[b] - bb[b];
        qlo[b] = c[b] - d[b];
        qhi[b] = c[b] + d[b];
      }
    }
    double* __restrict xr = xb_;  // this chunk's X[k]: kc rows of re, then kc rows of im
    double* __restrict xi = xb_ + kc * st;
    for (int64_t k = 0; k < kc; ++k) {
      const double rr = s_.rot[2 * k], ri = s_.rot[2 * k + 1];
      const double* __restrict pk = p_ + k * st;
      double* __restrict xrk = xr + k * st;
      double* __restrict xik = xi + k * st;
      if (k == 0) {
        for (int64_t b = 0; b < st; ++b) {
          xrk[b] = rr * pk[b];
          xik[b] = ri * pk[b];
        }
      } else {
        const double* __restrict qk = q_ + (k - 1) * st;
        for (int64_t b = 0; b < st; ++b) {
          xrk[b] = rr * pk[b] - ri * qk[b];
          xik[b] = rr * qk[b] + ri * pk[b];
        }
      }
    }
    if (chunk >= 1) frame(chunk - 1);
    std::swap(xa_, xb_);
  }

 private:
  // Frame j from chunks j (xa_) and j + 1 (xb_); its rectangular DFT goes to p_ (re) and ep_ (im):
  // F[k] = Xa[k] + (-1)^k Xb[k], then the window, |W[k]| and the sums of eq. 6/7.
  void frame(int64_t j) {
    const int64_t st = stride_, kc = s_.kc, K = s_.nbins;
    double* __restrict fr = p_;  // kc * st
    double* __restrict fi = ep_;  // 4 q >= kc rows: ep_ .. om_ are contiguous (half >= kc, checked by the caller)
    const double* __restrict ar = xa_;
    const double* __restrict ai = xa_ + kc * st;
    const double* __restrict br = xb_;
    const double* __restrict bi = xb_ + kc * st;
    for (int64_t k = 0; k < kc; ++k) {
      const double sgn = (k % 2) ? -1.0 : 1.0;
      for (int64_t b = 0; b < st; ++b) {
        fr[k * st + b] = ar[k * st + b] + sgn * br[k * st + b];
        fi[k * st + b] = ai[k * st + b] + sgn * bi[k * st + b];
      }
    }
    const double a0 = s_.a0, a1 = s_.a1;
    const int64_t fr_count = s_.frames;
#ifdef __AVX2__
    const __m256d va0 = _mm256_set1_pd(a0), va1 = _mm256_set1_pd(a1);
    for (int64_t b = 0; b < st; b += 4) {
      __m256d ws = _mm256_setzero_pd(), ds = _mm256_setzero_pd();
      for (int64_t k = 0; k < K; ++k) {
        const int64_t lo = k == 0 ? 1 : k - 1;
        const __m256d lr = _mm256_load_pd(fr + lo * st + b);
        __m256d li = _mm256_load_pd(fi + lo * st + b);
        if (k == 0) li = _mm256_sub_pd(_mm256_setzero_pd(), li);  // F[-1] = conj(F[1])
        const __m256d ur = _mm256_load_pd(fr + (k + 1) * st + b), ui = _mm256_load_pd(fi + (k + 1) * st + b);
        const __m256d wr = _mm256_sub_pd(_mm256_mul_pd(va0, _mm256_load_pd(fr + k * st + b)),
                                         _mm256_mul_pd(va1, _mm256_add_pd(lr, ur)));
        const __m256d wi = _mm256_sub_pd(_mm256_mul_pd(va0, _mm256_load_pd(fi + k * st + b)),
                                         _mm256_mul_pd(va1, _mm256_add_pd(li, ui)));
        const __m256d mag = _mm256_sqrt_pd(_mm256_add_pd(_mm256_mul_pd(wr, wr), _mm256_mul_pd(wi, wi)));
        ws = _mm256_add_pd(ws, _mm256_mul_pd(_mm256_set1_pd(s_.freqs[k]), mag));
        if (k > 0 || s_.include_dc) ds = _mm256_add_pd(ds, mag);
      }
      alignas(32) double wsum[4], dsum[4];
      _mm256_store_pd(wsum, ws);
      _mm256_store_pd(dsum, ds);
      for (int64_t i = 0; i < 4 && b + i < nout_; ++i) finish(b + i, j, wsum[i], dsum[i], fr_count);
    }
#else
    for (int64_t b = 0; b < nout_; ++b) {
      double ws = 0.0, ds = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const int64_t lo = k == 0 ? 1 : k - 1;
        const double li = k == 0 ? -fi[lo * st + b] : fi[lo * st + b];
        const double wr = a0 * fr[k * st + b] - a1 * (fr[lo * st + b] + fr[(k + 1) * st + b]);
        const double wi = a0 * fi[k * st + b] - a1 * (li + fi[(k + 1) * st + b]);
        const double mag = std::sqrt(wr * wr + wi * wi);
        ws += s_.freqs[k] * mag;
        if (k > 0 || s_.include_dc) ds += mag;
      }
      finish(b, j, ws, ds, fr_count);
    }
#endif
  }

  void finish(int64_t b, int64_t j, double ws, double ds, int64_t frames) {
    cf_[b * frames + j] = ds > s_.eps ? ws / ds : 0.0;
    cm_[b * frames + j] = ws / s_.freq_sum;
  }

  const CentroidSpec& s_;
  int64_t nout_, stride_;
  double* cf_;
  double* cm_;
  std::vector<double> buf_;
  double *p_ = nullptr, *q_ = nullptr, *xa_ = nullptr, *xb_ = nullptr;
  double *ep_ = nullptr, *em_ = nullptr, *op_ = nullptr, *om_ = nullptr;  // the even bins' folded sums
  double *ai_ = nullptr, *bi_ = nullptr, *ci_ = nullptr, *di_ = nullptr;  // the odd pairs' inputs
  double *pa_ = nullptr, *pb_ = nullptr, *pc_ = nullptr, *pd_ = nullptr;  // and their sums A, B, C, D
};

// x (batch, time) float64; a1 .. top: as sd_filterbank_cpu; bases (rows n < hop/4): [cos_0 (K0),
// cos_2 (K2), sin_0 (K0 - 1), sin_2 (K2), cos_pair (KP), sin_pair (KP), rot1 (2)] (see CentroidSpec;
// bins 0 .. K: K0 = K / 4 + 1 of 0 mod 4, K2 = (K + 2) / 4 of 2 mod 4, KP = ((K + 1) / 2 + 1) / 2 odd
// pairs); rot (K + 1, 2), freqs (K,): see CentroidSpec; cf, cm (batch, filters, frames),
// written in full: frames of 2 hop samples every hop (frames + 1 whole chunks must fit in x).
// The rectified band signals are never stored.
void sd_centroids_cpu(torch::Tensor x, torch::Tensor a1, torch::Tensor a2, torch::Tensor gain, torch::Tensor inner,
                      torch::Tensor top, std::vector<torch::Tensor> bases, torch::Tensor rot, torch::Tensor freqs,
                      double a0_window, double a1_window, bool include_dc, double eps, int64_t group,
                      int64_t num_threads, torch::Tensor cf, torch::Tensor cm) {
  TORCH_CHECK(x.dim() == 2 && x.is_contiguous() && x.device().is_cpu() && x.scalar_type() == torch::kFloat64,
              "x must be a contiguous CPU float64 (batch, time) tensor");
  TORCH_CHECK(bases.size() == 7, "bases must be [cos_0, cos_2, sin_0, sin_2, cos_pair, sin_pair, rot1]");
  for (const auto& t : {a1, a2, gain, inner, top, rot, freqs, cf, cm, bases[0], bases[1], bases[2], bases[3],
                        bases[4], bases[5], bases[6]}) {
    TORCH_CHECK(t.is_contiguous() && t.device().is_cpu() && t.scalar_type() == torch::kFloat64,
                "coefficients, bases and outputs must be contiguous CPU float64 tensors");
  }
  const int64_t bsz = x.size(0), n = x.size(1), nfilt = a1.size(0), w = inner.size(0);
  TORCH_CHECK(a2.size(0) == nfilt && gain.size(0) == nfilt, "a1, a2 and gain must have one value per filter");
  TORCH_CHECK(w >= 1 && w <= nfilt, "inner must have 1 to num_filters weights");
  TORCH_CHECK(top.dim() == 2 && top.size(0) == w - 1 && top.size(1) == w, "top must have shape (k, k + 1)");
  TORCH_CHECK(rot.dim() == 2 && rot.size(0) >= 2 && rot.size(1) == 2, "rot must have shape (bins + 1, 2)");
  const int64_t kc = rot.size(0), half = 2 * bases[0].size(0), frames = cf.size(2);
  const int64_t n_c0 = (kc - 1) / 4 + 1, n_c2 = (kc + 1) / 4, n_s0 = (kc - 1) / 4, n_pair = (kc / 2 + 1) / 2;
  const int64_t cols[] = {n_c0, n_c2, n_s0, n_c2, n_pair, n_pair, 2};
  for (int i = 0; i < 7; ++i) {
    const int64_t rows[] = {half / 2};
    TORCH_CHECK(bases[i].dim() == 2 && bases[i].size(0) == rows[0] && bases[i].size(1) == cols[i],
                "bases[", i, "] must have shape (", rows[0], ", ", cols[i], ")");
  }
  TORCH_CHECK(half >= 2 && kc <= half, "hop must be a multiple of 4, and the DFT reach at most hop / 2 bins");
  TORCH_CHECK(freqs.dim() == 1 && freqs.size(0) == kc - 1, "freqs must have one value per bin");
  for (const auto& t : {cf, cm}) {
    TORCH_CHECK(t.dim() == 3 && t.size(0) == bsz && t.size(1) == nfilt && t.size(2) == frames,
                "cf and cm must have shape (batch, filters, frames)");
  }
  TORCH_CHECK(frames >= 1 && (frames + 1) * 2 * half <= n, "frames + 1 chunks of hop samples must fit in x");
  double freq_sum = 0.0;
  const double* fp = freqs.data_ptr<double>();
  for (int64_t k = 0; k < kc - 1; ++k) freq_sum += fp[k];
  const CentroidSpec spec{2 * half, half, kc, kc - 1, frames, bases[0].data_ptr<double>(), bases[1].data_ptr<double>(),
                          bases[2].data_ptr<double>(), bases[3].data_ptr<double>(), bases[4].data_ptr<double>(),
                          bases[5].data_ptr<double>(), bases[6].data_ptr<double>(), n_c0, n_c2, n_s0, n_pair,
                          rot.data_ptr<double>(), fp, freq_sum, a0_window, a1_window, eps, include_dc};
  group = std::max<int64_t>(1, std::min(group, nfilt));
  const int64_t ngroups = (nfilt + group - 1) / group;
  const int64_t threads = std::max<int64_t>(1, std::min(num_threads, bsz * ngroups));
  const double *xp = x.data_ptr<double>(), *a1p = a1.data_ptr<double>(), *a2p = a2.data_ptr<double>();
  const double *gp = gain.data_ptr<double>(), *ip = inner.data_ptr<double>(), *tp = top.data_ptr<double>();
  double *cfp = cf.data_ptr<double>(), *cmp = cm.data_ptr<double>();
  const int64_t used = (frames + 1) * spec.hop;  // the samples the frames reach
  parallel_items(bsz * ngroups, threads, [&](int64_t item) {
    const int64_t b = item / ngroups, lo = (item % ngroups) * group, hi = std::min(nfilt, lo + group);
    const int64_t off = (b * nfilt + lo) * frames;
    CentroidSink sink(spec, hi - lo, cfp + off, cmp + off);
    run_item<double>(w, xp + b * n, used, a1p, a2p, gp, nfilt, ip, tp, lo, hi, spec.hop, sink);
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("sd_filterbank_cpu", &sd_filterbank_cpu, "Spatially differentiated IIR filterbank (CPU)",
        py::call_guard<py::gil_scoped_release>());
  m.def("sd_centroids_cpu", &sd_centroids_cpu,
        "The filterbank fused with the replay front-end's envelope spectra: CF and CM per band and frame (CPU, float64)",
        py::call_guard<py::gil_scoped_release>());
}
