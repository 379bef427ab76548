// Fused CPU steps of optiwise's 8-bit AdamW and Lion (and of their tensors with fp32 state).
//
// Compiled at run time by optiwise/optim/_native.py with the C++ compiler torch.compile uses
// (no build step, no torch headers: plain C++ on raw pointers, called through ctypes).
// See that module for why this is not a torch.compile'd function like the other fused steps.
//
// One call updates a list of tensors. For 8-bit state each block of `block_size` elements is
// done in one pass over memory: dequantize both moments (map value * block absmax), apply
// the update, write the parameter, keep the new fp32 moments in a per-thread scratch buffer
// of one block (L1-resident), take each moment's new absmax, requantize into the codes.
//
// Exactness: every float operation is the one the per-tensor path of
// optiwise/optim/_kernels.py performs (_adamw_dequantized_ and lion_fused on the dequantized
// moments, with the numbers of adamw8bit_hparams / lion8bit_hparams), in the same order,
// each rounded to fp32; the file is compiled with -ffp-contract=off and without -ffast-math,
// so no multiply-add is contracted and nothing is reassociated. Blocks are normalized as in
// _kernels._normalizers, and requantized through the packed table of
// _kernels.packed_lut, which reproduces the reference quantizer's codes for every float.
// With fp32 parameters both paths therefore give bit-identical parameters, codes and
// absmax (bf16 parameters: the update is computed in fp32 and rounded once).

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

// The block functions stay out of line: inlined into the OpenMP loop body, the same
// instructions ran 25% slower (measured with g++ 12 on Sapphire Rapids).
#if defined(__GNUC__)
#define OPTIWISE_NOINLINE __attribute__((noinline))
#else
#define OPTIWISE_NOINLINE
#endif

namespace {

// --------------------------------------------------------------------------------------------
// Element types
// --------------------------------------------------------------------------------------------

enum DType : int32_t { kFloat32 = 0, kBFloat16 = 1 };

inline uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

inline float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

struct F32 {
  using T = float;
  static inline float load(float x) { return x; }
  static inline float store(float x) { return x; }
};

struct BF16 {
  using T = uint16_t;
  static inline float load(uint16_t x) { return float_of(static_cast<uint32_t>(x) << 16); }
  // Round to nearest even, NaN to the canonical quiet NaN (as torch's c10::BFloat16).
  static inline uint16_t store(float x) {
    const uint32_t b = bits_of(x);
    const uint32_t rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
    return (b & 0x7FFFFFFFu) > 0x7F800000u ? static_cast<uint16_t>(0x7FC0)
                                           : static_cast<uint16_t>(rounded);
  }
};

// --------------------------------------------------------------------------------------------
// Hyperparameters (in the order _native.py passes them) and quantization maps
// --------------------------------------------------------------------------------------------

struct AdamW {
  float decay, weight1, beta2, weight2, inv_bias2_sqrt, eps, neg_step_size;
  explicit AdamW(const float* h)
      : decay(h[0]), weight1(h[1]), beta2(h[2]), weight2(h[3]), inv_bias2_sqrt(h[4]), eps(h[5]),
        neg_step_size(h[6]) {}
};

struct Lion {
  float decay, neg_lr, weight1, weight2;
  explicit Lion(const float* h) : decay(h[0]), neg_lr(h[1]), weight1(h[2]), weight2(h[3]) {}
};

struct Maps {
  const float* signed_values;    // 256 map values; int8 code c means signed_values[c + 128]
  const float* unsigned_values;  // uint8 code c means unsigned_values[c]
  const int32_t* signed_lut;     // packed tables, 2^17 entries (see _kernels.packed_lut)
  const int32_t* unsigned_lut;   // (the unsigned one keeps non-zero values non-zero)
};

inline float sign_of(float x) { return static_cast<float>((x > 0.0f) - (x < 0.0f)); }

// The table lookups, with hardware gathers where AVX-512 has them (compilers emulate gathers
// lane by lane in loops like these); the same loads either way.

// out[i] = values[codes[i]] * scale; `values` points at the value of code 0.
template <typename C>
void dequantize(float* __restrict__ out, const C* __restrict__ codes, int64_t n,
                const float* __restrict__ values, float scale) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 s = _mm512_set1_ps(scale);
  for (; i + 16 <= n; i += 16) {
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + i));
    const __m512i k = sizeof(C) == 1 && static_cast<C>(-1) < 0 ? _mm512_cvtepi8_epi32(c)
                                                               : _mm512_cvtepu8_epi32(c);
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_i32gather_ps(k, values, 4), s));
  }
