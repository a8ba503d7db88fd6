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
