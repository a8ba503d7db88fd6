// HDF5's type and property-list ids are macros that call H5open() and read a global;
// Swift cannot import them, so these accessors return the same ids.
#include <hdf5.h>
static inline hid_t dim_H5T_NATIVE_FLOAT(void) { return H5T_NATIVE_FLOAT; }
static inline hid_t dim_H5T_NATIVE_DOUBLE(void) { return H5T_NATIVE_DOUBLE; }
static inline hid_t dim_H5T_NATIVE_UINT8(void) { return H5T_NATIVE_UINT8; }
static inline hid_t dim_H5T_NATIVE_INT64(void) { return H5T_NATIVE_INT64; }
static inline hid_t dim_H5T_NATIVE_INT32(void) { return H5T_NATIVE_INT32; }
static inline hid_t dim_H5T_C_S1(void) { return H5T_C_S1; }
static inline hid_t dim_H5P_DATASET_CREATE(void) { return H5P_DATASET_CREATE; }
static inline hid_t dim_H5P_FILE_ACCESS(void) { return H5P_FILE_ACCESS; }
static inline unsigned dim_H5F_ACC_TRUNC(void) { return H5F_ACC_TRUNC; }
static inline unsigned dim_H5F_ACC_RDONLY(void) { return H5F_ACC_RDONLY; }
static inline unsigned dim_H5F_ACC_RDWR(void) { return H5F_ACC_RDWR; }
static inline hid_t dim_H5S_ALL(void) { return H5S_ALL; }
static inline hid_t dim_H5P_DEFAULT(void) { return H5P_DEFAULT; }
// Turn off HDF5's automatic error-stack printing: dim-dist reports its own one-line errors.
static inline void dim_H5_silence_errors(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }
