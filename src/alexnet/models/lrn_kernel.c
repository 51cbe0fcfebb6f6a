/* Fused CPU kernel for the paper's Local Response Normalization (Krizhevsky et al. 2012, §3.3).

     d_i = k + alpha * S_i,  S_i = sum of a_j^2 over the n channels centred on i (clipped)
     b_i = a_i * d_i^-beta
     dL/da_m = g_m * d_m^-beta - 2 alpha beta a_m * sum_{i: m in window(i)} g_i a_i d_i^(-beta-1)

   The window is symmetric, so the backward's sum is the same centred window sum. One pass over
   memory each way: the forward reads a and writes b; the backward reads a and g, recomputes d
   in a tile that stays in cache, and writes dL/da. Tiles are spread over `threads` POSIX threads
   that take the next tile from a shared counter (a core taken by another process holds up one
   tile, not half the batch). float32 or bfloat16 storage, float32 arithmetic; NCHW (channels
   on rows of `length` pixels) or channels-last (pixels on rows of `channels` values).
   Compiled on first use by alexnet/models/native.py; no Python or torch headers needed. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"
#include "kernels.h"

#define PAD 64 /* readable zero floats around each scratch tile (window_cols reads past a row) */

typedef struct {
    const void *x, *g; /* input a; upstream gradient g (backward only) */
    void *out;         /* forward: b; backward: dL/da */
    int64_t batch, channels, length;
    int64_t tile, tiles_per_image, units;
    int size, groups, channels_last, backward, bf16;
    int relu; /* the input is ReLU's input: a -> max(a, 0) on load, gradient masked by a > 0 */
    float alpha, beta, k;
    int64_t next; /* shared work counter */
    int failed;
} Job;

/* The layer's input at i: ReLU applied on the fly when the job fuses it (NaN stays NaN). */
INLINE float load_a(const void *x, int64_t i, const int bf16, const int relu) {
    float v = load(x, i, bf16);
    return relu && v < 0.0f ? 0.0f : v;
}

/* p = d^-beta for a row; beta 0.75 (the paper's) as 1/sqrt(d) * sqrt(1/sqrt(d)). */
static void neg_pow(float *restrict p, const float *restrict d, int64_t m, float beta) {
    if (beta == 0.75f) {
        for (int64_t t = 0; t < m; t++) {
            float r = 1.0f / sqrtf(d[t]);
            p[t] = r * sqrtf(r);
        }
    } else if (beta == 0.5f) {
        for (int64_t t = 0; t < m; t++) p[t] = 1.0f / sqrtf(d[t]);
    } else if (beta == 1.0f) {
        for (int64_t t = 0; t < m; t++) p[t] = 1.0f / d[t];
    } else {
        for (int64_t t = 0; t < m; t++) p[t] = powf(d[t], -beta);
    }
}

/* NCHW tile: rows = channels (stride `row` in scratch), `w` pixels per row.
   dst[c] = sum of src[j] over j in c's window inside c's group. */
static void window_rows(float *restrict dst, const float *restrict src, int64_t channels,
                        int64_t row, int64_t w, int half, int groups) {
    int64_t per = channels / groups;
    for (int64_t c = 0; c < channels; c++) {
        int64_t first = (c / per) * per, last = first + per - 1;
        int64_t lo = c - half < first ? first : c - half;
        int64_t hi = c + half > last ? last : c + half;
        float *restrict d = dst + c * row;
        memcpy(d, src + lo * row, (size_t)w * sizeof(float));
        for (int64_t j = lo + 1; j <= hi; j++) {
            const float *restrict s = src + j * row;
            for (int64_t t = 0; t < w; t++) d[t] += s[t];
        }
    }
}

/* Channels-last tile: rows = pixels of `channels` values, contiguous; window along the row.
   Each group's loop runs over all its channels with the out-of-group neighbours selected
   away (one vector loop per shift instead of short loops per edge); it reads up to `half`
   floats beyond the group, so `src` has PAD readable floats before and after it. */
