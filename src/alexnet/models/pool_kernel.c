/* Max pooling for the CPU (the paper's overlapping pooling, Krizhevsky et al. 2012, §3.4).

   Forward: each output is the maximum of its k x k window (stride s, no padding); in training
   the winner's place in the window (0 .. k*k-1, one byte) is kept instead of torch's int64
   index into the plane. Ties go to the first maximum in row-major window order and NaN wins,
   as in torch's CPU kernel, so gradients match torch exactly. Backward: each plane (NCHW) or
   image (channels-last) of the input gradient is zeroed and gets its windows' gradients added
   while it is in cache: the input gradient is written once, with no separate fill pass.
   Work is spread over POSIX threads that take the next plane or image from a shared counter.
   float32 or bfloat16 storage (bfloat16 maxima are exact; sums are float32 rounded once). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"
#include "kernels.h"

typedef struct {
    const void *x;     /* forward input, or the output gradient in backward */
    void *out;         /* forward output, or the input gradient in backward */
    uint8_t *argmax;   /* winner's place in each window; NULL in inference */
    int64_t batch, channels, height, width, out_h, out_w;
    int kernel, stride, channels_last, backward, bf16;
    int64_t units, next;
    int failed;
} Job;

/* One NCHW plane, separably and on contiguous rows: first the maximum of every run of k
   adjacent values along the flattened plane (runs that cross a row end are never used), then
   per output row the maximum over k of those rows, then every s-th column. Taking the row
   maxima first keeps torch's winner: the first row that holds the window's maximum, and the
   first column of it in that row (the last NaN, as torch's `val > max || isnan(val)` does).
   scratch: 2 * (height + 1) * width floats. bf16 is a constant in each caller (one loop each). */
INLINE void forward_plane_at(const Job *job, int64_t plane, float *scratch, const int bf16) {
    const int k = job->kernel, s = job->stride;
    const int64_t w = job->width, hw = job->height * w, ow_n = job->out_w, span = w - k + 1;
    const int64_t in0 = plane * hw, out0 = plane * job->out_h * ow_n;
    float *restrict run = scratch;                  /* hw - k + 1 run maxima */
    int32_t *restrict run_at = (int32_t *)(scratch + hw); /* their column in the window */
    const int64_t runs = hw - k + 1;
    for (int64_t i = 0; i < runs; i++) {
        run[i] = load(job->x, in0 + i, bf16);
        run_at[i] = 0;
    }
    for (int j = 1; j < k; j++) {
        for (int64_t i = 0; i < runs; i++) {
            float v = load(job->x, in0 + i + j, bf16), best = run[i];
            int wins = (v > best) | (v != v);
            run[i] = wins ? v : best;
            run_at[i] = wins ? j : run_at[i];
        }
    }
    float *restrict col = scratch + 2 * hw;           /* one output row at full width */
    int32_t *restrict col_at = (int32_t *)(col + w);
    for (int64_t oh = 0; oh < job->out_h; oh++) {
        const float *restrict top = run + oh * s * w;
        const int32_t *restrict top_at = run_at + oh * s * w;
        for (int64_t c = 0; c < span; c++) {
            col[c] = top[c];
            col_at[c] = top_at[c];
        }
        for (int i = 1; i < k; i++) {
            const float *restrict row = top + i * w;
            const int32_t *restrict row_at = top_at + i * w;
            for (int64_t c = 0; c < span; c++) {
                float v = row[c], best = col[c];
                int wins = (v > best) | (v != v);
                col[c] = wins ? v : best;
                col_at[c] = wins ? i * k + row_at[c] : col_at[c];
            }
        }
        for (int64_t ow = 0; ow < ow_n; ow++) store(job->out, out0 + oh * ow_n + ow, col[ow * s], bf16);
        if (job->argmax)
            for (int64_t ow = 0; ow < ow_n; ow++)
                job->argmax[out0 + oh * ow_n + ow] = (uint8_t)col_at[ow * s];
    }
}

static void forward_plane(const Job *job, int64_t plane, float *scratch) {
    job->bf16 ? forward_plane_at(job, plane, scratch, 1) : forward_plane_at(job, plane, scratch, 0);
}

/* Offset of each window place from the window's corner, in elements (no division per use). */
static void place_offsets(const Job *job, int64_t *offsets, int64_t step) {
    for (int p = 0; p < job->kernel * job->kernel; p++)
        offsets[p] = ((p / job->kernel) * job->width + p % job->kernel) * step;
}

/* One NCHW plane of the input gradient from the output gradient and the winners. */
INLINE void backward_plane_at(const Job *job, int64_t plane, float *acc, const int bf16) {
    const int s = job->stride;
    const int64_t w = job->width, hw = job->height * w, ohw = job->out_h * job->out_w;
    const int64_t out0 = plane * ohw;
    int64_t offsets[256];
    place_offsets(job, offsets, 1);
    memset(acc, 0, (size_t)hw * sizeof(float));
    for (int64_t oh = 0; oh < job->out_h; oh++) {
        for (int64_t ow = 0; ow < job->out_w; ow++) {
            int64_t o = oh * job->out_w + ow;
            acc[oh * s * w + ow * s + offsets[job->argmax[out0 + o]]] += load(job->x, out0 + o, bf16);
        }
    }
    for (int64_t i = 0; i < hw; i++) store(job->out, plane * hw + i, acc[i], bf16);
}

static void backward_plane(const Job *job, int64_t plane, float *acc) {
    job->bf16 ? backward_plane_at(job, plane, acc, 1) : backward_plane_at(job, plane, acc, 0);
}

/* One channels-last image: windows compared across all channels at once (contiguous). */
INLINE void forward_image_at(const Job *job, int64_t n, float *best, uint8_t *arg, const int bf16) {
    if (job->channels <= 0) return;
    const int k = job->kernel, s = job->stride;
    const int64_t c_n = job->channels, w = job->width;
    const int64_t in0 = n * job->height * w * c_n, out0 = n * job->out_h * job->out_w * c_n;
    for (int64_t oh = 0; oh < job->out_h; oh++) {
        for (int64_t ow = 0; ow < job->out_w; ow++) {
            const int64_t first = in0 + ((oh * s) * w + ow * s) * c_n;
            for (int64_t c = 0; c < c_n; c++) best[c] = load(job->x, first + c, bf16);
            memset(arg, 0, (size_t)c_n);
            for (int i = 0; i < k; i++) {
                for (int j = 0; j < k; j++) {
                    if (i == 0 && j == 0) continue;
                    const int64_t base = in0 + ((oh * s + i) * w + ow * s + j) * c_n;
                    const uint8_t place = (uint8_t)(i * k + j);
                    for (int64_t c = 0; c < c_n; c++) {
                        float v = load(job->x, base + c, bf16), b = best[c];
                        int wins = (v > b) | (v != v);
                        best[c] = wins ? v : b;
                        arg[c] = wins ? place : arg[c];
                    }
                }
            }
            const int64_t o = out0 + (oh * job->out_w + ow) * c_n;
            for (int64_t c = 0; c < c_n; c++) store(job->out, o + c, best[c], bf16);
            if (job->argmax) memcpy(job->argmax + o, arg, (size_t)c_n);
        }
    }
}

static void forward_image(const Job *job, int64_t n, float *best, uint8_t *arg) {
    job->bf16 ? forward_image_at(job, n, best, arg, 1) : forward_image_at(job, n, best, arg, 0);
}

INLINE void backward_image_at(const Job *job, int64_t n, float *acc, const int bf16) {
    const int s = job->stride;
    const int64_t c_n = job->channels, w = job->width, size = job->height * w * c_n;
    const int64_t out0 = n * job->out_h * job->out_w * c_n;
    int64_t offsets[256];
    place_offsets(job, offsets, c_n);
    memset(acc, 0, (size_t)size * sizeof(float));
    for (int64_t oh = 0; oh < job->out_h; oh++) {
        for (int64_t ow = 0; ow < job->out_w; ow++) {
            const int64_t o = out0 + (oh * job->out_w + ow) * c_n;
            const int64_t corner = ((oh * s) * w + ow * s) * c_n;
            for (int64_t c = 0; c < c_n; c++) {
                acc[corner + offsets[job->argmax[o + c]] + c] += load(job->x, o + c, bf16);
            }
        }
    }
    for (int64_t i = 0; i < size; i++) store(job->out, n * size + i, acc[i], bf16);
}

