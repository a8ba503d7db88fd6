// Open MPI's handles are macros over addresses of globals, which Swift cannot import.
// These accessors give Swift the same handles.
#include <mpi.h>
static inline MPI_Comm dim_MPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype dim_MPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype dim_MPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype dim_MPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Datatype dim_MPI_INT64(void) { return MPI_INT64_T; }
static inline MPI_Op dim_MPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op dim_MPI_MAX(void) { return MPI_MAX; }
static inline MPI_Op dim_MPI_MIN(void) { return MPI_MIN; }
static inline void *dim_MPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline MPI_Errhandler dim_MPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *dim_MPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Datatype dim_MPI_UINT16(void) { return MPI_UINT16_T; }
static inline MPI_Op dim_MPI_OP_NULL(void) { return MPI_OP_NULL; }
static inline MPI_Info dim_MPI_INFO_NULL(void) { return MPI_INFO_NULL; }
static inline int dim_MPI_COMM_TYPE_SHARED(void) { return MPI_COMM_TYPE_SHARED; }

// Sum of bfloat16 values (stored as uint16): each pair is added in float and rounded back to the
// nearest bf16 (ties to even). A user-defined MPI operation, for --grad-reduce bf16.
#include <stdint.h>
#include <string.h>
static void dim_bf16_sum_function(void *in, void *inout, int *len, MPI_Datatype *type) {
    (void)type;
    const uint16_t *a = (const uint16_t *)in;
    uint16_t *b = (uint16_t *)inout;
    for (int i = 0; i < *len; i++) {
        uint32_t ua = (uint32_t)a[i] << 16, ub = (uint32_t)b[i] << 16, us;
        float fa, fb, s;
        memcpy(&fa, &ua, 4);
        memcpy(&fb, &ub, 4);
        s = fa + fb;
        memcpy(&us, &s, 4);
        us += 0x7FFF + ((us >> 16) & 1);
        b[i] = (uint16_t)(us >> 16);
    }
}

// The operation, created on first use (after MPI_Init); commutative.
static inline MPI_Op dim_bf16_sum_op(void) {
    static MPI_Op op = MPI_OP_NULL;
    if (op == MPI_OP_NULL) MPI_Op_create(dim_bf16_sum_function, 1, &op);
    return op;
}
