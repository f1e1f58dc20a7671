import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { sha256 } from '../../test/helpers/digest.js';
import { tempDir } from '../../test/helpers/temp.js';
import { isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import { inLayout, openLayoutBlob, readLayoutManifest } from './layout-objects.js';
import { blobPath } from './oci-layout.js';

const MT = 'application/vnd.oci.image.manifest.v1+json';

/** A layout directory holding `files` at the blob paths of the given digests. */
async function layout(files: Array<[Digest, Buffer]>): Promise<string> {
  const dir = await tempDir('sigil-layout-objects-');
  for (const [d, bytes] of files) {
    await mkdir(dirname(blobPath(dir, d)), { recursive: true });
    await writeFile(blobPath(dir, d), bytes);
  }
  return dir;
}

/** The code of the SigilError `p` rejects with. */
async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return isSigilError(e) ? e.code : `not a SigilError: ${String(e)}`;
  }
  return 'resolved';
}

const bytes = Buffer.from('{"schemaVersion":2}');
const digest = sha256(bytes);

test("a manifest is read when the layout's file has the descriptor's size and digest", async () => {
  const dir = await layout([[digest, bytes]]);
  assert.deepEqual(await readLayoutManifest(dir, { mediaType: MT, digest, size: bytes.length }), bytes);
  assert.equal(await inLayout(dir, digest), true);
});

test("a manifest whose file is not the descriptor's bytes is DIGEST_MISMATCH (another size, or other bytes of that size)", async () => {
  const other = Buffer.from('{"schemaVersion":3}');
  const dir = await layout([[digest, other]]);
  assert.equal(await codeOf(readLayoutManifest(dir, { mediaType: MT, digest, size: bytes.length })), 'DIGEST_MISMATCH');
  assert.equal(await codeOf(readLayoutManifest(dir, { mediaType: MT, digest, size: bytes.length + 1 })), 'DIGEST_MISMATCH');
});

test('a manifest over MANIFEST_MAX_BYTES is refused before it is read; one not in the layout is MANIFEST_UNKNOWN', async () => {
  const dir = await layout([]);
  assert.equal(await codeOf(readLayoutManifest(dir, { mediaType: MT, digest, size: MANIFEST_MAX_BYTES + 1 })), 'MANIFEST_TOO_LARGE');
  assert.equal(await codeOf(readLayoutManifest(dir, { mediaType: MT, digest, size: bytes.length })), 'MANIFEST_UNKNOWN');
  assert.equal(await inLayout(dir, digest), false);
});

test('objects are never read through a symlink', async () => {
  const dir = await layout([]);
  const elsewhere = await layout([[digest, bytes]]);
  await mkdir(dirname(blobPath(dir, digest)), { recursive: true });
  await symlink(blobPath(elsewhere, digest), blobPath(dir, digest));
  assert.equal(await codeOf(readLayoutManifest(dir, { mediaType: MT, digest, size: bytes.length })), 'MANIFEST_UNKNOWN');
  assert.equal(await codeOf(openLayoutBlob(dir, digest)), 'BLOB_UNKNOWN');
});

test('a blob is opened from the layout; one not there is BLOB_UNKNOWN', async () => {
  const dir = await layout([[digest, bytes]]);
  const fh = await openLayoutBlob(dir, digest);
  try {
    assert.deepEqual(await fh.readFile(), bytes);
  } finally {
    await fh.close();
  }
  assert.equal(await codeOf(openLayoutBlob(dir, sha256(Buffer.from('absent')))), 'BLOB_UNKNOWN');
});
