// The AVX2 + FMA + F16C variant (see avx2_kernels_impl.h).
#define FLOTILLA_AVX_VNNI 0
#include "kernels/cpu/avx2_kernels_impl.h"
