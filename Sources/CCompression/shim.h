// Every decompressor a bzImage payload can need (arch/x86/boot/compressed: gzip, bzip2, lzma,
// xz, lzo, lz4, zstd), from Debian's system libraries.
#include <stddef.h>
#include <zlib.h>
#include <lzma.h>
#include <zstd.h>
#include <bzlib.h>
#include <lz4.h>
#include <lzo/lzo1x.h>

// lzo_init() is a macro that passes sizeof checks to __lzo_init_v2.
static inline int ph_lzo_init(void) { return lzo_init(); }

// deflateInit2/inflateInit2 are macros too.
static inline int ph_inflate_init_gzip(z_stream *stream) { return inflateInit2(stream, 16 + MAX_WBITS); }
