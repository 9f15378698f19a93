// AMX tile state: Linux hands it to a process only after arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA).
#pragma once

namespace onnxq::kernels {

// Asks once per process; true when the CPU has AMX and the kernel granted the tile state.
bool AmxAvailable();

}  // namespace onnxq::kernels
