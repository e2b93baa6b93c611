/* One-pass Rprop step over contiguous float32/float64 CPU tensors.
 *
 * Built at first use by rprop_bench/optim/fused.py with the system C compiler and loaded with
 * ctypes. Every operation mirrors, in order and in the parameter's dtype, the unfused torch
 * path in rprop.py, so both give the same bits:
 *   s = sign(g * prev)                (the product is rounded first, as torch does; torch's
 *                                      sign(NaN) is 0, so a NaN product keeps Δ and moves
 *                                      nothing: a NaN or infinite gradient never poisons Δ)
 *   Δ = clamp(Δ * factor(s), Δmin, Δmax)
 *   then the variant's move and state update.
 * Compiled with -ffp-contract=off and without -ffast-math: no FMA, IEEE semantics kept
 * (-fno-trapping-math only lets selects become vector blends).
 *
 * Variants: 0 = rprop-, 1 = irprop-, 2 = rprop+, 3 = irprop+.
 * Stacked members: the n weights are `members` equal slices, one per member (a leading dim of
 * size `members`, as in rprop_bench.seed_batch). `undo_flags` (one byte per member, or NULL)
 * says per member whether a sign flip undoes the last weight change (irprop+: that member's
 * loss went up); with NULL, `undo_on_flip` holds for every weight (rprop+ always). One call
 * covers every member, so a stacked step costs one call per tensor, not one per member.
 * `member_hypers` (4 x members doubles, row-major, or NULL): per-member η-, η+, Δmin and Δmax
 * (a hyperparameter grid trained as one stack); each is rounded to T as the scalar would be.
 */
#include <stdint.h>

/* Branch-free selects so that the compiler vectorizes the loop; VARIANT is a compile-time
 * constant, so each variant gets its own straight-line loop over [begin, end). */
#define RPROP_LOOP(T, VARIANT)                                                                 \
    _Pragma("omp parallel for schedule(static) num_threads(num_threads) if(end - begin > 65536)") \
    for (int64_t i = begin; i < end; ++i) {                                                    \
        T g = maximize ? -grad[i] : grad[i];                                                   \
        T product = g * prev[i];                                                               \
        /* torch's sign(NaN) is 0: a NaN product (a NaN gradient, or inf * 0) keeps Δ. */     \
        T factor = product > 0 ? eta_plus : product < 0 ? eta_minus : (T)1;                   \
        T delta = step_size[i] * factor;                                                       \
        delta = delta < step_min ? step_min : delta;                                           \
        delta = delta > step_max ? step_max : delta;                                           \
        step_size[i] = delta;                                                                  \
        if (VARIANT != 0) g = product < 0 ? (T)0 : g;                                          \
        T sign_g = g > 0 ? (T)1 : g < 0 ? (T)-1 : (T)0;                                        \
        T change = -(sign_g * delta);                                                          \
        if (VARIANT <= 1) {                                                                    \
            param[i] = param[i] + change;                                                      \
        } else {                                                                               \
            T last = weight_change[i];                                                         \
            param[i] = param[i] + ((product < 0 && undo) ? -last : change);                    \
            weight_change[i] = change;                                                         \
        }                                                                                      \
        prev[i] = g;                                                                           \
    }

#define RPROP_KERNEL(NAME, T)                                                                  \
    void NAME(T *restrict param, const T *restrict grad, T *restrict prev,                   \
              T *restrict step_size, T *restrict weight_change, int64_t n, T eta_minus,       \
              T eta_plus, T step_min, T step_max, int variant, int maximize, int undo_on_flip, \
              const unsigned char *restrict undo_flags, int64_t members, int num_threads,     \
              const double *restrict member_hypers) {                                          \
        const int64_t size = members > 0 ? n / members : n;                                    \
        const int64_t slices = members > 0 ? members : 1;                                      \
        const T scalar_minus = eta_minus, scalar_plus = eta_plus;                              \
        const T scalar_min = step_min, scalar_max = step_max;                                  \
        for (int64_t m = 0; m < slices; ++m) {                                                 \
            const int undo = undo_flags ? undo_flags[m] != 0 : undo_on_flip;                   \
            eta_minus = member_hypers ? (T)member_hypers[m] : scalar_minus;                    \
            eta_plus = member_hypers ? (T)member_hypers[slices + m] : scalar_plus;             \
            step_min = member_hypers ? (T)member_hypers[2 * slices + m] : scalar_min;          \
            step_max = member_hypers ? (T)member_hypers[3 * slices + m] : scalar_max;          \
            const int64_t begin = m * size, end = begin + size;                                \
            switch (variant) {                                                                 \
            case 0: RPROP_LOOP(T, 0) break;                                                    \
            case 1: RPROP_LOOP(T, 1) break;                                                    \
            case 2: RPROP_LOOP(T, 2) break;                                                    \
            default: RPROP_LOOP(T, 3) break;                                                   \
            }                                                                                  \
        }                                                                                      \
    }

RPROP_KERNEL(rprop_step_float32, float)
RPROP_KERNEL(rprop_step_float64, double)