static void window_cols(float *restrict dst, const float *restrict src, int64_t channels,
                        int64_t pixels, int half, int groups) {
    const int64_t per = channels / groups;
    if (half >= PAD) { /* windows wider than the padding: the plain loops, edge by edge */
        for (int64_t first = 0; first < pixels * channels; first += per) {
            const float *restrict s = src + first;
            float *restrict d = dst + first;
            for (int64_t c = 0; c < per; c++) d[c] = s[c];
            for (int shift = 1; shift <= half && shift < per; shift++) {
                for (int64_t c = shift; c < per; c++) d[c] += s[c - shift];
                for (int64_t c = 0; c < per - shift; c++) d[c] += s[c + shift];
            }
        }
        return;
    }
    for (int64_t first = 0; first < pixels * channels; first += per) {
        const float *restrict s = src + first;
        float *restrict d = dst + first;
        for (int64_t c = 0; c < per; c++) d[c] = s[c];
        for (int shift = 1; shift <= half; shift++) {
            for (int64_t c = 0; c < per; c++) {
                float below = c >= shift ? s[c - shift] : 0.0f;
                float above = c + shift < per ? s[c + shift] : 0.0f;
                d[c] += below + above;
            }
        }
    }
}

static void window(const Job *job, float *dst, const float *src, int64_t w) {
    int half = job->size / 2;
    if (job->channels_last)
        window_cols(dst, src, job->channels, w, half, job->groups);
    else
        window_rows(dst, src, job->channels, job->tile, w, half, job->groups);
}

/* Element (row r, column t) of the tile starting at `base`: NCHW rows are channels at stride
   `length`; channels-last rows are pixels at stride `channels` (the tile is contiguous). */
/* bf16 and relu are constants in each caller below, so each variant gets its own vector loops;
   the pointers are read into locals once (stores through them could alias the job). */
INLINE void do_tile_at(const Job *job, int64_t unit, float *a, float *b, float *c,
                       const int bf16, const int relu) {
    const void *xp = job->x, *gp = job->g;
    void *op = job->out;
    int64_t n = unit / job->tiles_per_image, start = (unit % job->tiles_per_image) * job->tile;
    int64_t left = job->length - start;
    int64_t w = left < job->tile ? left : job->tile; /* pixels in this tile */
    int64_t rows, cols, stride, srow, base;
    if (job->channels_last) {
        rows = w, cols = job->channels, stride = job->channels, srow = job->channels;
        base = (n * job->length + start) * job->channels;
    } else {
        rows = job->channels, cols = w, stride = job->length, srow = job->tile;
        base = n * job->channels * job->length + start;
    }
    const float alpha = job->alpha, k = job->k;
    /* a = x^2; b = window sum of a */
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = base + r * stride;
        float *restrict ar = a + r * srow;
        for (int64_t t = 0; t < cols; t++) {
            float v = load_a(xp, off + t, bf16, relu);
            ar[t] = v * v;
        }
    }
    window(job, b, a, w);
    if (!job->backward) {
        for (int64_t r = 0; r < rows; r++) {
            int64_t off = base + r * stride;
            float *restrict br = b + r * srow, *restrict ar = a + r * srow;
            for (int64_t t = 0; t < cols; t++) br[t] = k + alpha * br[t];
            neg_pow(ar, br, cols, job->beta);
            for (int64_t t = 0; t < cols; t++)
                store(op, off + t, load_a(xp, off + t, bf16, relu) * ar[t], bf16);
        }
        return;
    }
    /* backward: a = d^-beta, b = g * x * d^-beta / d, c = window sum of b */
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = base + r * stride;
        float *restrict ar = a + r * srow, *restrict br = b + r * srow;
        for (int64_t t = 0; t < cols; t++) br[t] = k + alpha * br[t];
        neg_pow(ar, br, cols, job->beta);
        for (int64_t t = 0; t < cols; t++)
            br[t] = load(gp, off + t, bf16) * load_a(xp, off + t, bf16, relu) * ar[t] / br[t];
    }
    window(job, c, b, w);
    const float scale = -2.0f * alpha * job->beta;
    for (int64_t r = 0; r < rows; r++) {
        int64_t off = base + r * stride;
        float *restrict ar = a + r * srow, *restrict cr = c + r * srow;
        for (int64_t t = 0; t < cols; t++) {
            float x = load_a(xp, off + t, bf16, relu), g = load(gp, off + t, bf16);
            float grad = g * ar[t] + scale * x * cr[t];
            store(op, off + t, relu && !(x > 0.0f) ? 0.0f : grad, bf16);
        }
    }
}

