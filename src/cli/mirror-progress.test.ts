import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PROGRESS_LINE_MS } from '../mirror/limits.js';
import type { MirrorResult } from '../mirror/run.js';
import type { MirrorImage } from '../mirror/spec.js';
import { fakeClock } from '../../test/helpers/clock.js';
import type { CliIo } from './io.js';
import { ProgressLines } from './mirror-progress.js';

const MiB = 1024 * 1024;
const ENTRY = { upstream: 'reg.test', repository: 'prod/app', tags: ['1.0'] } as unknown as MirrorImage;

function stderr(): { io: CliIo; lines: () => string[]; text: () => string } {
  let err = '';
  return { io: { env: {}, cwd: '/', stdout: () => {}, stderr: (t) => void (err += t) }, lines: () => err.split('\n').filter((l) => l !== ''), text: () => err };
}

function done(status: MirrorResult['status'], extra: Partial<MirrorResult> = {}): MirrorResult {
  return { image: 'reg.test/prod/app', upstream: 'reg.test', repository: 'prod/app', tag: '1.0', status, bytes: 3 * MiB, newBytes: 3 * MiB, objects: 4, digest: `sha256:${'a'.repeat(64)}`, ...extra };
}

describe('mirror progress without a terminal: appended lines', () => {
  test('while an image downloads, a line every PROGRESS_LINE_MS with its bytes and rate and the run\'s totals', () => {
    const clock = fakeClock();
    const e = stderr();
    const p = new ProgressLines(e.io, { tty: false, now: clock.now });
    p.tagStarted(ENTRY, '1.0', 0, 2);
    clock.advance(PROGRESS_LINE_MS - 1);
    p.bytes(5 * MiB);
    assert.deepEqual(e.lines(), [], 'not before the interval');
    clock.advance(1);
    p.bytes(5 * MiB);
    assert.deepEqual(e.lines(), ['[1/2] reg.test/prod/app:1.0 … 10 MiB at 1.0 MiB/s; total 10 MiB in 10 s (1.0 MiB/s)']);
    clock.advance(1000);
    p.bytes(MiB);
    assert.equal(e.lines().length, 1, 'at most one line per interval');
  });

  test('the totals run across images; the done line says how long the image took; the end says what the run did', () => {
    const clock = fakeClock();
    const e = stderr();
    const p = new ProgressLines(e.io, { tty: false, now: clock.now, intervalMs: 1000 });
    p.tagStarted(ENTRY, '1.0', 0, 2);
    clock.advance(2000);
    p.bytes(4 * MiB);
    p.tagDone(done('verified', { signer: 'sha256:k' }), 0, 2);
    p.tagStarted(ENTRY, '2.0', 1, 2);
    clock.advance(2000);
    p.bytes(2 * MiB);
    p.tagDone(done('denied', { tag: '2.0', reason: 'no signature found (policy prod, enforce)' }), 1, 2);
    p.finished([done('verified'), done('denied')]);
    assert.deepEqual(e.lines(), [
      '[1/2] reg.test/prod/app:1.0 … 4.0 MiB at 2.0 MiB/s; total 4.0 MiB in 2.0 s (2.0 MiB/s)',
      `[1/2] reg.test/prod/app:1.0 verified sha256:${'a'.repeat(64)} (4 objects, 3.0 MiB, 3.0 MiB new, 2.0 s) signed by sha256:k`,
      '[2/2] reg.test/prod/app:2.0 … 2.0 MiB at 1.0 MiB/s; total 6.0 MiB in 4.0 s (1.5 MiB/s)',
      `[2/2] reg.test/prod/app:2.0 denied sha256:${'a'.repeat(64)}: no signature found (policy prod, enforce)`,
      '2 image(s) in 4.0 s: 6.0 MiB downloaded (1.5 MiB/s)',
    ]);
    assert.doesNotMatch(e.text(), /\x1b/, 'no cursor control');
  });
});

describe('mirror progress on a terminal: one line redrawn in place', () => {
  test('the same figures, each redraw erasing the line', () => {
    const clock = fakeClock();
    const e = stderr();
    const p = new ProgressLines(e.io, { tty: true, now: clock.now });
    p.tagStarted(ENTRY, '1.0', 0, 1);
    clock.advance(500);
    p.bytes(MiB);
    assert.equal(e.text(), '\r\x1b[K[1/1] reg.test/prod/app:1.0 …\r\x1b[K[1/1] reg.test/prod/app:1.0 … 1.0 MiB at 2.0 MiB/s; total 1.0 MiB in 0.5 s (2.0 MiB/s)');
  });
});
