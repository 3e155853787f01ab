/* The work of a pen step between its matmuls, in C: for sampling the LSTM cells, the attention
 * window, the mixture draw and the stop rule, for a batch of lines; for training, layer 1 and the
 * window, forward and backward (at the end of this file).
 *
 * handsynth/models/graves/native.py compiles this file once per machine (cc -O3 -march=native) and calls it
 * through ctypes; the matmuls stay in PyTorch (oneDNN). Without a C compiler the sampler runs
 * the same step as PyTorch and numpy operations (network.TorchStep: Synthesizer.step +
 * sample_mixture) with the stop rule of sampling.stop_rule, which is also what the tests compare
 * this file against. The stop rule below is a fused copy of sampling.stop_rule: change both.
 * The arithmetic is the same; only the rounding of exp differs (the polynomial below is within
 * 2 ulp).
 *
 * Layout, for B rows (lines being written), hidden size H, alphabet A, L layers:
 *   z[0]  (B, 3 + A + H)       bfloat16  [x, w, h_0]             input of layer 0's matmul
 *   z[i]  (B, 3 + A + 2H)      bfloat16  [x, w, h_{i-1}, h_i]    input of layer i's matmul
 *   zh    (B, L H)             bfloat16  [h_0, ..., h_{L-1}]     input of the head's matmul
 *   c[i]  (B, H)               float32   cell states
 * Gates come out of the matmuls in the order [i, f, o, g] with g doubled: one sigmoid serves
 * all four, tanh(g) = 2 sigmoid(2g) - 1.
 */
#include <stdint.h>
#include <string.h>
#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define MAX_LAYERS 8

typedef struct {
    int32_t B, H, A, K, KP, M, U, L, cap, finish_stroke;
    double steps_per_char;
    float kappa_scale, exp_floor;
    uint16_t *z[MAX_LAYERS];
    uint16_t *zh;
    float *c[MAX_LAYERS];
    float *h0;            /* (B, H) layer 0's h in float32, for the window */
    float *kappa;         /* (B, K) */
    const float *w_win;   /* (H, KP) the window layer, 3K columns zero-padded to KP (a multiple of 16) */
    const float *b_win;   /* (KP) */
    float *phi;           /* (B, U + 1) this step's window weights */
    const int64_t *code;  /* (R, U) per table row: character codes, 0 = padding */
    const int64_t *rows;  /* (B) each row's index in the tables below */
    const float *noise;   /* (R, cap, 6) per table row: 4 uniforms, 2 standard normals */
    const float *bias;    /* (R) */
    const int64_t *ends;  /* (R) position after the last character */
    const int64_t *caps;  /* (R) step caps */
    const int64_t *prefix; /* (R) characters of the row's primer text before its own */
    float *out_steps;     /* (R, cap, 3) */
    float *phi_all;       /* (R, cap, U + 1) */
    uint8_t *passed;      /* (R) */
    uint8_t *stop;        /* (B) out */
    int64_t *progress;    /* (B) out */
} Ctx;

