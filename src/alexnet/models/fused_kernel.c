/* [ReLU ->] LRN -> max-pooling, one image at a time in cache (the paper's conv1/conv2 blocks,
   Krizhevsky et al. 2012, §3.1, §3.3-3.4: ReLU -> LRN -> overlapping max-pool).

   Forward: the image's LRN output goes to a per-thread scratch image (never to memory the
   caller sees) and is pooled from there; only the pooled maps and the winners' places are
   written. Backward: the pooled gradient is scattered into the scratch image, and the LRN
   backward reads it from there and writes dL/dx once. Each image runs the very code of
   alexnet_lrn and alexnet_max_pool, so the results are bitwise those of the two layers run
   one after the other; what is saved is two full-size activations written and read per step.
   With `relu` the input is ReLU's (the conv output): ReLU is applied as it is read and its
   gradient mask applied as dL/dx is written, which saves ReLU's own pass each way.
   float32 or bfloat16: a bfloat16 image is widened into float32 scratch, and every value the
   separate layers would store as bfloat16 (LRN's output, the pool's input gradient) is rounded
   to bfloat16 in scratch, so the results are still those of the separate layers.
   Threads take the next image from a shared counter. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"
#include "kernels.h"

typedef struct {
    const void *x, *g; /* LRN input; pooled-output gradient (backward) */
    void *out;         /* forward: pooled output; backward: dL/dx */
    uint8_t *places;    /* winners' places (NULL in inference) */
    int64_t batch, channels, height, width, out_h, out_w;
    int size, groups, kernel, stride, channels_last, backward, relu, bf16;
    float alpha, beta, k;
    int64_t next;
    int failed;
} Job;

static void widen(const void *from, float *to, int64_t n) {
    for (int64_t i = 0; i < n; i++) to[i] = load(from, i, 1);
}

static void narrow(const float *from, void *to, int64_t n) {
    for (int64_t i = 0; i < n; i++) store(to, i, from[i], 1);
}

/* Round in place to the nearest bfloat16, kept as float32 (what a bfloat16 tensor would hold). */
static void round_to_bf16(float *values, int64_t n) {
    uint16_t half;
    for (int64_t i = 0; i < n; i++) {
        store(&half, 0, values[i], 1);
        values[i] = load(&half, 0, 1);
    }
}

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    const int64_t c = job->channels, hw = job->height * job->width;
    const int64_t ohw = job->out_h * job->out_w;
    const int bf16 = job->bf16, size = bf16 ? 2 : 4;
    int64_t image = (c * hw + 15) / 16 * 16, pooled = (c * ohw + 15) / 16 * 16;
    int64_t lrn = alexnet_lrn_image_scratch(c, hw, job->channels_last);
    int64_t pool = alexnet_max_pool_image_scratch(c, job->height, job->width, job->kernel,
                                                  job->stride, job->channels_last, job->backward);
    int64_t wide = bf16 ? image + pooled : 0; /* float32 copies of a bfloat16 image's data */
    size_t bytes = (size_t)((image + lrn + wide) * 4 + (pool + 63) / 64 * 64);
    float *scratch = aligned_alloc(64, bytes);
    if (!scratch) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    memset(scratch, 0, bytes);
    float *normed = scratch, *lrn_scratch = scratch + image;
    float *wide_x = scratch + image + lrn, *wide_pooled = wide_x + image;
    void *pool_scratch = scratch + image + lrn + wide;
    const char *xs = job->x, *gs = job->g;
    char *outs = job->out;
    for (;;) {
        int64_t n = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (n >= job->batch) break;
        const void *x = xs + n * c * hw * size;
        uint8_t *places = job->places ? job->places + n * c * ohw : NULL;
        if (bf16) {
            widen(x, wide_x, c * hw);
            x = wide_x;
        }
        if (!job->backward) {
            void *out = outs + n * c * ohw * size;
            alexnet_lrn_image(x, NULL, normed, c, hw, job->size, job->groups, job->alpha,
                              job->beta, job->k, job->channels_last, job->relu, lrn_scratch);
            if (bf16) round_to_bf16(normed, c * hw);
            alexnet_max_pool_image(normed, bf16 ? wide_pooled : out, places, c, job->height,
                                   job->width, job->kernel, job->stride, job->channels_last, 0,
                                   pool_scratch);
            if (bf16) narrow(wide_pooled, out, c * ohw); /* exact: bfloat16 maxima */
        } else {
            const void *g = gs + n * c * ohw * size;
            void *out = outs + n * c * hw * size;
            if (bf16) {
                widen(g, wide_pooled, c * ohw);
                g = wide_pooled;
            }
            alexnet_max_pool_image(g, normed, places, c, job->height, job->width, job->kernel,
                                   job->stride, job->channels_last, 1, pool_scratch);
            if (bf16) round_to_bf16(normed, c * hw);
            /* bfloat16: dL/dx goes over the widened input (each tile is read before written) */
            alexnet_lrn_image(x, normed, bf16 ? wide_x : out, c, hw, job->size, job->groups,
                              job->alpha, job->beta, job->k, job->channels_last, job->relu,
                              lrn_scratch);
            if (bf16) narrow(wide_x, out, c * hw);
        }
    }
    free(scratch);
    return NULL;
}

/* Forward (g NULL): x (N, C, H, W) -> out (N, C, OH, OW), places unless NULL. Backward: g is
   dL/d(pooled), places the forward's, out dL/dx (N, C, H, W). relu: x is ReLU's input.
   Returns 0 on success. */
int alexnet_lrn_max_pool(const void *x, const void *g, void *out, uint8_t *places,
                         int64_t batch, int64_t channels, int64_t height, int64_t width, int size,
                         int groups, float alpha, float beta, float k, int kernel, int stride,
                         int channels_last, int relu, int bf16, int threads) {
    Job job = {0};
    job.x = x, job.g = g, job.out = out, job.places = places;
    job.batch = batch, job.channels = channels, job.height = height, job.width = width;
    job.out_h = (height - kernel) / stride + 1, job.out_w = (width - kernel) / stride + 1;
    job.size = size, job.groups = groups, job.kernel = kernel, job.stride = stride;
    job.channels_last = channels_last, job.backward = g != NULL, job.relu = relu;
    job.bf16 = bf16;
    job.alpha = alpha, job.beta = beta, job.k = k;
    run_workers(worker, &job, threads, batch);
    return job.failed;
}
