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
   float32 only. Threads take the next image from a shared counter. */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_common.h"

int64_t alexnet_lrn_image_scratch(int64_t channels, int64_t length, int channels_last);
void alexnet_lrn_image(const float *x, const float *g, float *out, int64_t channels,
                       int64_t length, int size, int groups, float alpha, float beta, float k,
                       int channels_last, int relu, float *scratch);
int64_t alexnet_max_pool_image_scratch(int64_t channels, int64_t height, int64_t width,
                                       int kernel, int stride, int channels_last, int backward);
void alexnet_max_pool_image(const float *x, float *out, uint8_t *argmax, int64_t channels,
                            int64_t height, int64_t width, int kernel, int stride,
                            int channels_last, int backward, void *scratch);

typedef struct {
    const float *x, *g; /* LRN input; pooled-output gradient (backward) */
    float *out;         /* forward: pooled output; backward: dL/dx */
    uint8_t *places;    /* winners' places (NULL in inference) */
    int64_t batch, channels, height, width, out_h, out_w;
    int size, groups, kernel, stride, channels_last, backward, relu;
    float alpha, beta, k;
    int64_t next;
    int failed;
} Job;

static void *worker(void *arg) {
    Job *job = (Job *)arg;
    const int64_t c = job->channels, hw = job->height * job->width;
    const int64_t ohw = job->out_h * job->out_w;
    int64_t image = (c * hw + 15) / 16 * 16;
    int64_t lrn = alexnet_lrn_image_scratch(c, hw, job->channels_last);
    int64_t pool = alexnet_max_pool_image_scratch(c, job->height, job->width, job->kernel,
                                                  job->stride, job->channels_last, job->backward);
    size_t bytes = (size_t)((image + lrn) * 4 + (pool + 63) / 64 * 64);
    float *scratch = aligned_alloc(64, bytes);
    if (!scratch) {
        __atomic_store_n(&job->failed, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    memset(scratch, 0, bytes);
    float *normed = scratch, *lrn_scratch = scratch + image;
    void *pool_scratch = scratch + image + lrn;
    for (;;) {
        int64_t n = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
        if (n >= job->batch) break;
        const float *x = job->x + n * c * hw;
        uint8_t *places = job->places ? job->places + n * c * ohw : NULL;
        if (!job->backward) {
            alexnet_lrn_image(x, NULL, normed, c, hw, job->size, job->groups, job->alpha,
                              job->beta, job->k, job->channels_last, job->relu, lrn_scratch);
            alexnet_max_pool_image(normed, job->out + n * c * ohw, places, c, job->height,
                                   job->width, job->kernel, job->stride, job->channels_last, 0,
                                   pool_scratch);
        } else {
            alexnet_max_pool_image(job->g + n * c * ohw, normed, places, c, job->height,
                                   job->width, job->kernel, job->stride, job->channels_last, 1,
                                   pool_scratch);
            alexnet_lrn_image(x, normed, job->out + n * c * hw, c, hw, job->size, job->groups,
                              job->alpha, job->beta, job->k, job->channels_last, job->relu,
                              lrn_scratch);
        }
    }
    free(scratch);
    return NULL;
}

/* Forward (g NULL): x (N, C, H, W) -> out (N, C, OH, OW), places unless NULL. Backward: g is
   dL/d(pooled), places the forward's, out dL/dx (N, C, H, W). relu: x is ReLU's input.
   Returns 0 on success. */
int alexnet_lrn_max_pool(const float *x, const float *g, float *out, uint8_t *places,
                         int64_t batch, int64_t channels, int64_t height, int64_t width, int size,
                         int groups, float alpha, float beta, float k, int kernel, int stride,
                         int channels_last, int relu, int threads) {
    Job job = {0};
    job.x = x, job.g = g, job.out = out, job.places = places;
    job.batch = batch, job.channels = channels, job.height = height, job.width = width;
    job.out_h = (height - kernel) / stride + 1, job.out_w = (width - kernel) / stride + 1;
    job.size = size, job.groups = groups, job.kernel = kernel, job.stride = stride;
    job.channels_last = channels_last, job.backward = g != NULL, job.relu = relu;
    job.alpha = alpha, job.beta = beta, job.k = k;
    run_workers(worker, &job, threads, batch);
    return job.failed;
}
