/* tensor.h — a view of one stored weight tensor (never owns its bytes; they live in an mmap) and the
 * storage dtypes msa computes with directly. Shapes are outermost-first, as in PyTorch: a Linear weight is
 * [out_features, in_features] and rows (the last dimension) are contiguous. GGUF's reversed ne[] order is
 * converted by the GGUF loader. Quantized dtypes store each row as blocks of 32 elements (ggml layout):
 *   Q8_0: 34 bytes  {f16 d; int8 q[32]}                 x = d*q
 *   Q4_0: 18 bytes  {f16 d; uint8 qs[16]}               x = d*(nibble-8); element j<16 low nibble of qs[j],
 *                                                       element j>=16 high nibble of qs[j-16]
 *   Q4_1: 20 bytes  {f16 d; f16 m; uint8 qs[16]}        x = d*nibble + m (same nibble order) */
#ifndef MSA_MODEL_TENSOR_H
#define MSA_MODEL_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum msa_dtype {
    MSA_DTYPE_F32 = 0,
    MSA_DTYPE_F16,
    MSA_DTYPE_BF16,
    MSA_DTYPE_Q8_0,
    MSA_DTYPE_Q4_0,
    MSA_DTYPE_Q4_1,
    MSA_DTYPE_COUNT
} msa_dtype;

#define MSA_QK 32          /* elements per quantization block */
#define MSA_MAX_DIMS 4

typedef struct msa_tensor {
    const char *name;           /* as stored (HF name or GGUF name); owned by the weight set */
    msa_dtype dtype;
    int n_dims;
    int64_t shape[MSA_MAX_DIMS]; /* outermost first; unused dims are 1 */
    const void *data;           /* first byte, inside the mapped file (aligned as the file aligns it) */
    size_t nbytes;              /* exact byte size, checked against the file by the loader */
} msa_tensor;

/* "f32", "f16", "bf16", "q8_0", "q4_0", "q4_1". */
const char *msa_dtype_name(msa_dtype t);
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size for a quantized dtype. */
size_t msa_dtype_row_bytes(msa_dtype t, int64_t n);
/* Total elements of a tensor. */
int64_t msa_tensor_nelements(const msa_tensor *t);

/* Scalar conversions, exact (round-to-nearest-even for narrowing). */
float msa_f16_to_f32(uint16_t h);
uint16_t msa_f32_to_f16(float f);
float msa_bf16_to_f32(uint16_t b);
uint16_t msa_f32_to_bf16(float f);

/* Dequantize/convert one row of n elements to f32 (the reference path; kernels do not call it per use). */
void msa_row_to_f32(msa_dtype t, const void *row, float *out, int64_t n);

#endif