static inline float bf2f(uint16_t v) {
    uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f2bf(float f) {   /* round to nearest even, as PyTorch */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

/* exp(x) for x in float32: 2^n * e^r with |r| <= ln2 / 2 and a degree-6 polynomial (Cephes);
 * written so that the compiler vectorises the loops that call it. */
static inline float hs_exp(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float n = __builtin_rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t e = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &e, 4);
    return p * s;
}

#if defined(__AVX512F__)
/* 16 lanes of hs_exp, and of 1 / (1 + exp(-x)) with the reciprocal refined by one Newton step
 * (to float32's precision; a division costs several times more) */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.0f)), _mm512_set1_ps(88.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static inline __m512 sigmoid16(__m512 x) {
    __m512 d = _mm512_add_ps(_mm512_set1_ps(1.0f), exp16(_mm512_sub_ps(_mm512_setzero_ps(), x)));
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

static inline __m512 load_bf16(const uint16_t *p, __mmask16 m) {
    __m256i v = _mm256_maskz_loadu_epi16(m, p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

static inline void store_bf16(uint16_t *p, __m512 x, __mmask16 m) {   /* round to nearest even */
    __m512i u = _mm512_castps_si512(x);
    u = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                             _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
    _mm256_mask_storeu_epi16(p, m, _mm512_cvtepi32_epi16(_mm512_srli_epi32(u, 16)));
}
#endif

static const float ZEROS[4096];

/* One LSTM cell for one row: gates g (4H, bfloat16; i at 0, f at H, o at oo, 2g at og), the
 * previous c in cp (may be c itself) -> c, h, and if not NULL tanh(c) into tc and the
 * activations [i, f, tanh(g), o] into acts (training's order) */
static void lstm_cell(const uint16_t *g, int og, int oo, const float *cp, float *c, float *tc, float *h,
                      float *acts, int H) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int j = 0; j < H; j += 16) {
        const __mmask16 m = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1);
        __m512 i = sigmoid16(load_bf16(g + j, m)), f = sigmoid16(load_bf16(g + H + j, m));
        __m512 o = sigmoid16(load_bf16(g + oo + j, m)), sg = sigmoid16(load_bf16(g + og + j, m));
        __m512 tg = _mm512_sub_ps(_mm512_add_ps(sg, sg), one);                        /* tanh(g) */
        __m512 cc = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp + j), _mm512_mul_ps(i, tg));
        __m512 s2 = sigmoid16(_mm512_add_ps(cc, cc));
        __m512 t = _mm512_sub_ps(_mm512_add_ps(s2, s2), one);                         /* tanh(c) */
        _mm512_mask_storeu_ps(c + j, m, cc);
        _mm512_mask_storeu_ps(h + j, m, _mm512_mul_ps(o, t));
        if (tc) _mm512_mask_storeu_ps(tc + j, m, t);
        if (acts) {
            _mm512_mask_storeu_ps(acts + j, m, i);
            _mm512_mask_storeu_ps(acts + H + j, m, f);
            _mm512_mask_storeu_ps(acts + 2 * H + j, m, tg);
            _mm512_mask_storeu_ps(acts + 3 * H + j, m, o);
        }
    }
#else
    for (int j = 0; j < H; j++) {
        float i = 1.0f / (1.0f + hs_exp(-bf2f(g[j])));
        float f = 1.0f / (1.0f + hs_exp(-bf2f(g[H + j])));
        float o = 1.0f / (1.0f + hs_exp(-bf2f(g[oo + j])));
        float tg = 2.0f / (1.0f + hs_exp(-bf2f(g[og + j]))) - 1.0f;
        float cc = f * cp[j] + i * tg;
        float t = 2.0f / (1.0f + hs_exp(-2.0f * cc)) - 1.0f;
        c[j] = cc;
        h[j] = o * t;
        if (tc) tc[j] = t;
        if (acts) { acts[j] = i; acts[H + j] = f; acts[2 * H + j] = tg; acts[3 * H + j] = o; }
    }
#endif
}

static void put_bf16(uint16_t *dst, const float *src, int n) {
    for (int j = 0; j < n; j++) dst[j] = f2bf(src[j]);
}

/* p = h W + b for the window layer: W (H, KP), KP a multiple of 16 */
static void window_logits(const float *h, const float *W, const float *bias, float *p, int H, int KP) {
#if defined(__AVX512F__)
    for (int j0 = 0; j0 < KP; j0 += 16) {   /* four running sums, in registers */
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        int k = 0;
        for (; k + 4 <= H; k += 4) {
            const float *w = W + (int64_t)k * KP + j0;
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(h[k]), _mm512_loadu_ps(w), a0);
            a1 = _mm512_fmadd_ps(_mm512_set1_ps(h[k + 1]), _mm512_loadu_ps(w + KP), a1);
            a2 = _mm512_fmadd_ps(_mm512_set1_ps(h[k + 2]), _mm512_loadu_ps(w + 2 * KP), a2);
            a3 = _mm512_fmadd_ps(_mm512_set1_ps(h[k + 3]), _mm512_loadu_ps(w + 3 * KP), a3);
        }
        for (; k < H; k++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(h[k]), _mm512_loadu_ps(W + (int64_t)k * KP + j0), a0);
        __m512 sum = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        _mm512_storeu_ps(p + j0, _mm512_add_ps(sum, _mm512_loadu_ps(bias + j0)));
    }
#else
    for (int j = 0; j < KP; j++) p[j] = 0.0f;
    for (int k = 0; k < H; k++)
        for (int j = 0; j < KP; j++) p[j] += h[k] * W[(int64_t)k * KP + j];
    for (int j = 0; j < KP; j++) p[j] += bias[j];
