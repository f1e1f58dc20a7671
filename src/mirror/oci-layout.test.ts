import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { sha256 } from '../../test/helpers/digest.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { tempDir } from '../../test/helpers/temp.js';
import type { Digest } from '../oci/digest.js';
import { VERIFY_AHEAD_MAX_BYTES } from '../store/limits.js';
import { CopyRecord } from './copy.js';
import { blobPath, exportLayout } from './oci-layout.js';

test('an export writes each stored object as its bytes, however large (read from the store in many chunks)', async () => {
  const store = await tempStore();
  try {
    const rec = new CopyRecord();
    const objects = new Map<Digest, Buffer>();
    for (let i = 0; i < 4; i++) {
      // larger than what the store reads whole: streamed, a read chunk at a time
      const bytes = randomBytes(4 * VERIFY_AHEAD_MAX_BYTES + i * 1001);
      const d = sha256(bytes);
      await store.content.putBytes(d, bytes);
      objects.set(d, bytes);
      rec.objects.set(d, bytes.length);
    }
    const dir = await tempDir('sigil-export-');
    const summary = await exportLayout(store.content, dir, [rec]);
    assert.equal(summary.blobsWritten, objects.size);
    for (const d of objects.keys()) assert.equal(sha256(await readFile(blobPath(dir, d))), d, `${d} in the layout`);
  } finally {
    await store.close();
  }
});
