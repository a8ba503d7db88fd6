// See include/selection.h.
#include "selection.h"

void dim_squared_differences(const double *reference, const double *other, size_t count,
                             double *squares, double sums[2]) {
    double d = 0, r = 0;
    for (size_t i = 0; i < count; i++) {
        double e = reference[i] - other[i];
        squares[i] = e * e;
        d += squares[i];
        r += reference[i] * reference[i];
    }
    sums[0] = d;
    sums[1] = r;
}

static void swap(double *a, double *b) { double t = *a; *a = *b; *b = t; }

// Hoare's partition of v[lo...hi] (inclusive) around its middle value: returns p, lo <= p < hi,
// with every value of v[lo...p] <= every value of v[p+1...hi].
static size_t partition(double *v, size_t lo, size_t hi) {
    double pivot = v[lo + (hi - lo) / 2];
    size_t i = lo, j = hi;
    for (;;) {
        while (v[i] < pivot) i++;
        while (v[j] > pivot) j--;
        if (i >= j) return j;
        swap(&v[i], &v[j]);
        i++; j--;
    }
}

double dim_sum_of_smallest(double *values, size_t count, size_t keep) {
    if (keep == 0) return 0;
    if (keep < count) {
        // Narrow [lo, hi] around index keep - 1 until it is in place: then v[0..<keep] hold the
        // `keep` smallest (each partition leaves no smaller value to the right of a larger one).
        size_t lo = 0, hi = count - 1, target = keep - 1;
        while (lo < hi) {
            size_t p = partition(values, lo, hi);
            if (target <= p) hi = p; else lo = p + 1;
        }
    }
    double sum = 0;
    for (size_t i = 0; i < keep; i++) sum += values[i];
    return sum;
}
