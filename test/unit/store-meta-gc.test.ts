import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { Digest } from '../../src/oci/digest.js';
import { Catalog } from '../../src/store/catalog.js';
import { CATALOG_NAMESPACES, catalogSubject } from '../../src/store/catalog-keys.js';
import { ContentStore } from '../../src/store/content-store.js';
import { Layout } from '../../src/store/layout.js';
import { META_MAX_BYTES, META_SWEEP_BATCH_FILES, META_SWEEP_MIN_INTERVAL_MS } from '../../src/store/limits.js';
import { MetaStore } from '../../src/store/meta.js';
import type { MetaSweepHooks } from '../../src/store/meta.js';
import { tempDir } from '../helpers/temp.js';
import { sha256, sha256Hex } from '../helpers/digest.js';
import { fakeClock } from '../helpers/clock.js';

// The metadata sweep: documents about objects no longer stored are removed (eviction, prune),
// the rest stays, including whatever is written while a sweep runs. Real files in temp dirs.

const fileName = (key: string): string => `${sha256Hex(key)}.json`;
const SECOND = 1000;
const UNSIGNED = { outcome: { kind: 'unsigned', checks: [] }, decidedAt: 1 } as const;

const freshDir = (): Promise<string> => tempDir('sigil-meta-gc');

/** A pino logger whose records the test reads back, parsed. */
function recordingLogger() {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void lines.push(s) });
  return { logger, records: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

/** Writes a metadata document the way MetaStore does (without fsync: many, quickly). */
async function writeDoc(dir: string, ns: string, key: string, value: unknown, updated: number): Promise<string> {
  await mkdir(join(dir, 'meta', ns), { recursive: true });
  const path = join(dir, 'meta', ns, fileName(key));
  await writeFile(path, JSON.stringify({ key, updated, value }));
  return path;
}

async function exists(path: string): Promise<boolean> {
  return readFile(path).then(
    () => true,
    () => false,
  );
}

async function sweepTemps(dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'tmp'))).filter((n) => n.startsWith('meta-sweep'));
}

/** Every catalog document of one object (`digest`) in one repository. */
async function catalogDocs(catalog: Catalog, upstream: string, repo: string, digest: Digest, bytes: Buffer, tag: string): Promise<void> {
  await catalog.putManifest(upstream, repo, digest, 'application/vnd.oci.image.manifest.v1+json', bytes);
  await catalog.putTag(upstream, repo, tag, { digest, mediaType: 'application/vnd.oci.image.manifest.v1+json' });
  await catalog.putReferrers(upstream, repo, digest, [{ digest: sha256(Buffer.from(`ref of ${digest}`)) }]);
  await catalog.putVerdict(upstream, repo, digest, 'fp', UNSIGNED);
}

/** Whether the catalog holds the verdict on `digest` in `repo` under policy fingerprint `fp`. */
async function hasVerdict(catalog: Catalog, upstream: string, repo: string, digest: Digest, fp: string): Promise<boolean> {
  return (await catalog.records('verdict')).some((v) => v.ref.upstream === upstream && v.ref.repository === repo && v.ref.digest === digest && v.ref.policyFingerprint === fp);
}

describe('catalogSubject: which object a document is about', () => {
  const d = sha256(Buffer.from('x'));
  const e = sha256(Buffer.from('y'));
  test('keys and values of each namespace', () => {
    assert.deepEqual([...CATALOG_NAMESPACES], ['tag', 'manifest', 'blob', 'referrers', 'verdict']);
    assert.equal(catalogSubject('tag', 'reg.test/a/b:1.0', { digest: d, mediaType: 'x' }), d);
    assert.equal(catalogSubject('manifest', `reg.test/a/b@${d}`, { mediaType: 'x', size: 1 }), d);
    assert.equal(catalogSubject('blob', `reg.test/a/b@${d}`, 1), d);
    assert.equal(catalogSubject('referrers', `reg.test/a/b@${d}`, []), d);
    // the digest before the first '|': an '@' in the policy fingerprint does not count
    assert.equal(catalogSubject('verdict', `reg.test/a/b@${d}|x@${e}`, {}), d);
  });
  test('what does not parse names no object', () => {
    assert.equal(catalogSubject('tag', 'reg.test/a/b:1.0', { digest: 'sha256:short' }), undefined);
    assert.equal(catalogSubject('tag', 'reg.test/a/b:1.0', null), undefined);
    assert.equal(catalogSubject('tag', 'reg.test/a/b:1.0', 'text'), undefined);
    assert.equal(catalogSubject('manifest', d, {}), undefined); // no '@'
    assert.equal(catalogSubject('blob', `reg.test/a/b@${d}x`, 1), undefined);
    assert.equal(catalogSubject('verdict', `reg.test/a/b@${d}`, {}), undefined); // no '|'
    assert.equal(catalogSubject('tags', `reg.test/a/b@${d}`, {}), undefined); // not a catalog namespace
  });
});

