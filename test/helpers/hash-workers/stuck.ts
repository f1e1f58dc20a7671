// A hash worker that never reads its jobs: streams on it must fail after the stall timeout, not hang.
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
