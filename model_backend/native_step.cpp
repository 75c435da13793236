// Tokens through a Llama model on an x86-64 CPU with AVX2, FMA and F16C: the CPU's default decode step (one token
// per call while decoding; up to 16 for a prompt tail or a verify pass, each attending up to its own position).
//
// Why hand-written: the step is a chain of matrix-vector products and one attention row per head, and Inductor's
// loops for them are bound by their own arithmetic (one accumulator and one horizontal sum per output row), not by
// memory; see benchmarks/README.md, "Speed".  Here each product runs four output rows at a time with two
// accumulators each (eight independent FMA chains share every load of the input), attention scores four keys at a
// time and accumulates values 32 dimensions in registers, and the whole call is one OpenMP region: one call from
// Python and a barrier per stage.
//
// Arithmetic, as the eager forward's (model_backend/llama.py): activations in float32; with half-precision weights
// each product's input is rounded to half precision first, accumulated in float32; keys/values are stored in half
// precision (round to nearest even, as torch's conversion).  exp is Cephes' expf polynomial.
//
// Layout (every tensor contiguous): weights [out, in] in the weights' dtype; norms and rotary tables float32; the
// KV cache per layer [kv_heads, max_len, head_dim] half precision.  The Python side (native_step.py) checks shapes,
// sizes (multiples of 8), token ids, positions and the CPU before calling.

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#include <cmath>

namespace {

struct Shape {
    int64_t layers, dim, heads, kv_heads, head_dim, ffn, vocab, max_len, half, threads;
};

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template <bool HALF>
inline __m256 load8(const void* w, int64_t at) {
    if constexpr (HALF) {
        return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(w) + at)));
    } else {
        return _mm256_loadu_ps(static_cast<const float*>(w) + at);
    }
}

inline __m256 round_half(__m256 v) {  // float32 -> nearest half precision -> float32
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

inline __m256 exp8(__m256 x) {  // Cephes expf: x = n ln2 + r, e^r by a degree-6 polynomial, times 2^n
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// For each of ``count`` input rows x_j (``x + j * n``): y_j[r] = (add ? add_j[r] : 0) + sum_i W[r, i] x_j[i], r < rows,
// y_j and add_j at ``j * ystride``; n a multiple of 8.  W is read once: each block of four of its rows (a few KiB,
// in L1) serves every input row.  Shares the enclosing parallel region's threads (omp for, with its barrier).
template <bool HALF>
void product(const void* w, const float* x, float* y, int64_t rows, int64_t n, const float* add, int64_t count,
             int64_t ystride) {
#pragma omp for schedule(static)
    for (int64_t r0 = 0; r0 < rows; r0 += 4) {
        for (int64_t j = 0; j < count; j++) {
            const float* xj = x + j * n;
            float* yj = y + j * ystride;
            const float* aj = add ? add + j * ystride : nullptr;
            if (r0 + 4 <= rows) {
                __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
                const int64_t o0 = r0 * n, o1 = o0 + n, o2 = o1 + n, o3 = o2 + n;
                int64_t i = 0;
                for (; i + 16 <= n; i += 16) {
                    const __m256 x0 = _mm256_loadu_ps(xj + i), x1 = _mm256_loadu_ps(xj + i + 8);
                    a0 = _mm256_fmadd_ps(load8<HALF>(w, o0 + i), x0, a0);
                    a1 = _mm256_fmadd_ps(load8<HALF>(w, o1 + i), x0, a1);
                    a2 = _mm256_fmadd_ps(load8<HALF>(w, o2 + i), x0, a2);
                    a3 = _mm256_fmadd_ps(load8<HALF>(w, o3 + i), x0, a3);
                    b0 = _mm256_fmadd_ps(load8<HALF>(w, o0 + i + 8), x1, b0);
                    b1 = _mm256_fmadd_ps(load8<HALF>(w, o1 + i + 8), x1, b1);
                    b2 = _mm256_fmadd_ps(load8<HALF>(w, o2 + i + 8), x1, b2);
                    b3 = _mm256_fmadd_ps(load8<HALF>(w, o3 + i + 8), x1, b3);
                }
                if (i < n) {
                    const __m256 x0 = _mm256_loadu_ps(xj + i);
                    a0 = _mm256_fmadd_ps(load8<HALF>(w, o0 + i), x0, a0);
                    a1 = _mm256_fmadd_ps(load8<HALF>(w, o1 + i), x0, a1);
                    a2 = _mm256_fmadd_ps(load8<HALF>(w, o2 + i), x0, a2);
                    a3 = _mm256_fmadd_ps(load8<HALF>(w, o3 + i), x0, a3);
                }
                const float sums[4] = {hsum(_mm256_add_ps(a0, b0)), hsum(_mm256_add_ps(a1, b1)),
                                       hsum(_mm256_add_ps(a2, b2)), hsum(_mm256_add_ps(a3, b3))};
                for (int k = 0; k < 4; k++) yj[r0 + k] = (aj ? aj[r0 + k] : 0.0f) + sums[k];
            } else {
                for (int64_t r = r0; r < rows; r++) {
                    __m256 a = _mm256_setzero_ps();
                    for (int64_t i = 0; i < n; i += 8)
                        a = _mm256_fmadd_ps(load8<HALF>(w, r * n + i), _mm256_loadu_ps(xj + i), a);
                    yj[r] = (aj ? aj[r] : 0.0f) + hsum(a);
                }
            }
        }
    }
}

// out = x * rsqrt(mean(x^2) + eps) * weight, rounded to half precision when the next product's weights are.
template <bool HALF>
void rms_norm(const float* x, const float* weight, float eps, float* out, int64_t n) {
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    const __m256 scale = _mm256_set1_ps(1.0f / std::sqrt(hsum(acc) / static_cast<float>(n) + eps));
    for (int64_t i = 0; i < n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), scale), _mm256_loadu_ps(weight + i));
        if constexpr (HALF) v = round_half(v);
        _mm256_storeu_ps(out + i, v);
    }
}