#endif
}

/* One step of the attention window for one row: p = exp(h W + b) = (alpha, beta, kappa step)
 * (copied to p_out if not NULL); kappa += kappa_scale * step; the position used is kappa or, in
 * the attention warm-up (forced not NULL), kappa moved towards forced by blend (copied to k_out
 * if not NULL); phi(u) = sum_k alpha_k exp(-beta_k (k_k - u)^2) over n_pos positions, with the
 * Gaussians kept in E (K, n_pos) if not NULL; w (A) = phi summed per character (code: n_code
 * entries, 0 = none). */
static void window_row(const float *h, const float *W, const float *bias, int H, int K, int KP,
                       float kappa_scale, float cap_e, float *kappa, const float *forced, float blend,
                       float *p_out, float *k_out, float *E, float *phi, int n_pos,
                       const int64_t *code, int n_code, float *w, int A) {
    float p[256], k[256], e_row[1024];   /* n_pos <= 1024 (native.py checks) */
    window_logits(h, W, bias, p, H, KP);
    for (int j = 0; j < 3 * K; j++) p[j] = hs_exp(p[j]);
    if (p_out) memcpy(p_out, p, sizeof(float) * 3 * K);
    for (int q = 0; q < K; q++) {
        kappa[q] += kappa_scale * p[2 * K + q];
        k[q] = forced ? kappa[q] + blend * (forced[q] - kappa[q]) : kappa[q];
    }
    if (k_out) memcpy(k_out, k, sizeof(float) * K);
    for (int u = 0; u < n_pos; u++) phi[u] = 0.0f;
    for (int q = 0; q < K; q++) {
        const float alpha = p[q], beta = p[K + q], kk = k[q];
        float *Eq = E ? E + q * n_pos : e_row;
        for (int u = 0; u < n_pos; u++) {
            float d = kk - (float)u, e = d * d * beta;
            Eq[u] = hs_exp(-(e > cap_e ? cap_e : e));
        }
        for (int u = 0; u < n_pos; u++) phi[u] += alpha * Eq[u];
    }
    for (int a = 0; a < A; a++) w[a] = 0.0f;
    for (int u = 0; u < n_code; u++)
        if (code[u] > 0) w[code[u]] += phi[u];
}

/* Layer 0's cell and the window, after layer 0's matmul (gates g, (B, 4H) bfloat16). */
void hs_layer0(Ctx *s, const uint16_t *g) {
    const int H = s->H, A = s->A, K = s->K, KP = s->KP, U = s->U, L = s->L, A3 = 3 + A;
    const int w0 = A3 + H, wi = A3 + 2 * H, wh = L * H;
    float w[512];
    for (int b = 0; b < s->B; b++) {
        const int64_t r = s->rows[b];
        float *hf = s->h0 + (int64_t)b * H;
        float *c0 = s->c[0] + (int64_t)b * H;
        lstm_cell(g + (int64_t)b * 4 * H, 3 * H, 2 * H, c0, c0, NULL, hf, NULL, H);
        put_bf16(s->z[0] + (int64_t)b * w0 + A3, hf, H);
        if (L > 1) put_bf16(s->z[1] + (int64_t)b * wi + A3, hf, H);
        put_bf16(s->zh + (int64_t)b * wh, hf, H);
        window_row(hf, s->w_win, s->b_win, H, K, KP, s->kappa_scale, -s->exp_floor, s->kappa + (int64_t)b * K,
                   NULL, 0.0f, NULL, NULL, NULL, s->phi + (int64_t)b * (U + 1), U + 1, s->code + r * U, U, w, A);
        put_bf16(s->z[0] + (int64_t)b * w0 + 3, w, A);
        for (int i = 1; i < L; i++) put_bf16(s->z[i] + (int64_t)b * wi + 3, w, A);
    }
}

/* Layer i >= 1's cell, after its matmul. */
void hs_cell(Ctx *s, int layer, const uint16_t *g) {
    const int H = s->H, A3 = 3 + s->A, L = s->L, wi = A3 + 2 * H, wh = L * H;
    float hf[4096];
    for (int b = 0; b < s->B; b++) {
        float *cl = s->c[layer] + (int64_t)b * H;
        lstm_cell(g + (int64_t)b * 4 * H, 3 * H, 2 * H, cl, cl, NULL, hf, NULL, H);
        put_bf16(s->z[layer] + (int64_t)b * wi + A3 + H, hf, H);
        if (layer + 1 < L) put_bf16(s->z[layer + 1] + (int64_t)b * wi + A3, hf, H);
        put_bf16(s->zh + (int64_t)b * wh + layer * H, hf, H);
    }
}

