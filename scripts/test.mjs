// The test suite (`npm test` runs it after the build). Three runners at once:
// - the specs beside the modules (dist/src/**/*.test.js) in one process (--test-isolation=none):
//   they are pure and fast, and a process per file cost more than the specs themselves (measured:
//   36 s of CPU against 19 s);
// - the tests under dist/test, a process per file (they start servers, child processes and
//   signals of their own), TEST_CONCURRENCY at a time (the runner starts them in the order of
//   their paths: the end-to-end ones, the longest, first);
// - the few dist/test files that mostly wait (WAITING), one at a time.
// The second one's report streams; the others' follow it. Exit status 1 if any failed.
// Every Node.js process of the run (the test files, and the sigil processes they start: helpers/cli.ts
// passes NODE_COMPILE_CACHE on) keeps its compiled modules in one cache of the run's own, a fresh
// private temp dir: the ~200 processes compile the same modules once.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Files of dist/test at once: most of them wait on servers and timers part of the time, so one
 * more than the two cores of the CI machine keeps both busy (measured: 165–167 s for the suite at
 * 3 and 4, 176–180 s at 2).
 */
const TEST_CONCURRENCY = 3;
/** A test that runs longer has hung: it fails instead of holding the suite. */
const TEST_TIMEOUT_MS = 300_000;
/**
 * dist/test files that mostly wait (real deadlines: 31 s and 8 s; an image layout: 9 s), run one
 * at a time by a runner of their own beside the others from the start. In the others' runner,
 * which starts files in the order of their paths, the first one started ~100 s in and ran alone
 * for the suite's last 18 s.
 */
const WAITING = ['security/verification-deadline.test.js', 'security/signature-artifact-judged-under-deadline.test.js', 'unit/deploy-image.test.js'].map((f) => `dist/test/${f}`);

const root = fileURLToPath(new URL('..', import.meta.url));
const node = process.execPath;

function testFiles(dir) {
  const out = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...testFiles(p));
    else if (e.name.endsWith('.test.js')) out.push(relative(root, p));
  }
  return out.sort();
}

const all = testFiles(join(root, 'dist/test'));
for (const f of WAITING) if (!all.includes(f)) throw new Error(`scripts/test.mjs: ${f} is not a test file (any more)`);
const integration = all.filter((f) => !WAITING.includes(f));
const timeout = `--test-timeout=${TEST_TIMEOUT_MS}`;

const compileCache = mkdtempSync(join(tmpdir(), 'sigil-test-compile-cache-'));
const env = { ...process.env, NODE_COMPILE_CACHE: compileCache };

const run = (args, stdio) =>
  new Promise((resolve) => {
    const child = spawn(node, args, { cwd: root, stdio, env });
    let text = '';
    child.stdout?.on('data', (d) => (text += d));
    child.stderr?.on('data', (d) => (text += d));
    child.on('close', (code, signal) => resolve({ ok: code === 0, text, how: signal ?? `exit ${code}` }));
  });

const specs = run(['--test', '--test-isolation=none', timeout, 'dist/src/**/*.test.js'], ['ignore', 'pipe', 'pipe']);
const waiting = run(['--test', '--test-concurrency=1', timeout, ...WAITING], ['ignore', 'pipe', 'pipe']);
const rest = await run(['--test', `--test-concurrency=${TEST_CONCURRENCY}`, timeout, ...integration], 'inherit');
const [unit, waited] = await Promise.all([specs, waiting]);
rmSync(compileCache, { recursive: true, force: true });
process.stdout.write(`\n# the dist/test files that mostly wait (their own runner): ${waited.how}\n${waited.text}`);
process.stdout.write(`\n# the specs beside the modules (dist/src, one process): ${unit.how}\n${unit.text}`);
const failed = [!rest.ok && `dist/test (${rest.how})`, !waited.ok && `dist/test, the waiting files (${waited.how})`, !unit.ok && `dist/src (${unit.how})`].filter(Boolean);
if (failed.length > 0) {
  process.stdout.write(`\n# failed: ${failed.join(', ')}\n`);
  process.exitCode = 1;
}