// Llama's rotary embedding (rotate_half pairs i with i + hd/2) on one head's vector, in place.
void rotate(float* v, const float* cos, const float* sin, int64_t hd) {
    const int64_t half = hd / 2;
    for (int64_t i = 0; i < half; i++) {
        const float a = v[i], b = v[i + half];
        v[i] = a * cos[i] - b * sin[i];
        v[i + half] = b * cos[i + half] + a * sin[i + half];
    }
}

// ``count`` tokens at positions pos.. (each attending to every cached position up to its own), their keys/values
// written into the cache; the logits of the last ``logit_rows`` rows into ``logits`` ([logit_rows, vocab]).
template <bool HALF>
void forward(const Shape& s, void* const* p, const float* eps, const int64_t* tokens, int64_t count, int64_t pos,
             float* logits, int64_t logit_rows) {
    const int64_t D = s.dim, H = s.heads, KV = s.kv_heads, hd = s.head_dim, F = s.ffn;
    const int64_t group = H / KV, qkv_rows = (H + 2 * KV) * hd;
    const void* embed = p[0];
    const void* lm_head = p[1];
    const float* final_norm = static_cast<const float*>(p[2]);
    const float* cos_table = static_cast<const float*>(p[3]);
    const float* sin_table = static_cast<const float*>(p[4]);
    // scratch, for MAX_ROWS rows: x [D], xn [D], qkv, attention out [H * hd], gate/up [2F], act [F]; per thread
    // one attention row [max_len]
    float* x = static_cast<float*>(p[5]);
    float* xn = x + count * D;
    float* qkv = xn + count * D;
    float* att = qkv + count * qkv_rows;
    float* gu = att + count * H * hd;
    float* act = gu + count * 2 * F;
    float* rows_of_scores = act + count * F;
    const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
#pragma omp parallel num_threads(static_cast<int>(s.threads))
    {
        float* sc = rows_of_scores + static_cast<int64_t>(omp_get_thread_num()) * s.max_len;
#pragma omp for schedule(static)
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < D; i += 8) _mm256_storeu_ps(x + j * D + i, load8<HALF>(embed, tokens[j] * D + i));
        for (int64_t l = 0; l < s.layers; l++) {
            void* const* lp = p + 6 + 8 * l;  // attention norm, q/k/v, output, MLP norm, gate/up, down, keys, values
            uint16_t* keys = static_cast<uint16_t*>(lp[6]);
            uint16_t* values = static_cast<uint16_t*>(lp[7]);
#pragma omp for schedule(static)
            for (int64_t j = 0; j < count; j++)
                rms_norm<HALF>(x + j * D, static_cast<const float*>(lp[0]), eps[2 * l], xn + j * D, D);
            product<HALF>(lp[1], xn, qkv, qkv_rows, D, nullptr, count, qkv_rows);
#pragma omp for schedule(static)
            for (int64_t j = 0; j < count; j++) {  // rotary on queries and keys, then keys/values into the cache
                float* row = qkv + j * qkv_rows;
                const float* c = cos_table + (pos + j) * hd;
                const float* sn = sin_table + (pos + j) * hd;
                for (int64_t h = 0; h < H + KV; h++) rotate(row + h * hd, c, sn, hd);
                for (int64_t h = 0; h < KV; h++) {
                    for (int64_t i = 0; i < hd; i += 8) {
                        const __m256 k = _mm256_loadu_ps(row + (H + h) * hd + i);
                        const __m256 v = _mm256_loadu_ps(row + (H + KV + h) * hd + i);
                        const int64_t at = (h * s.max_len + pos + j) * hd + i;
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(keys + at), _mm256_cvtps_ph(k, _MM_FROUND_TO_NEAREST_INT));
                        _mm_storeu_si128(reinterpret_cast<__m128i*>(values + at), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
                    }
                }
            }
#pragma omp for schedule(static)
            for (int64_t hj = 0; hj < H * count; hj++) {  // one (head, row) pair: row j sees positions 0..pos + j
                const int64_t h = hj % H, j = hj / H, T = pos + j + 1;
                const float* q = qkv + j * qkv_rows + h * hd;
                const uint16_t* k = keys + (h / group) * s.max_len * hd;
                const uint16_t* v = values + (h / group) * s.max_len * hd;
                int64_t t = 0;
                for (; t + 4 <= T; t += 4) {  // four keys at a time: four independent FMA chains
                    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
                    const int64_t at = t * hd;
                    for (int64_t i = 0; i < hd; i += 8) {
                        const __m256 qi = _mm256_loadu_ps(q + i);
                        a0 = _mm256_fmadd_ps(qi, load8<true>(k, at + i), a0);
                        a1 = _mm256_fmadd_ps(qi, load8<true>(k, at + hd + i), a1);
                        a2 = _mm256_fmadd_ps(qi, load8<true>(k, at + 2 * hd + i), a2);
                        a3 = _mm256_fmadd_ps(qi, load8<true>(k, at + 3 * hd + i), a3);
                    }
                    sc[t] = hsum(a0) * scale;
                    sc[t + 1] = hsum(a1) * scale;
                    sc[t + 2] = hsum(a2) * scale;
                    sc[t + 3] = hsum(a3) * scale;
                }
                for (; t < T; t++) {
                    __m256 a = _mm256_setzero_ps();
                    for (int64_t i = 0; i < hd; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), load8<true>(k, t * hd + i), a);
                    sc[t] = hsum(a) * scale;
                }
                float top = -INFINITY;
                for (int64_t u = 0; u < T; u++) top = sc[u] > top ? sc[u] : top;
                __m256 total8 = _mm256_setzero_ps();
                for (t = 0; t + 8 <= T; t += 8) {
                    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + t), _mm256_set1_ps(top)));
                    _mm256_storeu_ps(sc + t, e);
                    total8 = _mm256_add_ps(total8, e);
                }
                float total = hsum(total8);
                if (t < T) {  // the tail: through a padded vector
                    float tail[8] = {0};
                    for (int64_t u = t; u < T; u++) tail[u - t] = sc[u] - top;
                    float out[8];
                    _mm256_storeu_ps(out, exp8(_mm256_loadu_ps(tail)));
                    for (int64_t u = t; u < T; u++) {
                        sc[u] = out[u - t];
                        total += out[u - t];
                    }
                }
                float acc[256];  // head_dim <= 256 (checked in Python)
                int64_t i0 = 0;
                for (; i0 + 32 <= hd; i0 += 32) {  // 32 dimensions in four registers, over every value row
                    __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
                    for (int64_t u = 0; u < T; u++) {
                        const __m256 w = _mm256_set1_ps(sc[u]);
                        const int64_t at = u * hd + i0;
                        o0 = _mm256_fmadd_ps(w, load8<true>(v, at), o0);
                        o1 = _mm256_fmadd_ps(w, load8<true>(v, at + 8), o1);
                        o2 = _mm256_fmadd_ps(w, load8<true>(v, at + 16), o2);
                        o3 = _mm256_fmadd_ps(w, load8<true>(v, at + 24), o3);
                    }
                    _mm256_storeu_ps(acc + i0, o0);
                    _mm256_storeu_ps(acc + i0 + 8, o1);
                    _mm256_storeu_ps(acc + i0 + 16, o2);
                    _mm256_storeu_ps(acc + i0 + 24, o3);
                }
                for (; i0 < hd; i0 += 8) {
                    __m256 o = _mm256_setzero_ps();
                    for (int64_t u = 0; u < T; u++) o = _mm256_fmadd_ps(_mm256_set1_ps(sc[u]), load8<true>(v, u * hd + i0), o);
                    _mm256_storeu_ps(acc + i0, o);
                }
                const __m256 inv = _mm256_set1_ps(1.0f / total);
                for (int64_t i = 0; i < hd; i += 8) {
                    __m256 o = _mm256_mul_ps(_mm256_loadu_ps(acc + i), inv);
                    if constexpr (HALF) o = round_half(o);
                    _mm256_storeu_ps(att + j * H * hd + h * hd + i, o);
                }
            }
            product<HALF>(lp[2], att, x, D, H * hd, x, count, D);