describe('metadata sweep', () => {
  test('eviction: the documents of evicted objects go, those of stored objects stay, whatever their repository', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const log = recordingLogger();
    const store = await ContentStore.open({ dir, maxBytes: 2000, now: clock.now, logger: log.logger });
    const catalog = new Catalog(store);
    const gone = randomBytes(1000);
    const goneBlob = randomBytes(500);
    const kept = randomBytes(1000);
    const [g, gb, k] = [sha256(gone), sha256(goneBlob), sha256(kept)];
    await catalogDocs(catalog, 'reg.test', 'team/app', g, gone, 'old');
    await store.putBytes(gb, goneBlob);
    await catalog.noteBlob('reg.test', 'team/app', gb);
    clock.advance(SECOND);
    await catalogDocs(catalog, 'reg.test', 'team/app', k, kept, 'new');
    // the same stored digest in another repository and another upstream; and a verdict whose
    // policy fingerprint holds an '@' and the evicted digest
    await catalogDocs(catalog, 'reg.test', 'other/app', k, kept, 'new');
    await catalogDocs(catalog, 'mirror.test', 'team/app', k, kept, 'new');
    await catalog.putVerdict('reg.test', 'team/app', k, `policy@${g}`, UNSIGNED);
    await catalog.noteBlob('mirror.test', 'team/app', gb);
    clock.advance(SECOND);
    // over 2000 bytes: the least recently used (gone and goneBlob) are evicted
    await store.putBytes(sha256(Buffer.alloc(1000)), Buffer.alloc(1000));
    await store.idle();
    assert.equal(await store.has(g), false);
    assert.equal(await store.has(gb), false);
    assert.equal(await store.has(k), true);

    clock.advance(SECOND);
    const r = await store.sweepMeta();
    // g: manifest, tag, referrers, verdict; gb: two blob records
    assert.deepEqual(r, { scanned: 19, removed: 6 });
    assert.equal(await catalog.getManifest('reg.test', 'team/app', g), null);
    assert.equal(await store.getMeta('manifest', `reg.test/team/app@${g}`), null);
    assert.equal(await catalog.getTag('reg.test', 'team/app', 'old'), null);
    assert.equal(await catalog.getReferrers('reg.test', 'team/app', g), null);
    assert.equal(await hasVerdict(catalog, 'reg.test', 'team/app', g, 'fp'), false);
    assert.equal(await store.getMeta('blob', `reg.test/team/app@${gb}`), null);
    assert.equal(await store.getMeta('blob', `mirror.test/team/app@${gb}`), null);
    for (const [up, repo] of [['reg.test', 'team/app'], ['reg.test', 'other/app'], ['mirror.test', 'team/app']] as const) {
      assert.ok(await catalog.getManifest(up, repo, k), `${up}/${repo}`);
      assert.equal((await catalog.getTag(up, repo, 'new'))?.value.digest, k);
      assert.ok(await catalog.getReferrers(up, repo, k));
      assert.ok(await hasVerdict(catalog, up, repo, k, 'fp'));
    }
    assert.ok(await hasVerdict(catalog, 'reg.test', 'team/app', k, `policy@${g}`));
    const info = log.records().filter((l) => l.msg === 'content store: removed the metadata of objects no longer stored');
    assert.deepEqual(info.map((l) => [l.level, l.scanned, l.removed]), [[30, 19, 6]]);
    assert.deepEqual(await sweepTemps(dir), []);
    // nothing left to do: a second sweep removes nothing and logs nothing more
    clock.advance(SECOND);
    assert.deepEqual(await store.sweepMeta(), { scanned: 13, removed: 0 });
    assert.equal(log.records().filter((l) => l.msg === 'content store: removed the metadata of objects no longer stored').length, 1);
    await store.close();
  });

  test('garbage in meta/ is left alone, with a debug record; the sweep goes on', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const log = recordingLogger();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now, logger: log.logger, sweepMetaAtOpen: false });
    const absent = sha256(Buffer.from('absent'));
    const old = clock.now() - SECOND;
    const mdir = join(dir, 'meta', 'manifest');
    const garbage: string[] = [];
    garbage.push(await writeDoc(dir, 'manifest', 'no-at-sign', {}, old));
    garbage.push(await writeDoc(dir, 'manifest', `reg.test/a@${absent.slice(0, -1)}`, {}, old)); // not a digest
    garbage.push(await writeDoc(dir, 'verdict', `reg.test/a@${absent}`, {}, old)); // no '|'
    garbage.push(await writeDoc(dir, 'tag', 'reg.test/a:1', { mediaType: 'x' }, old)); // no digest
    garbage.push(await writeDoc(dir, 'tag', 'reg.test/a:2', null, old));
    await mkdir(mdir, { recursive: true });
    const put = async (name: string, text: string | Buffer): Promise<void> => {
      await writeFile(join(mdir, name), text);
      garbage.push(join(mdir, name));
    };
    await put('junk.txt', 'x');
    await put(fileName('not json'), '{');
    await put(fileName('null'), 'null');
    await put(fileName('array'), '[1,2]');
    await put(fileName('no updated'), JSON.stringify({ key: 'no updated', value: 1 }));
    await put(fileName('updated text'), JSON.stringify({ key: 'updated text', updated: 'yesterday', value: 1 }));
    // a well-formed document under another key's name (its key does not hash to the name)
    await put(fileName('elsewhere'), JSON.stringify({ key: `reg.test/a@${absent}`, updated: old, value: {} }));
    await put(fileName('oversized'), Buffer.alloc(META_MAX_BYTES + 1, 0x20));
    await mkdir(join(mdir, fileName('a directory')));
    garbage.push(join(mdir, fileName('a directory')));
    const target = await writeDoc(dir, 'other-ns', `reg.test/a@${absent}`, {}, old); // not a catalog namespace
    garbage.push(target);
    await symlink(target, join(mdir, fileName(`reg.test/a@${absent}`)));
    garbage.push(join(mdir, fileName(`reg.test/a@${absent}`)));
    execFileSync('mkfifo', [join(mdir, fileName('fifo'))]); // opening it must not block the sweep
    garbage.push(join(mdir, fileName('fifo')));
    await writeFile(join(dir, 'meta', 'stray-file'), 'x');
    garbage.push(join(dir, 'meta', 'stray-file'));
    // and one document the sweep must remove
    const doomed = await writeDoc(dir, 'blob', `reg.test/a@${absent}`, 1, old);

    const r = await store.sweepMeta();
    assert.equal(r.removed, 1);
    assert.equal(r.scanned, 17);
    assert.equal(await exists(doomed), false);
    for (const g of garbage) {
      const there = await readdir(join(g, '..')).then((names) => names.includes(g.slice(g.lastIndexOf('/') + 1)));
      assert.ok(there, g);
    }
    const left = log.records().filter((l) => l.msg === 'content store: metadata sweep left a file alone');
    assert.ok(left.every((l) => l.level === 20));
    const why = new Set(left.map((l) => l.why));
    for (const w of ['not a metadata file name', 'not JSON', 'not a metadata document', 'its key does not hash to its name', `over ${META_MAX_BYTES} bytes`, 'not a regular file', 'a symbolic link', 'no object digest in its key or value']) {
      assert.ok(why.has(w), w);
    }
    assert.equal(log.records().filter((l) => (l.level as number) >= 40).length, 0);
    await store.close();
  });

  test('a document written while a sweep runs stays, with its object', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now, sweepMetaAtOpen: false });
    const catalog = new Catalog(store);
    const old = clock.now() - SECOND;
    const n = META_SWEEP_BATCH_FILES * 3;
    for (let i = 0; i < n; i++) await writeDoc(dir, 'blob', `reg.test/a@${sha256(Buffer.from(`gone ${i}`))}`, 1, old);
    // about to arrive: its old document is in the directory the sweep lists
    const arriving = randomBytes(100);
    const a = sha256(arriving);
    await writeDoc(dir, 'blob', `reg.test/a@${a}`, 1, old);
    clock.advance(SECOND);
    const sweep = store.sweepMeta();
    while ((await readdir(join(dir, 'meta', 'blob'))).length > n - 10) await nextTurn();
    await store.putBytes(a, arriving);
    await catalog.noteBlob('reg.test', 'a', a);
    // written during the sweep for an object that is not (yet) stored: newer than the sweep, it stays
    const pending = sha256(Buffer.from('pending'));
    await catalog.noteBlob('reg.test', 'a', pending);
    const r = await sweep;
    assert.equal(await catalog.hasBlob('reg.test', 'a', a), true);
    assert.ok(await store.getMeta('blob', `reg.test/a@${pending}`));
    assert.ok(r.removed >= n && r.removed <= n + 1, String(r.removed)); // `a`'s old document may have gone before it was rewritten
    assert.deepEqual((await readdir(join(dir, 'meta', 'blob'))).sort(), [fileName(`reg.test/a@${a}`), fileName(`reg.test/a@${pending}`)].sort());
    await store.close();
  });

  test('a document replaced, or whose object arrives, between the check and the removal is put back', async () => {
    const dir = await freshDir();
    const layout = new Layout(dir);
    await layout.create();
    const clock = fakeClock();
    const meta = new MetaStore(layout, clock.now, undefined);
    const d = sha256(Buffer.from('d'));
    const keyOf = (name: string): string => `reg.test/${name}@${d}`;
    const run = async (stored: (call: number) => Promise<boolean>) => {
      let calls = 0;
      const hooks: MetaSweepHooks = {
        namespaces: ['blob'],
        subject: catalogSubject,
        stored: () => stored(++calls),
        serial: (fn) => fn(),
        stopped: () => false,
      };
      return meta.sweep(hooks, clock.now());
    };

    // 1. replaced after it was read, before it was claimed: the claimed file is the new one
    await meta.put('blob', keyOf('replaced'), 'old');
    clock.advance(SECOND);
    let r = await run(async (call) => {
      if (call === 1) await meta.put('blob', keyOf('replaced'), 'new');
      return false;
    });
    assert.deepEqual(r, { scanned: 1, removed: 0 });
    assert.equal((await meta.get('blob', keyOf('replaced')))?.value, 'new');
    await meta.delete('blob', keyOf('replaced'));

    // 2. its object is stored between the claim and the removal
    await meta.put('blob', keyOf('arrived'), 1);
    clock.advance(SECOND);
    r = await run(async (call) => call > 1);
    assert.deepEqual(r, { scanned: 1, removed: 0 });
    assert.equal((await meta.get('blob', keyOf('arrived')))?.value, 1);
    await meta.delete('blob', keyOf('arrived'));

    // 3. ... and a newer document written meanwhile: that one stays, not the claimed one
    await meta.put('blob', keyOf('rewritten'), 'claimed');
    clock.advance(SECOND);
    r = await run(async (call) => {
      if (call === 1) return false;
      await meta.put('blob', keyOf('rewritten'), 'newer');
      return true;
    });
    assert.deepEqual(r, { scanned: 1, removed: 0 });
    assert.equal((await meta.get('blob', keyOf('rewritten')))?.value, 'newer');

    // 4. still absent at both checks: removed
    clock.advance(SECOND);
    r = await run(async () => false);
    assert.deepEqual(r, { scanned: 1, removed: 1 });
    assert.equal(await meta.get('blob', keyOf('rewritten')), null);
    assert.deepEqual(await readdir(layout.tmpDir), []);
  });

  test('automatic sweeps: after an eviction that removed objects, at most every META_SWEEP_MIN_INTERVAL_MS', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const log = recordingLogger();
    const store = await ContentStore.open({ dir, maxBytes: 1000, now: clock.now, logger: log.logger });
    await store.idle(); // the sweep at open: nothing to do
    const catalog = new Catalog(store);
    const blob = async (label: string, size: number): Promise<Digest> => {
      const bytes = Buffer.alloc(size, label);
      const d = sha256(bytes);
      await store.putBytes(d, bytes);
      await catalog.noteBlob('reg.test', 'a', d);
      return d;
    };
    const noted = async (d: Digest): Promise<boolean> => (await store.getMeta('blob', `reg.test/a@${d}`)) !== null;
    const sweeps = (): number => log.records().filter((l) => l.msg === 'content store: removed the metadata of objects no longer stored').length;

    clock.advance(SECOND);
    const a = await blob('a', 600);
    clock.advance(SECOND);
    const b = await blob('b', 600); // evicts a
    await store.idle();
    assert.equal(await store.has(a), false);
    assert.equal(await noted(a), true, 'within the interval of the sweep at open: no sweep');

    clock.advance(META_SWEEP_MIN_INTERVAL_MS);
    await blob('c', 10); // the first write after the interval sweeps what is owed
    await store.idle();
    assert.equal(await noted(a), false);
    assert.equal(await noted(b), true);
    assert.equal(sweeps(), 1);

    clock.advance(SECOND);
    await blob('d', 600); // evicts b; the last sweep was a second ago
    await store.idle();
    assert.equal(await store.has(b), false);
    assert.equal(await noted(b), true);
    clock.advance(META_SWEEP_MIN_INTERVAL_MS - 2 * SECOND);
    await blob('e', 10);
    await store.idle();
    assert.equal(await noted(b), true, 'still within the interval');
    clock.advance(2 * SECOND);
    await store.evict(); // removes nothing, but the sweep owed since b's eviction is now due
    await store.idle();
    assert.equal(await noted(b), false);
    assert.equal(sweeps(), 2);

    // nothing removed since: no sweep, however long after
    clock.advance(10 * META_SWEEP_MIN_INTERVAL_MS);
    const planted = await writeDoc(dir, 'blob', `reg.test/a@${sha256(Buffer.from('never stored'))}`, 1, clock.now() - SECOND);
    await blob('f', 10);
    await store.idle();
    assert.equal(await exists(planted), true);
    assert.equal(sweeps(), 2);
    await store.close();
  });

  test('at open, after the initial eviction; not when sweepMetaAtOpen is false', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    let store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now });
    const catalog = new Catalog(store);
    const olds: Digest[] = [];
    for (let i = 0; i < 3; i++) {
      const bytes = Buffer.alloc(400, `old ${i}`);
      olds.push(sha256(bytes));
      await store.putBytes(olds[i], bytes);
      await catalog.noteBlob('reg.test', 'a', olds[i]);
      clock.advance(SECOND);
    }
    const fresh = Buffer.alloc(400, 'fresh');
    await store.putBytes(sha256(fresh), fresh);
    await catalog.noteBlob('reg.test', 'a', sha256(fresh));
    // an object removed behind the store's back (another process, an operator)
    await rm(join(dir, 'blobs', 'sha256', olds[2].slice(7)));
    await store.close();

    clock.advance(SECOND);
    store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now, sweepMetaAtOpen: false });
    await store.idle();
    assert.ok(await store.getMeta('blob', `reg.test/a@${olds[2]}`));
    await store.close();

    clock.advance(SECOND);
    store = await ContentStore.open({ dir, maxBytes: 500, now: clock.now }); // keeps only `fresh`
    await store.idle();
    for (const d of olds) assert.equal(await store.getMeta('blob', `reg.test/a@${d}`), null, d);
    assert.ok(await store.getMeta('blob', `reg.test/a@${sha256(fresh)}`));
    await store.close();
  });

  test('one sweep at a time; close() waits for the running one, which stops early, and nothing is written after', async () => {
    const dir = await freshDir();
    const clock = fakeClock();
    const store = await ContentStore.open({ dir, maxBytes: 1 << 20, now: clock.now, sweepMetaAtOpen: false });
    const n = META_SWEEP_BATCH_FILES * 8;
    for (let i = 0; i < n; i++) await writeDoc(dir, 'referrers', `reg.test/a@${sha256(Buffer.from(String(i)))}`, [], clock.now());
    clock.advance(SECOND);
    const first = store.sweepMeta();
    assert.equal(store.sweepMeta(), first, 'calls before it starts share it');
    const metaDir = join(dir, 'meta', 'referrers');
    while ((await readdir(metaDir)).length === n) await nextTurn();
    const second = store.sweepMeta(); // queued behind the running one
    assert.notEqual(first, second);
    assert.equal(store.sweepMeta(), second, 'calls while one is queued share it');
    let settled = 0;
    void first.then(() => settled++);
    void second.then(() => settled++);
    await store.close();
    assert.equal(settled, 2);
    const r1 = await first;
    const r2 = await second;
    const left = await readdir(metaDir);
    assert.ok(left.length > 0, 'stopped before the end');
    assert.equal(r1.removed + r2.removed, n - left.length);
    assert.deepEqual(await sweepTemps(dir), []);
    await sleep(50);
    assert.deepEqual((await readdir(metaDir)).sort(), left.sort());
    await assert.rejects(store.sweepMeta(), /closed/);
  });
});
