// The AVX2 + FMA + F16C + AVX-VNNI variant (see avx2_kernels_impl.h).
#define FLOTILLA_AVX_VNNI 1
#include "kernels/cpu/avx2_kernels_impl.h"
