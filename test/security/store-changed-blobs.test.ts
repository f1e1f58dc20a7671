import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { open, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { VERIFY_AHEAD_MAX_BYTES } from '../../src/store/limits.js';
import { sha256Hex } from '../helpers/digest.js';
import { drain } from '../helpers/stream.js';

// A blob file changed on disk in the content store (by a disk fault, or by someone who can write
// there) must never be served complete under its digest: it is removed, logged and counted, and
// the blob comes from the upstream again.
const UP = 'reg.test';
const SMALL = 200 * 1024; // checked before anything is served
const BIG = VERIFY_AHEAD_MAX_BYTES + 2 * 1024 * 1024; // checked as it streams, last chunk held back
const STORED_WAIT_MS = 20_000;

let registry: RegistryHandle;
let fwd: Forwarder;
const sigils: SigilHandle[] = [];

before(async () => {
  registry = await startRegistry();
  fwd = await startForwarder(registry.url);
});
after(async () => {
  for (const s of sigils) await s.stop();
  await fwd?.stop();
  await registry?.stop();
});

async function sigilOn(dir: string): Promise<SigilHandle> {
  const s = await startSigil(simpleConfig([{ name: UP, url: fwd.url }], `cache:\n  store:\n    dir: ${dir}\n    maxBytes: 1073741824\n`));
  sigils.push(s);
  return s;
}

/** What the client got; `complete` is false when the answer was cut off. */
async function getBlob(s: SigilHandle, repo: string, digest: string, headers: Record<string, string> = {}) {
  const res = await request(`${s.url}/v2/${UP}/${repo}/blobs/${digest}`, { headers, headersTimeout: 20_000, bodyTimeout: 20_000 });
  const { bytes, error } = await drain(res.body);
  return { status: res.statusCode, body: bytes, complete: error === undefined };
}

const hex = (d: string): string => d.slice('sha256:'.length);
const objectPath = (dir: string, digest: string): string => join(dir, 'blobs', 'sha256', hex(digest));
const recordPath = (dir: string, repo: string, digest: string): string =>
  join(dir, 'meta', 'blob', `${sha256Hex(`${UP}/${repo}@${digest}`)}.json`);

/** Pulls the image through sigil (manifest, then blobs) and waits until the store holds its blobs. */
async function pullAndStore(s: SigilHandle, dir: string, repo: string, img: PushedImage): Promise<void> {
  const m = await request(`${s.url}/v2/${UP}/${repo}/manifests/v1`, { headers: { accept: img.mediaType } });
  assert.equal(m.statusCode, 200);
  await m.body.dump();
  for (const l of img.layers) {
    const r = await getBlob(s, repo, l.digest);
    assert.ok(r.status === 200 && r.complete && r.body.length === l.size);
  }
  const deadline = Date.now() + STORED_WAIT_MS;
  while (!img.layers.every((l) => existsSync(objectPath(dir, l.digest)) && existsSync(recordPath(dir, repo, l.digest)))) {
    if (Date.now() > deadline) throw new Error('the blobs were not stored');
    await sleep(50);
  }
}

/** Overwrites the stored file in place (same inode) with `bytes`, and cuts it to their length. */
async function overwrite(path: string, bytes: Buffer): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    await fh.write(bytes, 0, bytes.length, 0);
    await fh.truncate(bytes.length);
  } finally {
    await fh.close();
  }
}

async function damagedCount(s: SigilHandle): Promise<number> {
  return (await s.metrics.storeDamaged.get()).values.reduce((n, v) => n + v.value, 0);
}

function loggedDamage(s: SigilHandle, dir: string, digest: string): boolean {
  return s.logs.some((l) => l.level === 40 && l.digest === digest && l.path === objectPath(dir, digest) && /does not match its digest/.test(String(l.msg)));
}

async function image(repo: string): Promise<{ img: PushedImage; small: PushedImage['layers'][number]; big: PushedImage['layers'][number] }> {
  const img = await pushImage({ url: registry.url }, repo, 'v1', { layers: [randomBytes(SMALL), randomBytes(BIG)] });
  const [small, big] = img.layers;
  assert.ok(small.size <= VERIFY_AHEAD_MAX_BYTES && big.size > VERIFY_AHEAD_MAX_BYTES);
  return { img, small, big };
}