static void do_tile(const Job *job, int64_t unit, float *a, float *b, float *c) {
    if (job->bf16)
        job->relu ? do_tile_at(job, unit, a, b, c, 1, 1) : do_tile_at(job, unit, a, b, c, 1, 0);
    else
        job->relu ? do_tile_at(job, unit, a, b, c, 0, 1) : do_tile_at(job, unit, a, b, c, 0, 0);
}

/* Floats from one scratch tile to the next: the tile, rounded up, and the padding after it. */
static int64_t tile_floats(int64_t tile, int64_t channels) {
    return (tile * channels + 15) / 16 * 16 + PAD;
}

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    int64_t part = tile_floats(job->tile, job->channels);
    float *scratch = aligned_alloc(64, (size_t)(3 * part + PAD) * sizeof(float));
    if (!scratch) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    memset(scratch, 0, (size_t)(3 * part + PAD) * sizeof(float));
    float *a = scratch + PAD, *b = a + part, *c = b + part;
    for (;;) {
        int64_t unit = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (unit >= job->units) break;
        do_tile(job, unit, a, b, c);
    }
    free(scratch);
    return NULL;
}

static void setup(Job *job, const void *x, const void *g, void *out, int64_t batch,
                  int64_t channels, int64_t length, int size, int groups, float alpha, float beta,
                  float k, int channels_last, int bf16) {
    memset(job, 0, sizeof(*job));
    job->x = x, job->g = g, job->out = out;
    job->batch = batch, job->channels = channels, job->length = length;
    job->size = size, job->groups = groups, job->channels_last = channels_last;
    job->backward = g != NULL, job->bf16 = bf16;
    job->alpha = alpha, job->beta = beta, job->k = k;
    /* about 32K floats per scratch tile (three fit in a core's L2), rows a multiple of 16 */
    int64_t tile = 32768 / channels;
    if (!channels_last) tile = tile / 16 * 16;
    if (tile < 16) tile = 16;
    if (tile > length) tile = length;
    job->tile = tile;
    job->tiles_per_image = (length + tile - 1) / tile;
    job->units = batch * job->tiles_per_image;
}

/* Returns 0 on success, 1 when scratch memory or a thread could not be had. */
int alexnet_lrn(const void *x, const void *g, void *out, int64_t batch, int64_t channels,
                int64_t length, int size, int groups, float alpha, float beta, float k,
                int channels_last, int bf16, int threads) {
    Job job;
    setup(&job, x, g, out, batch, channels, length, size, groups, alpha, beta, k, channels_last,
          bf16);
    run_workers(worker, &job, threads, job.units);
    return job.failed;
}

/* Floats of scratch that alexnet_lrn_image needs (the caller zeroes it once). */
int64_t alexnet_lrn_image_scratch(int64_t channels, int64_t length, int channels_last) {
    Job job;
    setup(&job, NULL, NULL, NULL, 1, channels, length, 5, 1, 1, 1, 1, channels_last, 0);
    return 3 * tile_floats(job.tile, channels) + PAD;
}

/* One float32 image on the calling thread, tile by tile exactly as alexnet_lrn does it (so
   the results are bitwise the same): for the fused kernel. `relu`: x is ReLU's input. */
void alexnet_lrn_image(const float *x, const float *g, float *out, int64_t channels,
                       int64_t length, int size, int groups, float alpha, float beta, float k,
                       int channels_last, int relu, float *scratch) {
    Job job;
    setup(&job, x, g, out, 1, channels, length, size, groups, alpha, beta, k, channels_last, 0);
    job.relu = relu;
    int64_t part = tile_floats(job.tile, channels);
    float *a = scratch + PAD, *b = a + part, *c = b + part;
    for (int64_t unit = 0; unit < job.units; unit++) do_tile(&job, unit, a, b, c);
}
