// What a sigil process loads at start: the shared mode's client libraries (the AWS SDK's S3
// client, the Redis client) only when cache.shared is configured — they add ~22 MiB of RSS to
// every process that imports them (measured: 105 → 127 MiB idle).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../test/helpers/temp.js';

const run = promisify(execFile);
const DIST_SRC = fileURLToPath(new URL('.', import.meta.url));

/** How many modules of the shared mode's libraries a fresh process has loaded after importing `module`. */
async function sharedLibrariesLoadedBy(module: string): Promise<number> {
  const dir = await tempDir('sigil-libraries');
  const probe = join(dir, 'probe.mjs');
  await writeFile(
    probe,
    [
      "import { createRequire } from 'node:module';",
      `await import(${JSON.stringify(join(DIST_SRC, module))});`,
      `const cache = createRequire(${JSON.stringify(join(DIST_SRC, 'app.js'))}).cache;`,
      "console.log(Object.keys(cache).filter((k) => /[\\\\/]node_modules[\\\\/](@aws-sdk|iovalkey)[\\\\/]/.test(k)).length);",
    ].join('\n'),
  );
  const { stdout } = await run(process.execPath, [probe]);
  return Number(stdout.trim());
}

test('the app and its registry stack load neither the S3 client nor the Redis client', async () => {
  assert.equal(await sharedLibrariesLoadedBy('app.js'), 0);
});

test('the probe sees them when they are loaded (the bucket and the coordinator do)', async () => {
  assert.ok((await sharedLibrariesLoadedBy('shared/bucket.js')) > 0);
  assert.ok((await sharedLibrariesLoadedBy('shared/coordinator.js')) > 0);
});
