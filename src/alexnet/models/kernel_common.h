/* Shared by the CPU kernels (lrn_kernel.c, pool_kernel.c, fused_kernel.c): float32/bfloat16
   element access and the thread launcher. */
#ifndef ALEXNET_KERNEL_COMMON_H
#define ALEXNET_KERNEL_COMMON_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* Element i of a float32 (bf16 = 0) or bfloat16 (bf16 = 1) array, as float32. */
static inline float load(const void *p, int64_t i, int bf16) {
    if (!bf16) return ((const float *)p)[i];
    uint32_t bits = (uint32_t)((const uint16_t *)p)[i] << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Write f to element i, rounded to the nearest even bfloat16 when bf16 (NaN stays NaN). */
static inline void store(void *p, int64_t i, float f, int bf16) {
    if (!bf16) {
        ((float *)p)[i] = f;
        return;
    }
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if ((bits & 0x7fffffffu) > 0x7f800000u) {
        ((uint16_t *)p)[i] = (uint16_t)((bits >> 16) | 0x40);
        return;
    }
    bits += 0x7fffu + ((bits >> 16) & 1u);
    ((uint16_t *)p)[i] = (uint16_t)(bits >> 16);
}

/* Run worker(job) on min(threads, units) threads, this one included; the workers share the
   job and take units from its counter. Fewer threads if the system refuses more. */
static inline void run_workers(void *(*worker)(void *), void *job, int threads, int64_t units) {
    if (threads > units) threads = (int)units;
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    pthread_t ids[256];
    int started = 0;
    for (; started < threads - 1; started++)
        if (pthread_create(&ids[started], NULL, worker, job)) break;
    worker(job);
    for (int i = 0; i < started; i++) pthread_join(ids[i], NULL);
}

#endif
