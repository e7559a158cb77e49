/* The two libc functions p256-cortex-m4.c calls, for a freestanding build without libc headers
 * (see build.rs). compiler_builtins provides both symbols when the firmware is linked. */
#ifndef OTAFLEET_FREESTANDING_STRING_H
#define OTAFLEET_FREESTANDING_STRING_H

#include <stddef.h>

void *memcpy(void *restrict dest, const void *restrict src, size_t n);
void *memset(void *dest, int c, size_t n);

#endif