#endif
  for (; i < n; i++) out[i] = values[codes[i]] * scale;
}

// Codes of x / absmax, the quotient taken as x * factor / divisor like
// _kernels._normalizers: x * (1 / absmax) unless that reciprocal would lose precision. The
// packed table gives, per (sign, exponent, top 8 mantissa bits), the code at the bucket's
// start, the code after its only decision boundary and where that boundary lies.
template <typename C>
void requantize(const float* __restrict__ x, int64_t n, float top, const int32_t* __restrict__ lut,
                int32_t offset, C* __restrict__ codes) {
  const float scale = top > 0.0f ? top : 1.0f;
  const bool reciprocal = scale >= 0x1p-126f && scale <= 0x1p126f;
  const float factor = reciprocal ? 1.0f / scale : 1.0f, divisor = reciprocal ? 1.0f : scale;
  if (!reciprocal) {
    for (int64_t i = 0; i < n; i++) {
      const uint32_t b = bits_of(x[i] * factor / divisor);
      const int32_t e = lut[(b >> 15) & 0x1FFFFu];
      const int32_t after = static_cast<int32_t>(b & 0x7FFFu) >= ((e >> 16) & 0xFFFF);
      codes[i] = static_cast<C>((after ? (e >> 8) & 0xFF : e & 0xFF) - offset);
    }
    return;
  }
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 s = _mm512_set1_ps(factor);
  const __m512i bucket = _mm512_set1_epi32(0x1FFFF), low = _mm512_set1_epi32(0x7FFF);
  const __m512i byte = _mm512_set1_epi32(0xFF), off = _mm512_set1_epi32(offset);
  for (; i + 16 <= n; i += 16) {
    const __m512i b = _mm512_castps_si512(_mm512_mul_ps(_mm512_loadu_ps(x + i), s));
    const __m512i e = _mm512_i32gather_epi32(
        _mm512_and_si512(_mm512_srli_epi32(b, 15), bucket), lut, 4);
    const __mmask16 after =
        _mm512_cmpge_epi32_mask(_mm512_and_si512(b, low), _mm512_srli_epi32(e, 16));
    const __m512i first = _mm512_and_si512(e, byte);
    const __m512i then = _mm512_and_si512(_mm512_srli_epi32(e, 8), byte);
    const __m512i idx = _mm512_sub_epi32(_mm512_mask_blend_epi32(after, first, then), off);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(codes + i), _mm512_cvtepi32_epi8(idx));
  }
#endif
  for (; i < n; i++) {
    const uint32_t b = bits_of(x[i] * factor);
    const int32_t e = lut[(b >> 15) & 0x1FFFFu];
    const int32_t after = static_cast<int32_t>(b & 0x7FFFu) >= ((e >> 16) & 0xFFFF);
    codes[i] = static_cast<C>((after ? (e >> 8) & 0xFF : e & 0xFF) - offset);
  }
}

// --------------------------------------------------------------------------------------------
// Updates: fp32 state (elementwise) and 8-bit state (one block)
// --------------------------------------------------------------------------------------------

// `Track`: also return the new moments' absmax, as torch's abs().amax() (the 8-bit path
// updates its scratch moments): the largest |x| as bits, so that a NaN wins.
template <class P, class G, bool Maximize, bool Track = false>
void adamw_elements(typename P::T* __restrict__ p, const typename G::T* __restrict__ g,
                    float* __restrict__ m, float* __restrict__ v, int64_t n, const AdamW h,
                    float* m_absmax = nullptr, float* v_absmax = nullptr) {
  uint32_t m_top = 0, v_top = 0;
  for (int64_t i = 0; i < n; i++) {
    const float gi = Maximize ? -G::load(g[i]) : G::load(g[i]);
    const float w = P::load(p[i]) * h.decay;
    const float mi = m[i] + h.weight1 * (gi - m[i]);
    const float vi = v[i] * h.beta2 + h.weight2 * gi * gi;
    p[i] = P::store(w + h.neg_step_size * mi / (std::sqrt(vi) * h.inv_bias2_sqrt + h.eps));
    m[i] = mi;
    v[i] = vi;
    if (Track) {
      const uint32_t mb = bits_of(mi) & 0x7FFFFFFFu, vb = bits_of(vi) & 0x7FFFFFFFu;
      m_top = mb > m_top ? mb : m_top;
      v_top = vb > v_top ? vb : v_top;
    }
  }
  if (Track) {
    *m_absmax = float_of(m_top);
    *v_absmax = float_of(v_top);
  }
}

