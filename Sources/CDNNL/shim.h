// oneDNN (Debian libdnnl-dev 2.6, no pkg-config file) for the bf16 GEMMs, and OpenMP's thread
// count: Debian builds oneDNN on OpenMP, whose default of one thread per core would oversubscribe
// the cores when several ranks share a machine.
#pragma once
#include <dnnl.h>
void omp_set_num_threads(int n);
