// im2col and col2im for a channel-major batch [C, N, H, W] (Caffe's layout of the column matrix,
// over the whole batch: [C*k*k, N*Ho*Wo]). In C because their inner runs are short (Wo = 16, 8, 4
// for DIM's convolutions): Swift lowers each run to a memmove call, which cost more than the copy.
#pragma once
#include <stddef.h>

// Floats of the phase-split scratch both functions work through: C*N*H rows of stride * ceil(W/stride).
size_t dim_conv_phase_count(size_t channels, size_t batch, size_t height, size_t width, size_t stride);

// col = im2col(x); `phases` is scratch of dim_conv_phase_count floats.
void dim_im2col(const float *x, size_t channels, size_t batch, size_t height, size_t width, size_t kernel,
                size_t stride, size_t padding, float *col, float *phases);

// dx = the adjoint of im2col applied to col (every column entry added back into the input
// position it came from; dx is overwritten); `phases` is scratch of dim_conv_phase_count floats.
void dim_col2im(const float *col, size_t channels, size_t batch, size_t height, size_t width, size_t kernel,
                size_t stride, size_t padding, float *dx, float *phases);