template <class P, class G, bool Maximize, bool Track = false>
void lion_elements(typename P::T* __restrict__ p, const typename G::T* __restrict__ g,
                   float* __restrict__ m, int64_t n, const Lion h, float* m_absmax = nullptr) {
  uint32_t m_top = 0;
  for (int64_t i = 0; i < n; i++) {
    const float gi = Maximize ? -G::load(g[i]) : G::load(g[i]);
    const float d = gi - m[i];
    const float w = P::load(p[i]) * h.decay;
    p[i] = P::store(w + sign_of(m[i] + h.weight1 * d) * h.neg_lr);
    const float mi = m[i] + h.weight2 * d;
    m[i] = mi;
    if (Track) {
      const uint32_t mb = bits_of(mi) & 0x7FFFFFFFu;
      m_top = mb > m_top ? mb : m_top;
    }
  }
  if (Track) *m_absmax = float_of(m_top);
}

// --------------------------------------------------------------------------------------------
// One block of 8-bit state: dequantize, update, new absmax (the requantization follows)
// --------------------------------------------------------------------------------------------

// The larger of two absmax values, compared as bits (so that a NaN wins, as above).
inline float larger(float a, float b) { return bits_of(a) >= bits_of(b) ? a : b; }

#if defined(__AVX512F__)
// 16 elements of a parameter or gradient as fp32, and back.
inline __m512 load16(const float* x) { return _mm512_loadu_ps(x); }
inline __m512 load16(const uint16_t* x) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline void store16(float* x, __m512 v) { _mm512_storeu_ps(x, v); }
inline void store16(uint16_t* x, __m512 v) {  // BF16::store on 16 lanes
  const __m512i b = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF))), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(
      _mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  const __m512i out = _mm512_mask_blend_epi32(nan, rounded, _mm512_set1_epi32(0x7FC0));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(x), _mm512_cvtepi32_epi16(out));
}
inline __m512 negate_if(bool yes, __m512 x) {
  return yes ? _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x),
                                                    _mm512_set1_epi32(INT32_MIN)))
             : x;
}
inline __m512i abs_bits(__m512 x) {
  return _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x7FFFFFFF));
}
inline __m512 dequantize16(const int8_t* c, const float* values, __m512 scale) {
  const __m512i k = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  return _mm512_mul_ps(_mm512_i32gather_ps(k, values, 4), scale);
}
inline __m512 dequantize16(const uint8_t* c, const float* values, __m512 scale) {
  const __m512i k = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c)));
  return _mm512_mul_ps(_mm512_i32gather_ps(k, values, 4), scale);
}
#endif

// AdamW on one block: the same operations as dequantize + adamw_elements, 16 lanes at a time
// without the scratch round trip; the remainder (and non-AVX-512 builds) through those.
template <class P, class G, bool Maximize>
OPTIWISE_NOINLINE void adamw_block(typename P::T* __restrict__ p, const typename G::T* __restrict__ g,
                 const int8_t* __restrict__ mc, const uint8_t* __restrict__ vc,
                 float* __restrict__ m, float* __restrict__ v, int64_t n, const Maps& maps,
                 const AdamW h, float* m_absmax, float* v_absmax) {
  int64_t i = 0;
  float m_top = 0.0f, v_top = 0.0f;
#if defined(__AVX512F__)
  const __m512 am = _mm512_set1_ps(*m_absmax), av = _mm512_set1_ps(*v_absmax);
  const __m512 decay = _mm512_set1_ps(h.decay), weight1 = _mm512_set1_ps(h.weight1);
  const __m512 beta2 = _mm512_set1_ps(h.beta2), weight2 = _mm512_set1_ps(h.weight2);
  const __m512 inv_bias2 = _mm512_set1_ps(h.inv_bias2_sqrt), eps = _mm512_set1_ps(h.eps);
  const __m512 neg_step = _mm512_set1_ps(h.neg_step_size);
  __m512i tm = _mm512_setzero_si512(), tv = _mm512_setzero_si512();
  // Unrolled: each 16 lanes wait on two gathers, a square root and a division; four
  // independent copies in flight ran 10% faster with fp32 parameters, 10-30% with bf16 ones.
#pragma GCC unroll 4
  for (; i + 16 <= n; i += 16) {
    const __m512 gi = negate_if(Maximize, load16(g + i));
    const __m512 m0 = dequantize16(mc + i, maps.signed_values + 128, am);
    const __m512 v0 = dequantize16(vc + i, maps.unsigned_values, av);
    const __m512 w = _mm512_mul_ps(load16(p + i), decay);
    const __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(weight1, _mm512_sub_ps(gi, m0)));
    const __m512 vi =
        _mm512_add_ps(_mm512_mul_ps(v0, beta2), _mm512_mul_ps(_mm512_mul_ps(weight2, gi), gi));
    const __m512 denom = _mm512_add_ps(_mm512_mul_ps(_mm512_sqrt_ps(vi), inv_bias2), eps);
    store16(p + i, _mm512_add_ps(w, _mm512_div_ps(_mm512_mul_ps(neg_step, mi), denom)));
    _mm512_storeu_ps(m + i, mi);
    _mm512_storeu_ps(v + i, vi);
    tm = _mm512_max_epu32(tm, abs_bits(mi));
    tv = _mm512_max_epu32(tv, abs_bits(vi));
  }
  m_top = float_of(_mm512_reduce_max_epu32(tm));
  v_top = float_of(_mm512_reduce_max_epu32(tv));
