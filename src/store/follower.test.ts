import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, rm, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isSigilError } from '../errors.js';
import { sha256 } from '../../test/helpers/digest.js';
import { tempDir } from '../../test/helpers/temp.js';
import { FollowerStream, type Followed, type FollowState } from './follower.js';
import { FOLLOW_CHUNK_BYTES } from './limits.js';

// A follower reads the bytes of a verified write from the writer's chunks in memory where it can,
// and from the temp file where it cannot. What it delivers from memory is what the writer hashed;
// what it reads from the file may have been changed since. Whatever the mix, it completes only with
// the bytes of the digest.

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/**
 * A verified write of `bytes` whose chunks in memory are the bytes outside `[fileFrom, fileTo)`
 * (there the follower reads `file`, the temp file's content).
 */
async function verifiedWrite(bytes: Buffer, file: Buffer, fileFrom: number, fileTo: number): Promise<Followed & { fh: FileHandle }> {
  const dir = await tempDir('sigil-follower-');
  dirs.push(dir);
  const path = join(dir, 'tmp');
  await writeFile(path, file);
  const fh = await open(path, 'r');
  const state: FollowState = { kind: 'verified', size: bytes.length };
  return {
    fh,
    state: () => state,
    handle: () => Promise.resolve(fh),
    progress: () => Promise.resolve(),
    recent: (pos, max) => {
      if (pos >= fileFrom && pos < fileTo) return undefined;
      const end = pos < fileFrom ? Math.min(fileFrom, pos + max) : pos + max;
      return Buffer.from(bytes.subarray(pos, Math.min(end, bytes.length)));
    },
    retain: () => {},
    release: () => {},
  };
}

async function readAll(f: FollowerStream): Promise<{ bytes: Buffer; complete: boolean; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const c of f) parts.push(c as Buffer);
    return { bytes: Buffer.concat(parts), complete: true };
  } catch (error) {
    return { bytes: Buffer.concat(parts), complete: false, error };
  }
}

const C = FOLLOW_CHUNK_BYTES;

for (const size of [1, C - 1, C, C + 1, 3 * C + 1]) {
  // memory, then the file, then memory again (where the size allows)
  const fileFrom = Math.min(size - 1, C >> 1);
  const fileTo = Math.min(size, fileFrom + C + 1);

  test(`a follower that goes from memory to the file and back completes with the blob's bytes when the file is right (${size} bytes)`, async () => {
    const bytes = randomBytes(size);
    const w = await verifiedWrite(bytes, bytes, fileFrom, fileTo);
    try {
      const r = await readAll(new FollowerStream(w, sha256(bytes)));
      assert.ok(r.complete, `failed with ${String(r.error)}`);
      assert.ok(r.bytes.equals(bytes));
    } finally {
      await w.fh.close();
    }
  });

  test(`a follower that goes from memory to the file and back never completes bytes changed in the part it reads from the file (${size} bytes)`, async () => {
    const bytes = randomBytes(size);
    for (const at of new Set([fileFrom, fileTo - 1])) {
      const file = Buffer.from(bytes);
      file[at] = file[at]! ^ 0xff;
      const w = await verifiedWrite(bytes, file, fileFrom, fileTo);
      try {
        const r = await readAll(new FollowerStream(w, sha256(bytes)));
        assert.ok(!r.complete && r.bytes.length < size, `changed at ${at}: received ${r.bytes.length} of ${size}, complete: ${r.complete}`);
        assert.ok(isSigilError(r.error) && r.error.code === 'DIGEST_MISMATCH', `failed with ${String(r.error)}`);
      } finally {
        await w.fh.close();
      }
    }
  });
}

test('a follower served wholly from memory does not read the file (a changed file does not matter)', async () => {
  const bytes = randomBytes(C + 7);
  const w = await verifiedWrite(bytes, randomBytes(bytes.length), bytes.length, bytes.length);
  try {
    const r = await readAll(new FollowerStream(w, sha256(bytes)));
    assert.ok(r.complete && r.bytes.equals(bytes));
  } finally {
    await w.fh.close();
  }
});

test('an empty blob: the follower ends at once, complete, with nothing', async () => {
  const bytes = Buffer.alloc(0);
  const w = await verifiedWrite(bytes, bytes, 0, 0);
  try {
    const r = await readAll(new FollowerStream(w, sha256(bytes)));
    assert.ok(r.complete && r.bytes.length === 0);
  } finally {
    await w.fh.close();
  }
});
