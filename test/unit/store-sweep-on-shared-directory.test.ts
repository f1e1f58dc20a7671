import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog } from '../../src/store/catalog.js';
import { ContentStore } from '../../src/store/content-store.js';
import { META_SWEEP_BATCH_FILES } from '../../src/store/limits.js';
import { tempDir } from '../helpers/temp.js';
import { sha256, sha256Hex } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';

// Two stores sharing one directory (two sigil processes: the file system is all
// they share) sweep the same metadata at once while one of them stores objects and writes
// records. Each stale document is removed once; nothing about a stored object, and nothing
// written since the sweeps began, is lost; no claimed file is left in tmp/.

const fileName = (key: string): string => `${sha256Hex(key)}.json`;

const freshDir = (): Promise<string> => tempDir('sigil-sweep-shared');

test('two stores on one directory sweeping at once while one of them writes', async () => {
  const dir = await freshDir();
  const clock = fakeClock();
  const now = clock.now;
  const a = await ContentStore.open({ dir, maxBytes: 1 << 30, now, sweepMetaAtOpen: false });
  const b = await ContentStore.open({ dir, maxBytes: 1 << 30, now, sweepMetaAtOpen: false });
  const catalogB = new Catalog(b);
  const n = META_SWEEP_BATCH_FILES * 2;
  const old = now() - 1000;
  await mkdir(join(dir, 'meta', 'blob'), { recursive: true });
  const doc = (key: string): Promise<void> => writeFile(join(dir, 'meta', 'blob', fileName(key)), JSON.stringify({ key, updated: old, value: 1 }));
  const storedKeys: string[] = [];
  const goneKeys: string[] = [];
  const arriving: Array<{ key: string; bytes: Buffer; digest: Digest }> = [];
  for (let i = 0; i < n; i++) {
    const bytes = randomBytes(64);
    const d = sha256(bytes);
    const key = `reg.test/r${i % 3}@${d}`;
    if (i % 3 === 0) {
      await a.putBytes(d, bytes);
      storedKeys.push(key);
    } else if (i % 3 === 1) goneKeys.push(key);
    else arriving.push({ key, bytes, digest: d });
    await doc(key);
  }
  clock.advance(1000);
  const sweeps = Promise.all([a.sweepMeta(), b.sweepMeta()]);
  // meanwhile b stores the `arriving` objects and records them (object first, then the record)
  const fresh: string[] = [];
  for (const x of arriving) {
    await b.putBytes(x.digest, x.bytes);
    await catalogB.noteBlob('reg.test', 'other', x.digest);
    fresh.push(`reg.test/other@${x.digest}`);
  }
  const [ra, rb] = await sweeps;
  const left = new Set(await readdir(join(dir, 'meta', 'blob')));
  for (const k of storedKeys) assert.ok(left.has(fileName(k)), `record of a stored object kept: ${k}`);
  for (const k of fresh) assert.ok(left.has(fileName(k)), `record written during the sweeps kept: ${k}`);
  for (const k of goneKeys) assert.equal(left.has(fileName(k)), false, `record of an absent object removed: ${k}`);
  // an `arriving` object's old record may go or stay (stored before or after it was checked): never a wrong one
  assert.ok(ra.removed + rb.removed >= goneKeys.length && ra.removed + rb.removed <= goneKeys.length + arriving.length);
  for (const x of arriving) assert.equal(await b.onDisk(x.digest), true);
  assert.deepEqual((await readdir(join(dir, 'tmp'))).filter((f) => f.startsWith('meta-sweep')), []);
  await Promise.all([a.close(), b.close()]);
});