#endif
  if (i < n) {
    float m_rest, v_rest;
    dequantize(m + i, mc + i, n - i, maps.signed_values + 128, *m_absmax);
    dequantize(v + i, vc + i, n - i, maps.unsigned_values, *v_absmax);
    adamw_elements<P, G, Maximize, true>(p + i, g + i, m + i, v + i, n - i, h, &m_rest, &v_rest);
    m_top = larger(m_top, m_rest);
    v_top = larger(v_top, v_rest);
  }
  *m_absmax = m_top;
  *v_absmax = v_top;
}

// Lion on one block, likewise (dequantize + lion_elements).
template <class P, class G, bool Maximize>
OPTIWISE_NOINLINE void lion_block(typename P::T* __restrict__ p, const typename G::T* __restrict__ g,
                const int8_t* __restrict__ mc, float* __restrict__ m, int64_t n,
                const Maps& maps, const Lion h, float* m_absmax) {
  int64_t i = 0;
  float m_top = 0.0f;
#if defined(__AVX512F__)
  const __m512 am = _mm512_set1_ps(*m_absmax), decay = _mm512_set1_ps(h.decay);
  const __m512 neg_lr = _mm512_set1_ps(h.neg_lr), weight1 = _mm512_set1_ps(h.weight1);
  const __m512 weight2 = _mm512_set1_ps(h.weight2), zero = _mm512_setzero_ps();
  const __m512 one = _mm512_set1_ps(1.0f), minus_one = _mm512_set1_ps(-1.0f);
  __m512i tm = _mm512_setzero_si512();
  for (; i + 16 <= n; i += 16) {
    const __m512 gi = negate_if(Maximize, load16(g + i));
    const __m512 m0 = dequantize16(mc + i, maps.signed_values + 128, am);
    const __m512 d = _mm512_sub_ps(gi, m0);
    const __m512 w = _mm512_mul_ps(load16(p + i), decay);
    const __m512 c = _mm512_add_ps(m0, _mm512_mul_ps(weight1, d));
    const __m512 sign = _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask(c, zero, _CMP_GT_OQ),
        _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, zero, _CMP_LT_OQ), zero, minus_one), one);
    store16(p + i, _mm512_add_ps(w, _mm512_mul_ps(sign, neg_lr)));
    const __m512 mi = _mm512_add_ps(m0, _mm512_mul_ps(weight2, d));
    _mm512_storeu_ps(m + i, mi);
    tm = _mm512_max_epu32(tm, abs_bits(mi));
  }
  m_top = float_of(_mm512_reduce_max_epu32(tm));
#endif
  if (i < n) {
    float m_rest;
    dequantize(m + i, mc + i, n - i, maps.signed_values + 128, *m_absmax);
    lion_elements<P, G, Maximize, true>(p + i, g + i, m + i, n - i, h, &m_rest);
    m_top = larger(m_top, m_rest);
  }
  *m_absmax = m_top;
}

// --------------------------------------------------------------------------------------------
// Work split: items of about kItem elements (whole blocks for 8-bit state), run in parallel
// --------------------------------------------------------------------------------------------

constexpr int64_t kItem = int64_t{1} << 15;