#pragma omp for schedule(static)
            for (int64_t j = 0; j < count; j++)
                rms_norm<HALF>(x + j * D, static_cast<const float*>(lp[3]), eps[2 * l + 1], xn + j * D, D);
            product<HALF>(lp[4], xn, gu, 2 * F, D, nullptr, count, 2 * F);
#pragma omp for schedule(static)
            for (int64_t ji = 0; ji < count * F; ji += 8) {  // SiLU(gate) * up, F a multiple of 8
                const int64_t j = ji / F, i = ji % F;
                const __m256 g = _mm256_loadu_ps(gu + j * 2 * F + i);
                const __m256 silu = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
                __m256 o = _mm256_mul_ps(silu, _mm256_loadu_ps(gu + j * 2 * F + F + i));
                if constexpr (HALF) o = round_half(o);
                _mm256_storeu_ps(act + ji, o);
            }
            product<HALF>(lp[5], act, x, D, F, x, count, D);
        }
        const int64_t first = count - logit_rows;  // only the rows whose logits are asked for
#pragma omp for schedule(static)
        for (int64_t j = first; j < count; j++) rms_norm<HALF>(x + j * D, final_norm, eps[2 * s.layers], xn + j * D, D);
        product<HALF>(lm_head, xn + first * D, logits, s.vocab, D, nullptr, logit_rows, s.vocab);
    }
}

}  // namespace

// shape: layers, dim, heads, kv_heads, head_dim, ffn, vocab, max_len, half (1: half-precision weights), threads.
// pointers: embedding, lm head, final norm, cos, sin, scratch, then per layer: attention norm, q/k/v, output,
// MLP norm, gate/up, down, keys, values.  eps: per layer the attention then MLP norm's, then the final norm's.
extern "C" void native_forward(const int64_t* shape, void* const* pointers, const float* eps, const int64_t* tokens,
                               int64_t count, int64_t pos, float* logits, int64_t logit_rows) {
    const Shape s{shape[0], shape[1], shape[2], shape[3], shape[4], shape[5], shape[6], shape[7], shape[8], shape[9]};
    if (s.half) {
        forward<true>(s, pointers, eps, tokens, count, pos, logits, logit_rows);
    } else {
        forward<false>(s, pointers, eps, tokens, count, pos, logits, logit_rows);
    }
}