/* The mixture draw from the head's output (B, 1 + 6M) bfloat16 for pen step t, as
 * sample_mixture: then the pen offsets are fed back (x into every layer's input), recorded with
 * phi, and the stop rule applied (a fused copy of sampling.stop_rule). Returns the number of rows that stop. */
int hs_sample(Ctx *s, const uint16_t *out, int t) {
    const int M = s->M, U = s->U, A3 = 3 + s->A, H = s->H, L = s->L, n_out = 1 + 6 * M;
    float pi[256], cdf[256];
    int n_stop = 0;
    for (int b = 0; b < s->B; b++) {
        const int64_t r = s->rows[b];
        const uint16_t *o = out + (int64_t)b * n_out;
        const float *nz = s->noise + (r * s->cap + t) * 6, bias = s->bias[r];
        float mx = -3.0e38f;
        for (int m = 0; m < M; m++) {
            pi[m] = bf2f(o[1 + m]) * (1.0f + bias);
            mx = pi[m] > mx ? pi[m] : mx;
        }
        float acc = 0.0f;
        for (int m = 0; m < M; m++) {
            acc += expf(pi[m] - mx);
            cdf[m] = acc;
        }
        int k = 0;
        const float target = nz[0] * cdf[M - 1];
        for (int m = 0; m < M; m++) k += cdf[m] < target;
        if (k > M - 1) k = M - 1;
        const float m1 = bf2f(o[1 + k + M]), m2 = bf2f(o[1 + k + 2 * M]);
        const float s1 = expf(bf2f(o[1 + k + 3 * M]) - bias), s2 = expf(bf2f(o[1 + k + 4 * M]) - bias);
        const float rho = tanhf(bf2f(o[1 + k + 5 * M])) * (1.0f - 1e-5f);
        const float n1 = nz[4], n2 = nz[5];
        float xs[3];
        xs[0] = m1 + s1 * n1;
        xs[1] = m2 + s2 * (rho * n1 + sqrtf(1.0f - rho * rho) * n2);
        xs[2] = nz[1] < 1.0f / (1.0f + expf(-bf2f(o[0]))) ? 1.0f : 0.0f;
        for (int i = 0; i < L; i++) {
            uint16_t *z = s->z[i] + (int64_t)b * (i == 0 ? A3 + H : A3 + 2 * H);
            for (int j = 0; j < 3; j++) z[j] = f2bf(xs[j]);
        }
        memcpy(s->out_steps + (r * s->cap + t) * 3, xs, sizeof xs);
        const float *ph = s->phi + (int64_t)b * (U + 1);
        memcpy(s->phi_all + (r * s->cap + t) * (U + 1), ph, sizeof(float) * (U + 1));
        /* Graves' stop rule: phi after the last character outweighs every character's phi */
        const int64_t *code = s->code + r * U;
        float inside = -3.0e38f;
        int focus = 0;
        for (int u = 0; u < U; u++) {
            if (code[u] > 0 && ph[u] > inside) inside = ph[u];
            if (ph[u] > ph[focus]) focus = u;
        }
        if (ph[s->ends[r]] > inside) s->passed[r] = 1;
        int stop = s->passed[r] && (xs[2] > 0.5f || !s->finish_stroke);
        int64_t progress = focus - s->prefix[r] > 0 ? focus - s->prefix[r] : 0;
        stop |= (t + 1) >= s->caps[r];
        stop |= (double)(t + 1) >= 40.0 + s->steps_per_char * (double)(progress + 1);
        s->stop[b] = (uint8_t)stop;
        s->progress[b] = progress;
        n_stop += stop;
    }
    return n_stop;
}

/* ---------------------------------------------------------------------------------------------
 * Training: layer 0 and the window stepped through T pen steps (kernel._Layer1Window), the work
 * between each step's matmul, forward and backward. Buffers as in _Layer1Window (time-major):
 *   Z (T + 1, B, A3 + H + 1) bfloat16, Z[t] = [x_t, w_{t-1}, h_{t-1}, 1]
 *   acts (T, B, 4H) = [sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)], Cs, TCs, Hs (T, B, H),
 *   P (T, B, 3K) = exp(window logits), Ks (T, B, K) the window position used, Es (T, B, K, U1),
 *   Phi (T, B, U1), all float32; gates from the matmul in the order [i, f, 2g, o].
 */
