import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, test } from 'node:test';
import { sha256 } from '../../test/helpers/digest.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import type { RecordRef } from './catalog-keys.js';

// What the content store and its catalog tell a listener (replication into a shared bucket):
// each object committed, by either write path, and each record written — after the fact, and a
// listener that throws never breaks a write.

const blob = (n: number, size: number): Buffer => Buffer.alloc(size, n);

describe('content store commit listeners', () => {
  test('putBytes and a streaming write each report the committed object with its size; an object stored already is not reported again', async () => {
    const s = await tempStore();
    try {
      const seen: Array<[string, number]> = [];
      const onDisk: Array<Promise<boolean>> = [];
      s.content.onCommit((d, size) => {
        onDisk.push(s.content.onDisk(d)); // reported once the file is in place
        seen.push([d, size]);
      });
      const a = blob(1, 1000);
      await s.content.putBytes(sha256(a), a);
      await s.content.putBytes(sha256(a), a);
      const b = blob(2, 300_000);
      const w = s.content.beginWrite(sha256(b), b.length);
      assert.equal(w.kind, 'writer');
      if (w.kind !== 'writer') return;
      await pipeline(Readable.from([b.subarray(0, 1000), b.subarray(1000)]), w.writer);
      await w.done;
      assert.deepEqual(seen, [
        [sha256(a), 1000],
        [sha256(b), 300_000],
      ]);
      assert.deepEqual(await Promise.all(onDisk), [true, true]);
    } finally {
      await s.close();
    }
  });

  test('a write that fails its digest check is not reported', async () => {
    const s = await tempStore();
    try {
      const seen: string[] = [];
      s.content.onCommit((d) => seen.push(d));
      const w = s.content.beginWrite(sha256(blob(1, 10)), 10);
      if (w.kind !== 'writer') assert.fail('expected the writer');
      await pipeline(Readable.from([blob(2, 10)]), w.writer).catch(() => {});
      await assert.rejects(w.done);
      assert.deepEqual(seen, []);
    } finally {
      await s.close();
    }
  });

  test('a listener that throws does not fail the write, and later listeners still hear of it', async () => {
    const s = await tempStore();
    try {
      const seen: string[] = [];
      s.content.onCommit(() => {
        throw new Error('listener bug');
      });
      s.content.onCommit((d) => seen.push(d));
      const a = blob(3, 100);
      await s.content.putBytes(sha256(a), a);
      assert.ok(await s.content.has(sha256(a)));
      assert.deepEqual(seen, [sha256(a)]);
    } finally {
      await s.close();
    }
  });
});

describe('catalog record listeners', () => {
  test('each record written is reported with its ref and value; a listener that throws does not fail the write', async () => {
    const s = await tempStore();
    try {
      const seen: Array<[RecordRef, unknown]> = [];
      s.catalog.onRecord(() => {
        throw new Error('listener bug');
      });
      s.catalog.onRecord((ref, value) => seen.push([ref, value]));
      const m = Buffer.from('{"schemaVersion":2}');
      await s.catalog.putManifest('hub', 'library/x', sha256(m), 'application/vnd.oci.image.manifest.v1+json', m);
      await s.catalog.noteBlob('hub', 'library/x', sha256(blob(4, 10)), sha256(m));
      assert.deepEqual(seen, [
        [{ kind: 'manifest', upstream: 'hub', repository: 'library/x', digest: sha256(m) }, { mediaType: 'application/vnd.oci.image.manifest.v1+json', size: m.length }],
        [{ kind: 'blob', upstream: 'hub', repository: 'library/x', digest: sha256(blob(4, 10)) }, { namedBy: [sha256(m)] }],
      ]);
      assert.ok(await s.catalog.hasManifestRecord('hub', 'library/x', sha256(m)));
    } finally {
      await s.close();
    }
  });
});