static void backward_image(const Job *job, int64_t n, float *acc) {
    job->bf16 ? backward_image_at(job, n, acc, 1) : backward_image_at(job, n, acc, 0);
}

static int64_t scratch_floats(const Job *job) {
    if (!job->channels_last) return 2 * (job->height + 1) * job->width;
    return job->backward ? job->height * job->width * job->channels : job->channels;
}

/* Plane `unit` (NCHW) or image `unit` (channels-last) of the job. */
static void do_unit(const Job *job, int64_t unit, float *scratch, uint8_t *places) {
    if (job->channels_last)
        job->backward ? backward_image(job, unit, scratch) : forward_image(job, unit, scratch, places);
    else
        job->backward ? backward_plane(job, unit, scratch) : forward_plane(job, unit, scratch);
}

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    int64_t floats = scratch_floats(job);
    float *scratch = malloc((size_t)floats * (sizeof(float) + 1) + 64);
    if (!scratch) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    uint8_t *places = (uint8_t *)(scratch + floats);
    for (;;) {
        int64_t unit = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (unit >= job->units) break;
        do_unit(job, unit, scratch, places);
    }
    free(scratch);
    return NULL;
}

static void setup(Job *job, const void *x, void *out, uint8_t *argmax, int64_t batch,
                  int64_t channels, int64_t height, int64_t width, int kernel, int stride,
                  int channels_last, int backward, int bf16) {
    memset(job, 0, sizeof(*job));
    job->x = x, job->out = out, job->argmax = argmax;
    job->batch = batch, job->channels = channels, job->height = height, job->width = width;
    job->out_h = (height - kernel) / stride + 1, job->out_w = (width - kernel) / stride + 1;
    job->kernel = kernel, job->stride = stride, job->channels_last = channels_last;
    job->backward = backward, job->bf16 = bf16;
    job->units = channels_last ? batch : batch * channels;
}

/* Forward: x -> out (and argmax unless NULL). Backward (backward=1): x is the output
   gradient, out the input gradient, argmax the forward's winners. Returns 0 on success. */
int alexnet_max_pool(const void *x, void *out, uint8_t *argmax, int64_t batch, int64_t channels,
                     int64_t height, int64_t width, int kernel, int stride, int channels_last,
                     int backward, int bf16, int threads) {
    Job job;
    setup(&job, x, out, argmax, batch, channels, height, width, kernel, stride, channels_last,
          backward, bf16);
    run_workers(worker, &job, threads, job.units);
    return job.failed;
}

/* Bytes of scratch that alexnet_max_pool_image needs (floats, then one byte per float). */
int64_t alexnet_max_pool_image_scratch(int64_t channels, int64_t height, int64_t width,
                                       int kernel, int stride, int channels_last, int backward) {
    Job job;
    setup(&job, NULL, NULL, NULL, 1, channels, height, width, kernel, stride, channels_last,
          backward, 0);
    return scratch_floats(&job) * (int64_t)(sizeof(float) + 1) + 64;
}

/* One float32 image on the calling thread, as alexnet_max_pool does it: for the fused kernel. */
void alexnet_max_pool_image(const float *x, float *out, uint8_t *argmax, int64_t channels,
                            int64_t height, int64_t width, int kernel, int stride,
                            int channels_last, int backward, void *scratch) {
    Job job;
    setup(&job, x, out, argmax, 1, channels, height, width, kernel, stride, channels_last,
          backward, 0);
    float *floats = (float *)scratch;
    uint8_t *places = (uint8_t *)(floats + scratch_floats(&job));
    for (int64_t unit = 0; unit < job.units; unit++) do_unit(&job, unit, floats, places);
}