typedef struct {
    int32_t T, B, H, A, K, KP, U1, has_forced;
    float kappa_scale, blend, exp_floor;
    uint16_t *Z;
    float *acts, *Cs, *TCs, *Hs, *P, *Ks, *Es, *Phi;
    const float *w_win, *b_win;   /* (H, KP), (KP): the window layer, zero-padded */
    const float *w_win_t;         /* (3K, H) */
    const int64_t *code;          /* (B, U1) character code per position, 0 = none */
    const float *forced;          /* (T, B, K) the warm-up's window position, or NULL */
    float *kappa;                 /* (B, K) the learned position, running */
    /* backward */
    const uint16_t *gH;           /* (T, B, H) bfloat16: d loss / d h from above */
    const float *gW;              /* (T, B, A) d loss / d w from above, column 0 zero */
    float *dA;                    /* (T, B, 3K) d loss / d window logits */
    uint16_t *dG;                 /* (T, B, 4H) bfloat16 d loss / d gates */
    float *dc, *dkappa;           /* (B, H), (B, K) running */
} TrainCtx;

void hs_train_forward(TrainCtx *s, int t, const uint16_t *gates) {
    const int B = s->B, H = s->H, A = s->A, K = s->K, KP = s->KP, U1 = s->U1, A3 = 3 + A, ZW = A3 + H + 1;
    float w[512];
    for (int b = 0; b < B; b++) {
        const int64_t tb = (int64_t)t * B + b;
        const uint16_t *g = gates + (int64_t)b * 4 * H;
        float *a = s->acts + tb * 4 * H, *c = s->Cs + tb * H, *tc = s->TCs + tb * H, *h = s->Hs + tb * H;
        lstm_cell(g, 2 * H, 3 * H, t > 0 ? s->Cs + (tb - B) * H : ZEROS, c, tc, h, a, H);
        uint16_t *z = s->Z + (tb + B) * ZW;   /* Z[t + 1], row b */
        put_bf16(z + A3, h, H);
        window_row(h, s->w_win, s->b_win, H, K, KP, s->kappa_scale, -s->exp_floor, s->kappa + (int64_t)b * K,
                   s->has_forced ? s->forced + tb * K : NULL, s->blend, s->P + tb * 3 * K, s->Ks + tb * K,
                   s->Es + tb * K * U1, s->Phi + tb * U1, U1, s->code + (int64_t)b * U1, U1, w, A);
        put_bf16(z + 3, w, A);
    }
}

static void lstm_cell_grad(const float *a, const float *tc, const float *cp, const float *dh, float *dc,
                           uint16_t *dG, int H);

/* The backward of pen step t: dz (B, A3 + H + 1) bfloat16 is d loss / d Z[t + 1] from step
 * t + 1's matmul (NULL at the last step). Writes dA[t] and dG[t]; dc and dkappa carry to t - 1. */
