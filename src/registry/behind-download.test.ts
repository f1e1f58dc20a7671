import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { isSigilError } from '../errors.js';
import { FakeRegistry, collect, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { behindDownload } from './behind-download.js';

const BYTES = Buffer.from('0123456789abcdefghij');
const DIGEST = sha256(BYTES);

/** The store's stream of the file being written: `first`, then `fault`. */
function follower(first: Buffer, fault: Error | null): Readable {
  return Readable.from(
    (async function* () {
      yield first;
      if (fault) throw fault;
    })(),
  );
}

const diskFault = (): Error => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });

function rig() {
  const up = new FakeRegistry();
  up.blobs.set(DIGEST, BYTES);
  return up;
}

test('a request reads the download through the store, the bytes checked', async () => {
  const up = rig();
  assert.deepEqual(await collect(behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES, null), { logger: silentLogger() })), BYTES);
  assert.deepEqual(up.calls, []);
});

test('a disk fault under the download: the rest comes from the upstream, from the first byte not had yet', async () => {
  const up = rig();
  const body = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES.subarray(0, 7), diskFault()), { logger: silentLogger() });
  assert.deepEqual(await collect(body), BYTES);
  assert.deepEqual(up.calls, [`openBlob GET bytes=7- app@${DIGEST}`]);
});

test('a fault that is not the disk\'s is the request\'s error; wrong bytes never complete', async () => {
  const up = rig();
  const other = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(BYTES.subarray(0, 7), new Error('upstream reset')), { logger: silentLogger() });
  await assert.rejects(collect(other), /upstream reset/);
  assert.deepEqual(up.calls, []);
  const wrong = Buffer.from(BYTES).fill(0x41, 3, 4);
  const bad = behindDownload(up, { repository: 'app', digest: DIGEST, size: BYTES.length }, follower(wrong, null), { logger: silentLogger() });
  await assert.rejects(collect(bad), (e) => isSigilError(e) && e.code === 'DIGEST_MISMATCH');
});
