/* The CPU kernels' entry points: the one declaration of their signatures.

   Each kernel source includes this file, so the C compiler checks every definition against it,
   and native.py builds the ctypes signatures from it (and checks its own calls' argument names
   against it when the library loads). Parameter types: pointers, int64_t, int and float only.
   Return 0 on success, 1 when scratch memory or a thread could not be had. */
#ifndef ALEXNET_KERNELS_H
#define ALEXNET_KERNELS_H

#include <stdint.h>

/* LRN (paper §3.3), forward (g NULL: out = b) or backward (out = dL/dx). */
int alexnet_lrn(const void *x, const void *g, void *out, int64_t batch, int64_t channels,
                int64_t length, int size, int groups, float alpha, float beta, float k,
                int channels_last, int bf16, int threads);

/* Max-pooling without padding (paper §3.4), forward or (backward=1) backward. */
int alexnet_max_pool(const void *x, void *out, uint8_t *argmax, int64_t batch, int64_t channels,
                     int64_t height, int64_t width, int kernel, int stride, int channels_last,
                     int backward, int bf16, int threads);

/* [ReLU ->] LRN -> max-pooling as one pass (paper §3.1, §3.3-3.4), forward (g NULL) or
   backward. */
int alexnet_lrn_max_pool(const void *x, const void *g, void *out, uint8_t *places,
                         int64_t batch, int64_t channels, int64_t height, int64_t width, int size,
                         int groups, float alpha, float beta, float k, int kernel, int stride,
                         int channels_last, int relu, int bf16, int threads);

/* One image on the calling thread, for the fused kernel (not called from Python). */
int64_t alexnet_lrn_image_scratch(int64_t channels, int64_t length, int channels_last);
void alexnet_lrn_image(const float *x, const float *g, float *out, int64_t channels,
                       int64_t length, int size, int groups, float alpha, float beta, float k,
                       int channels_last, int relu, float *scratch);
int64_t alexnet_max_pool_image_scratch(int64_t channels, int64_t height, int64_t width,
                                       int kernel, int stride, int channels_last, int backward);
void alexnet_max_pool_image(const float *x, float *out, uint8_t *argmax, int64_t channels,
                            int64_t height, int64_t width, int kernel, int stride,
                            int channels_last, int backward, void *scratch);

#endif