void hs_train_backward(TrainCtx *s, int t, const uint16_t *dz) {
    const int B = s->B, H = s->H, A = s->A, K = s->K, U1 = s->U1, A3 = 3 + A, ZW = A3 + H + 1;
    const float lam = s->has_forced ? 1.0f - s->blend : 1.0f;   /* d k / d kappa */
    float dw[512], dphi[1024], r[256], dh[4096];
    for (int b = 0; b < B; b++) {
        const int64_t tb = (int64_t)t * B + b;
        const uint16_t *dzb = dz ? dz + (int64_t)b * ZW : NULL;
        const float *gW = s->gW + tb * A;
        for (int a = 0; a < A; a++) dw[a] = (dzb ? bf2f(dzb[3 + a]) : 0.0f) + gW[a];
        const int64_t *code = s->code + (int64_t)b * U1;
        for (int u = 0; u < U1; u++) dphi[u] = dw[code[u]];
        /* d loss / d (alpha, beta, kappa step) logits, through phi = sum_k alpha_k E_k */
        const float *P = s->P + tb * 3 * K, *k = s->Ks + tb * K, *E = s->Es + tb * K * U1;
        float *dkap = s->dkappa + (int64_t)b * K, *dA = s->dA + tb * 3 * K;
        for (int q = 0; q < K; q++) {
            const float alpha = P[q], beta = P[K + q], kk = k[q];
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f;
            for (int u = 0; u < U1; u++) {
                float d = kk - (float)u, ea = E[q * U1 + u] * alpha * dphi[u];
                s0 += ea;
                s1 += ea * d * d;
                s2 += ea * d;
            }
            r[q] = s0;                        /* d/d alpha_hat = alpha * d/d alpha */
            r[K + q] = -beta * s1;            /* d/d beta_hat */
            dkap[q] += -2.0f * lam * beta * s2;
            r[2 * K + q] = dkap[q] * P[2 * K + q] * s->kappa_scale;
        }
        for (int j = 0; j < 3 * K; j++) dA[j] = r[j];
        const uint16_t *gH = s->gH + tb * H;
        for (int j = 0; j < H; j++) dh[j] = (dzb ? bf2f(dzb[A3 + j]) : 0.0f) + bf2f(gH[j]);
        for (int q = 0; q < 3 * K; q++) {
            const float rq = r[q], *wt = s->w_win_t + (int64_t)q * H;
            for (int j = 0; j < H; j++) dh[j] += rq * wt[j];
        }
        /* the cell */
        const float *a = s->acts + tb * 4 * H, *tc = s->TCs + tb * H;
        const float *cp = t > 0 ? s->Cs + (tb - B) * H : ZEROS;
        float *dc = s->dc + (int64_t)b * H;
        uint16_t *dG = s->dG + tb * 4 * H;
        lstm_cell_grad(a, tc, cp, dh, dc, dG, H);
    }
}

/* The cell's backward for one row: from d loss / d h (dh) and the running d loss / d c (dc,
 * updated to the previous step's), the gates' gradient dG (4H, bfloat16, [i, f, g, o]). */
static void lstm_cell_grad(const float *a, const float *tc, const float *cp, const float *dh, float *dc,
                           uint16_t *dG, int H) {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int j = 0; j < H; j += 16) {
        const __mmask16 m = H - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (H - j)) - 1);
        __m512 i = _mm512_maskz_loadu_ps(m, a + j), f = _mm512_maskz_loadu_ps(m, a + H + j);
        __m512 g = _mm512_maskz_loadu_ps(m, a + 2 * H + j), o = _mm512_maskz_loadu_ps(m, a + 3 * H + j);
        __m512 t = _mm512_maskz_loadu_ps(m, tc + j), d = _mm512_maskz_loadu_ps(m, dh + j);
        __m512 dcj = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_fnmadd_ps(t, t, one)), o, _mm512_maskz_loadu_ps(m, dc + j));
        store_bf16(dG + j, _mm512_mul_ps(_mm512_mul_ps(dcj, g), _mm512_mul_ps(i, _mm512_sub_ps(one, i))), m);
        store_bf16(dG + H + j, _mm512_mul_ps(_mm512_mul_ps(dcj, _mm512_maskz_loadu_ps(m, cp + j)),
                                             _mm512_mul_ps(f, _mm512_sub_ps(one, f))), m);
        store_bf16(dG + 2 * H + j, _mm512_mul_ps(_mm512_mul_ps(dcj, _mm512_fnmadd_ps(g, g, one)), i), m);
        store_bf16(dG + 3 * H + j, _mm512_mul_ps(_mm512_mul_ps(d, t), _mm512_mul_ps(o, _mm512_sub_ps(one, o))), m);
        _mm512_mask_storeu_ps(dc + j, m, _mm512_mul_ps(dcj, f));
    }
#else
        for (int j = 0; j < H; j++) {
            const float i = a[j], f = a[H + j], g = a[2 * H + j], o = a[3 * H + j], tcj = tc[j];
            float dcj = dc[j] + dh[j] * (1.0f - tcj * tcj) * o;
            dG[j] = f2bf(dcj * g * i * (1.0f - i));
            dG[H + j] = f2bf(dcj * cp[j] * f * (1.0f - f));
            dG[2 * H + j] = f2bf(dcj * (1.0f - g * g) * i);
            dG[3 * H + j] = f2bf(dh[j] * tcj * o * (1.0f - o));
            dc[j] = dcj * f;
        }
#endif
}
