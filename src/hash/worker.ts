/**
 * A hash worker: hashes the rings that the event loop fills (layout in ring.ts).
 * It never returns to its own event loop: it drains new jobs from its port with
 * receiveMessageOnPort, hashes whatever is waiting in every job, and sleeps on the
 * doorbell when there is nothing to do.
 */
import { createHash } from 'node:crypto';
import type { Hash } from 'node:crypto';
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { MessagePort } from 'node:worker_threads';
import { ABORTED, ALGORITHM, ALGORITHMS, CONTROL_BYTES, DATA_OFFSET, DIGEST_OFFSET, DONE, END, READ, RING_BYTES, STATE, WRITTEN } from './ring.js';

/** Hash at most this much before publishing progress, so a full ring frees up early. */
const SLICE_BYTES = RING_BYTES / 4;

interface Job {
  readonly sab: SharedArrayBuffer;
  readonly ctrl: Int32Array;
  readonly data: Uint8Array;
  readonly hash: Hash;
}

export type WorkerMessage = { readonly job: SharedArrayBuffer } | { readonly stop: true };

const MASK = RING_BYTES - 1;

/** Hashes what is waiting in `job`; true when it did anything. False and finished are both possible. */
function pump(job: Job): { progressed: boolean; finished: boolean } {
  const { ctrl } = job;
  // STATE before WRITTEN: the producer stores its last WRITTEN before END, so END seen here means WRITTEN is final.
  const state = Atomics.load(ctrl, STATE);
  if (state === ABORTED) return { progressed: false, finished: true };
  const written = Atomics.load(ctrl, WRITTEN);
  let read = Atomics.load(ctrl, READ);
  let waiting = (written - read) | 0;
  const progressed = waiting > 0;
  while (waiting > 0) {
    const pos = read & MASK;
    const n = Math.min(waiting, RING_BYTES - pos, SLICE_BYTES);
    job.hash.update(job.data.subarray(pos, pos + n));
    read = (read + n) | 0;
    waiting -= n;
    Atomics.store(ctrl, READ, read);
    Atomics.notify(ctrl, READ);
  }
  if (state !== END) return { progressed, finished: false };
  new Uint8Array(job.sab, DIGEST_OFFSET).set(job.hash.digest());
  // END → DONE only: an abort that came meanwhile stays an abort
  Atomics.compareExchange(ctrl, STATE, END, DONE);
  Atomics.notify(ctrl, STATE);
  return { progressed: true, finished: true };
}

/** The worker's life: never returns (a stop message exits the thread). */
function serve(port: MessagePort, bell: Int32Array): never {
  const jobs: Job[] = [];
  for (;;) {
    const seen = Atomics.load(bell, 0);
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
      const msg = m.message as WorkerMessage;
      if ('stop' in msg) process.exit(0);
      const sab = msg.job;
      const ctrl = new Int32Array(sab, 0, CONTROL_BYTES / 4);
      const alg = ALGORITHMS[Atomics.load(ctrl, ALGORITHM)];
      // a producer bug, not data: the thread dies and its streams fail
      if (alg === undefined) throw new Error(`hash worker: unknown algorithm ${Atomics.load(ctrl, ALGORITHM)}`);
      jobs.push({ sab, ctrl, data: new Uint8Array(sab, DATA_OFFSET, RING_BYTES), hash: createHash(alg) });
    }
    let progressed = false;
    for (let i = jobs.length - 1; i >= 0; i--) {
      const r = pump(jobs[i]);
      if (r.progressed) progressed = true;
      if (r.finished) jobs.splice(i, 1);
    }
    if (!progressed) Atomics.wait(bell, 0, seen);
  }
}

const data = workerData as { port: MessagePort; doorbell: SharedArrayBuffer };
serve(data.port, new Int32Array(data.doorbell));
