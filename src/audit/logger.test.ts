import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

/** A guard against a hang, not a timing check: the child logs two lines and exits. */
const EXIT_GUARD_MS = 15_000;

/** Runs `body` (an ES module that has `createLogger` in scope) in a child Node.js whose stdout reader closes at once. */
function withReaderGone(body: string): Promise<{ code: number | null; signal: string | null; stderr: string } | 'still running'> {
  const logger = new URL('./logger.js', import.meta.url).href;
  const child = spawn(process.execPath, ['--input-type=module', '-e', `import { createLogger } from ${JSON.stringify(logger)};\n${body}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.destroy();
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('still running');
    }, EXIT_GUARD_MS);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stderr });
    });
  });
}

test('a process whose stdout reader is gone exits: the lines pending at exit are dropped, not retried forever', async () => {
  // The first line's write is under way and the second waits behind it when the process exits:
  // the exit writes the second, gets EPIPE, and must give up.
  const r = await withReaderGone(`const log = createLogger('info'); log.info('one'); log.info('two'); process.exit(0);`);
  assert.notEqual(r, 'still running', 'the exit retried a write to a pipe without reader');
  assert.deepEqual(r, { code: 0, signal: null, stderr: '' });
});

test('lines logged after the reader is gone are dropped without an error', async () => {
  const r = await withReaderGone(`const log = createLogger('info'); log.info('one'); setTimeout(() => { for (let i = 0; i < 100; i++) log.info('more'); setTimeout(() => process.exit(0), 50); }, 200);`);
  assert.deepEqual(r, { code: 0, signal: null, stderr: '' });
});