test('a stored blob changed on disk (same length) is never served complete; it is removed and fetched from the upstream again', async () => {
  const dir = await tempDir('sigil-changed-');
  const { img, small, big } = await image('changed/same-length');
  const s = await sigilOn(dir);
  await pullAndStore(s, dir, 'changed/same-length', img);
  for (const l of [small, big]) await overwrite(objectPath(dir, l.digest), randomBytes(l.size));

  // small: found before the answer's headers, so the client gets the right bytes from the upstream
  const fetched = fwd.count('GET', `/v2/changed/same-length/blobs/${small.digest}`);
  const r1 = await getBlob(s, 'changed/same-length', small.digest);
  assert.equal(r1.status, 200);
  assert.ok(r1.complete && sha256Hex(r1.body) === hex(small.digest), 'the right bytes, from the upstream');
  assert.equal(fwd.count('GET', `/v2/changed/same-length/blobs/${small.digest}`), fetched + 1);

  // big: found as it streams, cut off before its last chunk
  const r2 = await getBlob(s, 'changed/same-length', big.digest);
  assert.ok(!r2.complete && r2.body.length < big.size, `the client received ${r2.body.length} of ${big.size} bytes, complete: ${r2.complete}`);
  assert.ok(!existsSync(objectPath(dir, big.digest)), 'the changed object is removed');
  for (const l of [small, big]) assert.ok(loggedDamage(s, dir, l.digest), `a warning names ${l.digest} and its path`);
  assert.equal(await damagedCount(s), 2);

  // the next pull fetches the right bytes from the upstream (and stores them again)
  const before = fwd.count('GET', `/v2/changed/same-length/blobs/${big.digest}`);
  const again = await getBlob(s, 'changed/same-length', big.digest);
  assert.ok(again.status === 200 && again.complete && sha256Hex(again.body) === hex(big.digest));
  assert.equal(fwd.count('GET', `/v2/changed/same-length/blobs/${big.digest}`), before + 1);
});

test('a stored blob changed on disk to another length is found before serving and fetched from the upstream', async () => {
  const dir = await tempDir('sigil-changed-');
  const { img, small, big } = await image('changed/length');
  const s = await sigilOn(dir);
  await pullAndStore(s, dir, 'changed/length', img);
  await writeFile(objectPath(dir, small.digest), randomBytes(7), { flag: 'a' }); // longer
  await truncate(objectPath(dir, big.digest), big.size - 1000); // shorter
  for (const l of [small, big]) {
    const before = fwd.count('GET', `/v2/changed/length/blobs/${l.digest}`);
    const r = await getBlob(s, 'changed/length', l.digest);
    assert.ok(r.status === 200 && r.complete && sha256Hex(r.body) === hex(l.digest), l.digest);
    assert.equal(fwd.count('GET', `/v2/changed/length/blobs/${l.digest}`), before + 1, 'fetched from the upstream');
    assert.ok(loggedDamage(s, dir, l.digest));
  }
  assert.equal(await damagedCount(s), 2);
});

test('a changed blob is caught by its hash after a restart too, and through a Range that covers the whole blob', async () => {
  const dir = await tempDir('sigil-changed-');
  const { img, big } = await image('changed/restart');
  const first = await sigilOn(dir);
  await pullAndStore(first, dir, 'changed/restart', img);
  await first.stop();
  sigils.splice(sigils.indexOf(first), 1);
  // another length: the restarted store's scan records the changed size, only the hash tells
  await overwrite(objectPath(dir, big.digest), randomBytes(big.size + 5));
  const s = await sigilOn(dir);
  const r = await getBlob(s, 'changed/restart', big.digest);
  assert.ok(!r.complete && r.body.length < big.size + 5, `the client received ${r.body.length} bytes, complete: ${r.complete}`);
  assert.ok(!existsSync(objectPath(dir, big.digest)));
  assert.equal(await damagedCount(s), 1);

  // same length, asked for as bytes=0-: the whole blob, so it is checked
  await pullAndStore(s, dir, 'changed/restart', img);
  await overwrite(objectPath(dir, big.digest), randomBytes(big.size));
  const ranged = await getBlob(s, 'changed/restart', big.digest, { range: 'bytes=0-' });
  assert.equal(ranged.status, 206);
  assert.ok(!ranged.complete && ranged.body.length < big.size, `the client received ${ranged.body.length} of ${big.size} bytes`);
  assert.ok(!existsSync(objectPath(dir, big.digest)));
  assert.equal(await damagedCount(s), 2);
  await rm(dir, { recursive: true, force: true });
});
