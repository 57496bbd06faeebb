// A training-step stand-in for overlap measurements (`sluice bench --backend cuda
// --train-step-ms T`): it reads the whole batch, as a first layer would (the XOR of its words
// lands in sink[0], so a test can check every word was read), then keeps the GPU busy until
// `ns` nanoseconds of the global timer have passed since the block started. Wall time, not SM
// clock cycles: clocks change under load and that change would be blamed on sluice. Launch one
// block per SM: like a real step it shares the GPU, leaving room for sluice's kernels beside it.

__device__ __forceinline__ unsigned long long sluice_globaltimer() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

SLUICE_EXTERN __global__ void train_step(const uint32_t* batch, uint32_t words,
                                         unsigned long long ns, uint32_t* sink) {
    unsigned long long start = sluice_globaltimer();
    uint32_t acc = 0;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < words; i += gridDim.x * blockDim.x) {
        acc ^= batch[i];
    }
    if (acc != 0) {
        atomicXor(sink, acc);
    }
    while (sluice_globaltimer() - start < ns) {
    }
}
