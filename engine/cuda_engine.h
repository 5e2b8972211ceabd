/* cuda_engine.h (internal to engine/): what engine.c needs to know of the
 * CUDA engine (cuda_engine.cu). Only included when OLMOE_HAVE_CUDA. */
#ifndef OLMOE_CUDA_ENGINE_H
#define OLMOE_CUDA_ENGINE_H

#ifdef __cplusplus
extern "C" {
#endif

#include "engine_impl.h"

extern const olmoe_engine_ops olmoe_engine_cuda_ops;

/* number of usable CUDA devices; 0 when there is no driver or no GPU */
int olmoe_cuda_device_count(void);

#ifdef __cplusplus
}
#endif

#endif
