// The C interface of libwalctl_c is declared in include/walctl.h and implemented in Swift (Sources/WALCollectorC,
// @_cdecl functions). This target exists so that Swift sees the header's types (walctl_string, the opaque pointers)
// with their C layout; it has no code of its own.
#include "walctl.h"
