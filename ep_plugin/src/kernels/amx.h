// AMX tile state: Linux hands it to a process only after arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA).
#pragma once
#include <cstdint>

namespace onnxq::kernels {

// The 64-byte tile configuration ldtilecfg reads (palette 1).
struct alignas(64) AmxTileConfig {
  uint8_t palette_id = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};

  // tmm0-7 all 16 rows x 64 bytes: what both AMX GEMMs use.
  static AmxTileConfig AllFull() {
    AmxTileConfig c;
    for (int t = 0; t < 8; ++t) {
      c.colsb[t] = 64;
      c.rows[t] = 16;
    }
    return c;
  }
};

// Asks once per process; true when the CPU has AMX and the kernel granted the tile state.
bool AmxAvailable();

}  // namespace onnxq::kernels
