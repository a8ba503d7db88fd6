// The numbers of the equivalence checks (`checkpoint diff`, with --trim), in C so that they take
// milliseconds in a debug build too (generic Swift over 4M doubles takes seconds there).
#pragma once
#include <stddef.h>

/// squares[i] = (reference[i] - other[i])^2; sums[0] = the sum of the squares, sums[1] = the sum
/// of reference[i]^2, both added in index order.
void dim_squared_differences(const double *reference, const double *other, size_t count,
                             double *squares, double sums[2]);

/// The sum of the `keep` smallest of `values[0..<count]` (keep <= count; no NaN). Reorders
/// `values`: quickselect moves the `keep` smallest to the front, in linear time.
double dim_sum_of_smallest(double *values, size_t count, size_t keep);
