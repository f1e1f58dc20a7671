import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, test } from 'node:test';
import { isSigilError } from '../../src/errors.js';
import { behindDownload } from '../../src/registry/behind-download.js';
import { READ_CHUNK_BYTES, VERIFY_AHEAD_MAX_BYTES } from '../../src/store/index.js';
import { FakeRegistry, silentLogger } from '../helpers/fake-registry.js';
import { neverServedComplete, overwrite, readThrough, removeStores, sha256, storeWith } from '../helpers/trusted-store.js';

// The store hashes a download as the writer hands it the bytes; the requests reading behind it
// read them back from the temp file on disk, where someone who can write the store's directory
// may change them after the writer hashed them. What must hold: such bytes are never served
// complete — neither to the requests reading behind the download (a follower that reads the file back hashes what it delivers,
// store/follower.ts), nor later from the committed object (its first read hashes it).

const SIZE = VERIFY_AHEAD_MAX_BYTES + 5 * READ_CHUNK_BYTES + 123;

after(removeStores);

test('bytes changed in the temp file of a download are never served complete, behind the download or from the object', async () => {
  const bytes = randomBytes(SIZE);
  const { store, dir } = await storeWith(randomBytes(10));
  try {
    const digest = sha256(bytes);
    const w = store.beginWrite(digest, SIZE);
    const f = store.beginWrite(digest, SIZE);
    assert.ok(w.kind === 'writer' && f.kind === 'follower');
    await w.opened;
    const up = new FakeRegistry();
    up.blobs.set(digest, bytes);
    const body = behindDownload(up, { repository: 'app', digest, size: SIZE }, f.stream, { logger: silentLogger() });
    const half = SIZE >> 1;
    await new Promise<void>((resolve, reject) => w.writer.write(bytes.subarray(0, half), (err) => (err ? reject(err) : resolve())));
    const [tmp] = await readdir(join(dir, 'tmp'));
    assert.ok(tmp, 'the temp file');
    while ((await stat(join(dir, 'tmp', tmp))).size < half) await sleep(5);
    // bytes the writer hashed already, further than the paused reader has read
    await overwrite(join(dir, 'tmp', tmp), half - 100, randomBytes(16));
    let error: unknown;
    body.once('error', (err) => (error = err));
    const reading = readThrough(body);
    w.writer.end(bytes.subarray(half));
    await w.done; // the writer hashed what it was given: it commits
    const r = await reading;
    assert.ok(!r.complete && r.bytes.length < SIZE, `behind the download: received ${r.bytes.length} of ${SIZE}, complete: ${r.complete}`);
    assert.ok(isSigilError(error) && error.code === 'DIGEST_MISMATCH', `failed with ${String(error)}`);
    assert.deepEqual(up.calls, [], 'not a disk fault: nothing fetched again');
    await neverServedComplete(store, digest, SIZE);
  } finally {
    await store.close();
  }
});
