// CHECK for the fuzz targets' oracles: a failed rule names itself and traps, so libFuzzer keeps the input.
#pragma once

#include <cstdio>

#define CHECK(c)                                                                  \
  do {                                                                            \
    if (!(c)) {                                                                   \
      std::fprintf(stderr, "fuzz oracle failed: %s:%d: %s\n", __FILE__, __LINE__, #c); \
      __builtin_trap();                                                           \
    }                                                                             \
  } while (0)
