#include <zlib.h>
// inflateInit2 is a macro over inflateInit2_ with the library version and struct size.
static inline int dim_inflateInit2(z_streamp strm, int windowBits) {
  return inflateInit2(strm, windowBits);
}