struct Item {
  int64_t tensor, start, stop;  // element range [start, stop) of one tensor
};

// Items over `count` tensors, each cut at multiples of `unit` elements; nullptr if no memory.
Item* split(int64_t count, const int64_t* numels, int64_t unit, int64_t* n_items) {
  const int64_t step = kItem > unit ? kItem / unit * unit : unit;
  int64_t total = 0;
  for (int64_t t = 0; t < count; t++) total += (numels[t] + step - 1) / step;
  Item* items = static_cast<Item*>(std::malloc(sizeof(Item) * (total > 0 ? total : 1)));
  if (items == nullptr) return nullptr;
  int64_t k = 0;
  for (int64_t t = 0; t < count; t++) {
    for (int64_t start = 0; start < numels[t]; start += step) {
      const int64_t stop = start + step < numels[t] ? start + step : numels[t];
      items[k++] = Item{t, start, stop};
    }
  }
  *n_items = k;
  return items;
}

struct Lists {
  void* const* params;
  const void* const* grads;
  void* const* first;   // exp_avg (fp32) or exp_avg codes (int8)
  void* const* second;  // exp_avg_sq (fp32) or exp_avg_sq codes (uint8); unused by Lion
  void* const* first_absmax;
  void* const* second_absmax;
};

enum Kind : int32_t { kAdamW = 0, kLion = 1 };

template <class P, class G, bool Maximize, Kind K, bool Quantized>
void run_item(const Lists& l, const Item& it, int64_t block, const float* hp, const Maps& maps,
              float* scratch) {
  using PT = typename P::T;
  using GT = typename G::T;
  PT* p = static_cast<PT*>(l.params[it.tensor]);
  const GT* g = static_cast<const GT*>(l.grads[it.tensor]);
  if (!Quantized) {
    const int64_t a = it.start, n = it.stop - it.start;
    float* m = static_cast<float*>(l.first[it.tensor]) + a;
    if (K == kAdamW) {
      float* v = static_cast<float*>(l.second[it.tensor]) + a;
      adamw_elements<P, G, Maximize>(p + a, g + a, m, v, n, AdamW(hp));
    } else {
      lion_elements<P, G, Maximize>(p + a, g + a, m, n, Lion(hp));
    }
    return;
  }
  int8_t* mc = static_cast<int8_t*>(l.first[it.tensor]);
  float* ma = static_cast<float*>(l.first_absmax[it.tensor]);
  float* m = scratch;
  float* v = scratch + block;
  // per block: dequantize, update into the scratch moments (new absmax), requantize
  for (int64_t a = it.start; a < it.stop; a += block) {
    const int64_t n = it.stop - a < block ? it.stop - a : block;
    const int64_t b = a / block;
    if (K == kAdamW) {
      uint8_t* vc = static_cast<uint8_t*>(l.second[it.tensor]);
      float* va = static_cast<float*>(l.second_absmax[it.tensor]);
      adamw_block<P, G, Maximize>(p + a, g + a, mc + a, vc + a, m, v, n, maps, AdamW(hp),
                                  ma + b, va + b);
      requantize(v, n, va[b], maps.unsigned_lut, 0, vc + a);
    } else {
      lion_block<P, G, Maximize>(p + a, g + a, mc + a, m, n, maps, Lion(hp), ma + b);
    }
    requantize(m, n, ma[b], maps.signed_lut, 128, mc + a);
  }
}

template <class P, class G, bool Maximize, Kind K, bool Quantized>
int32_t run(const Lists& l, const Item* items, int64_t n_items, int64_t block, const float* hp,
            const Maps& maps, int32_t threads) {
  const int64_t scratch_floats = Quantized ? 2 * block : 0;
  int32_t failed = 0;
#pragma omp parallel num_threads(threads > 0 ? threads : 1)
  {
    float* scratch = nullptr;
    if (scratch_floats > 0) {
      scratch = static_cast<float*>(std::malloc(sizeof(float) * scratch_floats));
      if (scratch == nullptr) {
#pragma omp atomic write
        failed = 2;
      }
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t k = 0; k < n_items; k++) {
      if (scratch_floats == 0 || scratch != nullptr) {
        run_item<P, G, Maximize, K, Quantized>(l, items[k], block, hp, maps, scratch);
      }
    }
    std::free(scratch);
  }
  return failed;
}

template <class P, class G>
int32_t dispatch_flags(const Lists& l, const Item* items, int64_t n_items, int64_t block,
                       const float* hp, const Maps& maps, int32_t threads, Kind kind,
                       bool quantized, bool maximize) {
#define OW_RUN(M, K, Q) return run<P, G, M, K, Q>(l, items, n_items, block, hp, maps, threads)
  if (kind == kAdamW) {
    if (quantized) {
      if (maximize) OW_RUN(true, kAdamW, true);
      OW_RUN(false, kAdamW, true);
    }
    if (maximize) OW_RUN(true, kAdamW, false);
    OW_RUN(false, kAdamW, false);
  }
  if (quantized) {
    if (maximize) OW_RUN(true, kLion, true);
    OW_RUN(false, kLion, true);
  }
  if (maximize) OW_RUN(true, kLion, false);
  OW_RUN(false, kLion, false);
#undef OW_RUN
}

int32_t step(Kind kind, int64_t count, const Lists& l, const int64_t* numels, int64_t block,
             int32_t param_dtype, int32_t grad_dtype, int32_t maximize, const float* hp,
             const Maps& maps, int32_t threads) {
  if (count <= 0) return 0;
  const bool quantized = block > 0;
  int64_t n_items = 0;
  Item* items = split(count, numels, quantized ? block : 1, &n_items);
  if (items == nullptr) return 2;
  int32_t status = 1;  // unsupported dtype
  const bool mx = maximize != 0;
  if (param_dtype == kFloat32 && grad_dtype == kFloat32) {
    status = dispatch_flags<F32, F32>(l, items, n_items, block, hp, maps, threads, kind,
                                      quantized, mx);
  } else if (param_dtype == kFloat32 && grad_dtype == kBFloat16) {
    status = dispatch_flags<F32, BF16>(l, items, n_items, block, hp, maps, threads, kind,
                                       quantized, mx);
  } else if (param_dtype == kBFloat16 && grad_dtype == kFloat32) {
    status = dispatch_flags<BF16, F32>(l, items, n_items, block, hp, maps, threads, kind,
                                       quantized, mx);
  } else if (param_dtype == kBFloat16 && grad_dtype == kBFloat16) {
    status = dispatch_flags<BF16, BF16>(l, items, n_items, block, hp, maps, threads, kind,
                                        quantized, mx);
  }
  std::free(items);
  return status;
}

}  // namespace

// --------------------------------------------------------------------------------------------
// Entry points (ctypes). Return 0 on success, 1 for an unsupported dtype, 2 when out of memory.
// `block_size` 0 means fp32 state; `hparams` as in the AdamW / Lion structs above; `maps` the
// four pointers of Maps (unused for fp32 state).
// --------------------------------------------------------------------------------------------

extern "C" {

int32_t optiwise_native_abi(void) { return 1; }

int32_t optiwise_adamw_step(int64_t count, void* const* params, const void* const* grads,
                            void* const* exp_avgs, void* const* exp_avg_absmax,
                            void* const* exp_avg_sqs, void* const* exp_avg_sq_absmax,
                            const int64_t* numels, int64_t block_size, int32_t param_dtype,
                            int32_t grad_dtype, int32_t maximize, const float* hparams,
                            const void* const* maps, int32_t threads) {
  const Lists l{params, grads, exp_avgs, exp_avg_sqs, exp_avg_absmax, exp_avg_sq_absmax};
  const Maps mp{static_cast<const float*>(maps[0]), static_cast<const float*>(maps[1]),
                static_cast<const int32_t*>(maps[2]), static_cast<const int32_t*>(maps[3])};
  return step(kAdamW, count, l, numels, block_size, param_dtype, grad_dtype, maximize, hparams,
              mp, threads);
}

int32_t optiwise_lion_step(int64_t count, void* const* params, const void* const* grads,
                           void* const* exp_avgs, void* const* exp_avg_absmax,
                           const int64_t* numels, int64_t block_size, int32_t param_dtype,
                           int32_t grad_dtype, int32_t maximize, const float* hparams,
                           const void* const* maps, int32_t threads) {
  const Lists l{params, grads, exp_avgs, nullptr, exp_avg_absmax, nullptr};
  const Maps mp{static_cast<const float*>(maps[0]), static_cast<const float*>(maps[1]),
                static_cast<const int32_t*>(maps[2]), static_cast<const int32_t*>(maps[3])};
  return step(kLion, count, l, numels, block_size, param_dtype, grad_dtype, maximize, hparams,
              mp, threads);
}

}  // extern "C"
