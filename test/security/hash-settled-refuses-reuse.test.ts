import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import { HashPool } from '../../src/hash/hash-pool.js';
import { RING_BYTES } from '../../src/hash/ring.js';
import { sha256Hex } from '../helpers/digest.js';

// Guards a latent defect (BlobCheck itself calls digest() once and never update() after
// it, so no HTTP path reaches it today): a RingHash keeps its SharedArrayBuffer after
// digest() has released it to the pool's free list. A second digest() (or an update())
// on the settled hash acts on whichever stream reuses that ring next: here it finalizes
// the other stream's job early and returns the digest of the other stream's bytes, and the
// other stream then fails. A digest reported for bytes that are not this stream's is
// exactly what the ring must never produce; the settled hash should refuse.

const pools: HashPool[] = [];
after(async () => {
  for (const p of pools) await p.close();
});

test('a hash that already gave its digest refuses a second digest(), it never reports another stream\'s bytes', async () => {
  const p = new HashPool({ size: 1 });
  pools.push(p);
  const mine = randomBytes(RING_BYTES + 10);
  const first = p.start('sha256');
  await first.update(mine);
  assert.equal(await first.digest(), sha256Hex(mine));

  const theirs = randomBytes(100_000);
  const second = p.start('sha256'); // takes the ring `first` released
  assert.equal(second.update(theirs), undefined);

  const again = await first.digest().then(
    (hex) => ({ hex }),
    (err: unknown) => ({ err }),
  );
  const theirHex = sha256Hex(theirs);
  assert.ok('err' in again, `the settled hash answered ${'hex' in again ? again.hex : ''}${'hex' in again && again.hex === theirHex ? " (the other stream's digest)" : ''}`);
  assert.equal(await second.digest(), theirHex, 'the other stream is unaffected');
});
