import assert from 'node:assert/strict';
import { readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { cacheCommand } from '../../src/cli/cache.js';
import type { CliIo } from '../../src/cli/io.js';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog, ContentStore } from '../../src/store/index.js';
import { tempDir } from '../helpers/temp.js';
import { sha256 } from '../helpers/digest.js';

// `sigil cache ls` leaves metadata alone (it lists what is there); `sigil cache prune` removes the
// records of what it prunes and sweeps those of objects evicted earlier, and says how many.
const DAY = 86_400_000;
const MT = 'application/vnd.oci.image.manifest.v1+json';

let dir: string;
let storeDir: string;
let cfg: string;

function capture(): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return { io: { env: {}, cwd: dir, stdout: (t) => void (out += t), stderr: (t) => void (err += t) }, out: () => out, err: () => err };
}

/** An image (manifest, config, layer) stored under `repo:tag` with its catalog records; its digests. */
async function storeImage(store: ContentStore, catalog: Catalog, repo: string, tag: string, seed: string): Promise<{ manifest: Digest; blobs: Digest[] }> {
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', seed }));
  const layer = Buffer.from(`layer of ${seed}`);
  const desc = (mediaType: string, b: Buffer) => ({ mediaType, digest: sha256(b), size: b.length });
  const manifest = Buffer.from(
    JSON.stringify({ schemaVersion: 2, mediaType: MT, config: desc('application/vnd.oci.image.config.v1+json', config), layers: [desc('application/vnd.oci.image.layer.v1.tar', layer)] }),
  );
  for (const b of [config, layer]) {
    await store.putBytes(sha256(b), b);
    await catalog.noteBlob('reg.test', repo, sha256(b));
  }
  await catalog.putManifest('reg.test', repo, sha256(manifest), MT, manifest);
  await catalog.putTag('reg.test', repo, tag, { digest: sha256(manifest), mediaType: MT });
  await catalog.putVerdict('reg.test', repo, sha256(manifest), 'fp', { outcome: { kind: 'unsigned', checks: [] }, decidedAt: Date.now() });
  return { manifest: sha256(manifest), blobs: [sha256(config), sha256(layer)] };
}

async function metaFiles(): Promise<number> {
  let n = 0;
  for (const ns of await readdir(join(storeDir, 'meta'))) n += (await readdir(join(storeDir, 'meta', ns))).length;
  return n;
}

describe('sigil cache and the metadata of objects no longer stored', () => {
  let kept: { manifest: Digest; blobs: Digest[] };
  let aged: { manifest: Digest; blobs: Digest[] };
  let evicted: { manifest: Digest; blobs: Digest[] };

  before(async () => {
    dir = await tempDir('sigil-meta-gc-cli');
    storeDir = join(dir, 'store');
    cfg = join(dir, 'sigil.yaml');
    await writeFile(
      cfg,
      [
        'upstreams:',
        '  - name: reg.test',
        '    url: http://127.0.0.1:9', // never contacted: the cache commands work on the store only
        'defaultUpstream: reg.test',
        'policies:',
        '  - name: all',
        '    match: ["reg.test/**"]',
        '    mode: "off"',
        'cache:',
        '  store:',
        `    dir: ${storeDir}`,
        '    maxBytes: 1073741824',
        '',
      ].join('\n'),
    );
    const store = await ContentStore.open({ dir: storeDir, maxBytes: Number.MAX_SAFE_INTEGER });
    const catalog = new Catalog(store);
    kept = await storeImage(store, catalog, 'team/kept', '1.0', 'kept');
    aged = await storeImage(store, catalog, 'team/aged', '1.0', 'aged');
    evicted = await storeImage(store, catalog, 'team/evicted', '1.0', 'evicted');
    await store.close();
    // `evicted` went behind the cache's back (another sigil process sharing the directory evicted it)
    for (const d of [evicted.manifest, ...evicted.blobs]) await rm(join(storeDir, 'blobs', 'sha256', d.slice(7)));
    const t = (Date.now() - 30 * DAY) / 1000;
    for (const d of [aged.manifest, ...aged.blobs]) await utimes(join(storeDir, 'blobs', 'sha256', d.slice(7)), t, t);
  });

  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('cache ls does not sweep: it lists what is there', async () => {
    const before = await metaFiles();
    assert.equal(before, 15); // per image: tag, manifest, verdict, 2 blob records
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['ls', '--config', cfg, '--json']), 0, c.err());
    const inv = JSON.parse(c.out()) as { tags: Array<{ ref: string; objects: number; complete: boolean }> };
    assert.deepEqual(
      inv.tags.map((t) => [t.ref, t.objects, t.complete]),
      [
        ['reg.test/team/aged:1.0', 3, true],
        ['reg.test/team/evicted:1.0', 0, false],
        ['reg.test/team/kept:1.0', 3, true],
      ],
    );
    assert.equal(await metaFiles(), before);
  });

  test('cache prune removes the records of what it prunes and of what was evicted, and says how many', async () => {
    const c = capture();
    assert.equal(await cacheCommand(c.io, ['prune', '--older-than', '7d', '--config', cfg]), 0, c.err());
    assert.match(c.out(), /^removed reg\.test\/team\/aged:1\.0$/m);
    assert.match(c.out(), /^pruned \d+ tag\(s\), 3 object\(s\), .*; 3 object\(s\), .* remain$/m);
    assert.match(c.out(), /^removed 10 metadata record\(s\) of objects no longer stored$/m);
    assert.equal(await metaFiles(), 5);
    const store = await ContentStore.open({ dir: storeDir, maxBytes: Number.MAX_SAFE_INTEGER, sweepMetaAtOpen: false });
    try {
      const catalog = new Catalog(store);
      assert.equal((await catalog.getTag('reg.test', 'team/kept', '1.0'))?.value.digest, kept.manifest);
      assert.ok(await catalog.getManifest('reg.test', 'team/kept', kept.manifest));
      const verdicts = (await catalog.records('verdict')).map((v) => `${v.ref.repository}@${v.ref.digest}|${v.ref.policyFingerprint}`);
      assert.deepEqual(verdicts, [`team/kept@${kept.manifest}|fp`], 'only the verdict of the image still stored');
      for (const b of kept.blobs) assert.equal(await catalog.hasBlob('reg.test', 'team/kept', b), true);
      assert.equal(await catalog.getTag('reg.test', 'team/evicted', '1.0'), null);
    } finally {
      await store.close();
    }
    // again: nothing left to remove, and --json carries the sweep's own counts
    const j = capture();
    assert.equal(await cacheCommand(j.io, ['prune', '--older-than', '7d', '--config', cfg, '--json']), 0, j.err());
    const summary = JSON.parse(j.out()) as { removedObjects: number; removedRecords: number; metaSwept: { scanned: number; removed: number } };
    assert.deepEqual([summary.removedObjects, summary.removedRecords, summary.metaSwept], [0, 0, { scanned: 5, removed: 0 }]);
  });
});
