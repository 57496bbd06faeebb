// A training-step stand-in for overlap measurements (`sluice bench --backend cuda
// --train-step-ms T`): it reads the whole batch, as a first layer would (the XOR of its words
// lands in sink[0], so a test can check every word was read), then keeps the GPU busy until
// `cycles` SM clock ticks have passed since it started. Launch one block per SM: like a real
// step it shares the GPU, leaving room for sluice's kernels to run beside it.

SLUICE_EXTERN __global__ void train_step(const uint32_t* batch, uint32_t words,
                                         unsigned long long cycles, uint32_t* sink) {
    long long start = clock64();
    uint32_t acc = 0;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < words; i += gridDim.x * blockDim.x) {
        acc ^= batch[i];
    }
    if (acc != 0) {
        atomicXor(sink, acc);
    }
    while ((unsigned long long)(clock64() - start) < cycles) {
    }
}
