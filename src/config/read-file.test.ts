// Reading a file a config names: a regular file is read whole (through symlinks); a FIFO, a
// directory or a device is refused at once, never waited on; a file over the bound is refused
// without being read into memory.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { tempDir } from '../../test/helpers/temp.js';
import { MAX_CONFIG_FILE_BYTES, readConfigFile, readConfigFileSync } from './read-file.js';

/** Without the O_NONBLOCK open, a FIFO read would wait for ever: this fails the test instead. */
const NO_WAIT = { timeout: 10_000 };

let dir: string;
before(async () => {
  dir = await tempDir('sigil-read-file-');
});

const readers = [
  ['readConfigFile', (p: string, max?: number) => readConfigFile(p, max)],
  ['readConfigFileSync', async (p: string, max?: number) => readConfigFileSync(p, max)],
] as const;

for (const [name, read] of readers) {
  describe(name, () => {
    test('a regular file is read whole, also through a symlink', async () => {
      const file = join(dir, `${name}-plain.pem`);
      const text = 'x'.repeat(200_000); // more than one read
      await writeFile(file, text);
      await symlink(file, join(dir, `${name}-link.pem`));
      assert.equal((await read(file)).toString(), text);
      assert.equal((await read(join(dir, `${name}-link.pem`))).toString(), text);
    });

    test('a FIFO is refused at once, with no writer ever opening it', NO_WAIT, async () => {
      const fifo = join(dir, `${name}-fifo`);
      execFileSync('mkfifo', [fifo]);
      await assert.rejects(read(fifo), (e: NodeJS.ErrnoException) => e.code === 'EFTYPE' && /not a regular file but a FIFO/.test(e.message));
    });

    test('a directory and a device are refused', NO_WAIT, async () => {
      const sub = join(dir, `${name}-dir`);
      await mkdir(sub);
      await assert.rejects(read(sub), /not a regular file but a directory/);
      await assert.rejects(read('/dev/zero'), /not a regular file but a device/);
    });

    test('a file over the bound is refused before it is read', async () => {
      const big = join(dir, `${name}-big`);
      await writeFile(big, '');
      await truncate(big, MAX_CONFIG_FILE_BYTES + 1); // sparse: nothing of it is in memory or on disk
      await assert.rejects(read(big), (e: NodeJS.ErrnoException) => e.code === 'EFBIG' && e.message === `larger than ${MAX_CONFIG_FILE_BYTES} bytes`);
      const small = join(dir, `${name}-small`);
      await writeFile(small, '12345');
      await assert.rejects(read(small, 4), /larger than 4 bytes/);
      assert.equal((await read(small, 5)).toString(), '12345');
    });

    test('a missing file fails with the OS error naming it', async () => {
      const missing = join(dir, 'missing.pem');
      await assert.rejects(read(missing), (e: NodeJS.ErrnoException) => e.code === 'ENOENT' && e.message.includes(missing));
    });
  });
}
