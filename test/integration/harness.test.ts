import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { freePort, waitForHttp } from '../helpers/net.js';
import { tempDir } from '../helpers/temp.js';
import { startRegistry } from '../helpers/registry.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { startTokenServer } from '../helpers/token-server.js';
import type { TokenServerHandle } from '../helpers/token-server.js';
import { startFaultServer, startRecordingServer } from '../helpers/fault-server.js';
import {
  MEDIA, getBlob, getManifest, makeLayer, pushBlob, pushBlobFile, pushImage, pushIndex, pushManifest, pushTagOnly, registryFetch,
} from '../helpers/push.js';
import type { PushTarget } from '../helpers/push.js';
import { sha256 } from '../helpers/digest.js';


function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Reads the names and contents of regular files / dirs in a ustar archive. */
function untar(tar: Buffer): Array<{ name: string; type: string; content: Buffer }> {
  const out = [];
  for (let off = 0; off + 512 <= tar.length;) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim(), 8);
    const stored = parseInt(h.subarray(148, 156).toString('utf8').replace(/\0.*$/s, '').trim(), 8);
    const copy = Buffer.from(h);
    copy.fill(0x20, 148, 156);
    assert.equal(copy.reduce((a, b) => a + b, 0), stored, `tar checksum of ${name}`);
    assert.equal(h.subarray(257, 263).toString('latin1'), 'ustar\0');
    out.push({ name, type: String.fromCharCode(h[156]), content: tar.subarray(off + 512, off + 512 + size) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('net helpers', () => {
  test('freePort gives a bindable port, tempDir a fresh dir, waitForHttp times out on silence', async () => {
    const port = await freePort();
    assert.ok(port > 0 && port < 65536);
    const srv = createServer();
    await new Promise<void>((resolve) => srv.listen(port, '127.0.0.1', () => resolve()));
    await new Promise<void>((resolve) => srv.close(() => resolve()));
    const dir = await tempDir('sigil-harness');
    assert.ok(existsSync(dir));
    await rm(dir, { recursive: true });
    const closed = await freePort();
    const t0 = Date.now();
    await assert.rejects(waitForHttp(`http://127.0.0.1:${closed}/`, 300), /no HTTP answer/);
    assert.ok(Date.now() - t0 < 2000);
  });
});

describe('plain registry', () => {
  let reg: RegistryHandle;
  let t: PushTarget;
  before(async () => {
    reg = await startRegistry();
    t = { url: reg.url };
  });
  after(async () => {
    await reg?.stop();
  });

  test('GET /v2/ answers and the handle is consistent', async () => {
    assert.equal(reg.url, `http://${reg.host}`);
    assert.equal(reg.host, `127.0.0.1:${reg.port}`);
    const res = await registryFetch(t, 'x', 'GET', '/v2/');
    assert.equal(res.status, 200);
    assert.equal(res.headers['docker-distribution-api-version'], 'registry/2.0');
    assert.ok(existsSync(join(reg.dir, 'data')));
  });

  test('single OCI image: readable by tag and digest, real gzipped tar layer, valid config', async () => {
    const img = await pushImage(t, 'lib/single', 'v1', { annotations: { 'org.example.k': 'v' } });
    assert.equal(img.digest, sha256(img.manifest));
    for (const ref of ['v1', img.digest]) {
      const m = await getManifest(t, 'lib/single', ref);
      assert.equal(m.status, 200);
      assert.equal(m.digest, img.digest);
      assert.equal(m.mediaType, MEDIA.OCI_MANIFEST);
      assert.deepEqual(m.body, img.manifest);
    }
    const head = await getManifest(t, 'lib/single', 'v1', undefined, 'HEAD');
    assert.equal(head.status, 200);
    assert.equal(head.digest, img.digest);
    const manifest = JSON.parse(img.manifest.toString());
    assert.equal(manifest.annotations['org.example.k'], 'v');
    assert.equal(img.layers.length, 1);
    const layer = await getBlob(t, 'lib/single', img.layers[0].digest);
    assert.equal(layer.status, 200);
    assert.equal(layer.headers['docker-content-digest'], img.layers[0].digest);
    assert.equal(sha256(layer.body), img.layers[0].digest);
    assert.equal(layer.body.length, img.layers[0].size);
    const tar = gunzipSync(layer.body);
    const entries = untar(tar);
    assert.deepEqual(entries.map((e) => [e.name, e.type]), [['sigil-test/', '5'], ['sigil-test/layer-0', '0']]);
    assert.equal(entries[1].content.length, 1024);
    const config = JSON.parse((await getBlob(t, 'lib/single', img.config.digest)).body.toString());
    assert.equal(config.architecture, 'amd64');
    assert.equal(config.os, 'linux');
    assert.deepEqual(config.rootfs, { type: 'layers', diff_ids: [sha256(tar)] });
  });

  test('docker-format image with exact layer bytes is deterministic', async () => {
    const layer = makeLayer(Buffer.from('hello sigil\n'), 'etc/hello');
    assert.equal(sha256(makeLayer(Buffer.from('hello sigil\n'), 'etc/hello').blob), layer.digest);
    const a = await pushImage(t, 'lib/docker', 'a', { format: 'docker', layers: [layer.blob], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    const b = await pushImage(t, 'lib/docker', 'b', { format: 'docker', layers: [layer.blob], platform: { os: 'linux', architecture: 'arm', variant: 'v7' } });
    assert.equal(a.digest, b.digest);
    assert.equal(a.layers[0].digest, layer.digest);
    assert.equal(a.layers[0].mediaType, MEDIA.DOCKER_LAYER_TGZ);
    const m = await getManifest(t, 'lib/docker', 'a');
    assert.equal(m.mediaType, MEDIA.DOCKER_MANIFEST);
    assert.equal(m.digest, a.digest);
    const config = JSON.parse((await getBlob(t, 'lib/docker', a.config.digest)).body.toString());
    assert.equal(config.variant, 'v7');
    assert.deepEqual(config.rootfs.diff_ids, [layer.diffId]);
  });

  test('multi-arch OCI index (linux/amd64, linux/arm64) and docker manifest list', async () => {
    const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }];
    const idx = await pushIndex(t, 'lib/multi', 'latest', platforms);
    assert.equal(idx.mediaType, MEDIA.OCI_INDEX);
    for (const ref of ['latest', idx.digest]) {
      const m = await getManifest(t, 'lib/multi', ref);
      assert.equal(m.status, 200);
      assert.equal(m.digest, idx.digest);
      assert.equal(m.mediaType, MEDIA.OCI_INDEX);
      assert.deepEqual(m.body, idx.manifest);
    }
    const parsed = JSON.parse(idx.manifest.toString());
    assert.deepEqual(parsed.manifests.map((d: { platform: unknown }) => d.platform), platforms);
    for (const child of idx.children) {
      const m = await getManifest(t, 'lib/multi', child.digest);
      assert.equal(m.status, 200);
      assert.equal(m.digest, child.digest);
      assert.deepEqual(m.body, child.manifest);
      const config = JSON.parse((await getBlob(t, 'lib/multi', child.config.digest)).body.toString());
      assert.equal(config.architecture, child.platform.architecture);
    }
    const tags = JSON.parse((await registryFetch(t, 'lib/multi', 'GET', '/v2/lib/multi/tags/list')).body.toString());
    assert.deepEqual(tags.tags, ['latest']); // children are pushed by digest only

    const list = await pushIndex(t, 'lib/multi', 'docker', platforms, { format: 'docker' });
    const m = await getManifest(t, 'lib/multi', 'docker');
    assert.equal(m.mediaType, MEDIA.DOCKER_LIST);
    assert.equal(m.digest, list.digest);
    assert.ok(list.children.every((c) => c.mediaType === MEDIA.DOCKER_MANIFEST));
  });

  test('image with 12 layers: every blob is present with its size', async () => {
    const img = await pushImage(t, 'lib/many', 'v12', { layers: 12, layerSize: 4096 });
    assert.equal(img.layers.length, 12);
    assert.equal(new Set(img.layers.map((l) => l.digest)).size, 12);
    const m = await getManifest(t, 'lib/many', 'v12');
    assert.equal(m.digest, img.digest);
    assert.equal(JSON.parse(m.body.toString()).layers.length, 12);
    for (const l of img.layers) {
      const head = await registryFetch(t, 'lib/many', 'HEAD', `/v2/lib/many/blobs/${l.digest}`);
      assert.equal(head.status, 200);
      assert.equal(head.headers['docker-content-digest'], l.digest);
      assert.equal(Number(head.headers['content-length']), l.size);
    }
  });

  test('pushBlob, pushBlobFile (several PATCHes), pushManifest and pushTagOnly', async () => {
    const bytes = randomBytes(3000);
    assert.equal(await pushBlob(t, 'lib/raw', bytes), sha256(bytes));
    assert.deepEqual((await getBlob(t, 'lib/raw', sha256(bytes))).body, bytes);

    const dir = await tempDir('sigil-harness-file');
    try {
      const file = join(dir, 'blob.bin');
      const content = randomBytes(5 * 1024 * 1024 + 123);
      await writeFile(file, content);
      const digest = await pushBlobFile(t, 'lib/raw', file, { chunkSize: 1024 * 1024 });
      assert.equal(digest, sha256(content));
      const got = await getBlob(t, 'lib/raw', digest);
      assert.equal(got.status, 200);
      assert.equal(sha256(got.body), digest);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }

    const img = await pushImage(t, 'lib/raw', 'one');
    assert.equal(await pushTagOnly(t, 'lib/raw', 'two', img.manifest, img.mediaType), img.digest);
    assert.equal((await getManifest(t, 'lib/raw', 'two')).digest, img.digest);
    assert.equal(await pushManifest(t, 'lib/raw', img.digest, img.manifest, img.mediaType), img.digest);
    assert.equal((await getManifest(t, 'lib/raw', 'nope')).status, 404);
  });

  test('stop() kills the process, removes the dir, and is idempotent', async () => {
    const r = await startRegistry();
    assert.ok(alive(r.pid));
    await Promise.all([r.stop(), r.stop()]);
    await r.stop();
    assert.equal(alive(r.pid), false);
    assert.equal(existsSync(r.dir), false);
    await assert.rejects(registryFetch({ url: r.url }, 'x', 'GET', '/v2/'));
  });
});

describe('token-auth registry', () => {
  let tokens: TokenServerHandle;
  let reg: RegistryHandle;
  before(async () => {
    tokens = await startTokenServer({ users: { alice: 's3cret' } });
    reg = await startRegistry({ tokenAuth: tokens });
  });
  after(async () => {
    await reg?.stop();
    await tokens?.stop();
  });

  test('root cert bundle is a valid self-signed P-256 certificate', () => {
    const cert = new X509Certificate(readFileSync(tokens.rootCertPath));
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(cert.verify(cert.publicKey));
    assert.ok(cert.ca);
    assert.equal(tokens.realm, `${new URL(tokens.realm).origin}/token`);
  });

  test('anonymous pull is denied with 401 and a Bearer challenge', async () => {
    const res = await registryFetch({ url: reg.url }, 'lib/a', 'GET', '/v2/lib/a/manifests/latest');
    assert.equal(res.status, 401);
    const challenge = String(res.headers['www-authenticate']);
    assert.match(challenge, /^Bearer /);
    assert.ok(challenge.includes(`realm="${tokens.realm}"`));
    assert.ok(challenge.includes(`service="${tokens.service}"`));
    const anon = tokens.requests.filter((r) => r.user === null);
    assert.ok(anon.length >= 1);
    assert.ok(anon.some((r) => r.scope.includes('repository:lib/a:pull')));
    assert.ok(anon.every((r) => r.authorization === null));
  });

  test('authenticated push and pull work; the token server saw the push scope', async () => {
    const alice: PushTarget = { url: reg.url, username: 'alice', password: 's3cret' };
    const img = await pushImage(alice, 'lib/a', 'latest');
    const m = await getManifest(alice, 'lib/a', 'latest');
    assert.equal(m.status, 200);
    assert.equal(m.digest, img.digest);
    const seen = tokens.requests.filter((r) => r.user === 'alice');
    assert.ok(seen.some((r) => r.scope.includes('repository:lib/a:pull,push')), JSON.stringify(seen));
    assert.ok(seen.every((r) => r.authorization?.startsWith('Basic ')));
    // still no anonymous access to what alice pushed
    assert.equal((await getManifest({ url: reg.url }, 'lib/a', 'latest')).status, 401);
  });

  test('wrong password: token request 401, push fails', async () => {
    const before = tokens.requests.length;
    await assert.rejects(pushBlob({ url: reg.url, username: 'alice', password: 'wrong' }, 'lib/a', Buffer.from('x')), /401.*token request 401/s);
    assert.ok(tokens.requests.slice(before).some((r) => r.user === 'alice'));
    const res = await fetch(`${tokens.realm}?service=${tokens.service}&scope=repository:lib/a:pull`, {
      headers: { authorization: `Basic ${Buffer.from('mallory:x').toString('base64')}` },
    });
    assert.equal(res.status, 401);
    await res.body?.cancel();
  });

  test('an expired token is refused by the registry', async () => {
    const token = tokens.mintToken({ user: 'alice', access: [{ type: 'repository', name: 'lib/a', actions: ['pull'] }], expiresIn: -3600 });
    const res = await fetch(`${reg.url}/v2/lib/a/manifests/latest`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(res.status, 401);
    await res.body?.cancel();
    const fresh = tokens.mintToken({ user: 'alice', access: [{ type: 'repository', name: 'lib/a', actions: ['pull'] }] });
    const ok = await fetch(`${reg.url}/v2/lib/a/manifests/latest`, { headers: { authorization: `Bearer ${fresh}`, accept: MEDIA.OCI_MANIFEST } });
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  });
});

describe('token-auth registry with anonymous pull', () => {
  let tokens: TokenServerHandle;
  let reg: RegistryHandle;
  before(async () => {
    tokens = await startTokenServer({ users: { bob: 'pw' }, anonymousPull: true, expiresIn: 60 });
    reg = await startRegistry({ tokenAuth: tokens });
  });
  after(async () => {
    await reg?.stop();
    await tokens?.stop();
  });

  test('anonymous can pull but not push', async () => {
    const img = await pushImage({ url: reg.url, username: 'bob', password: 'pw' }, 'pub/img', 'v1');
    const m = await getManifest({ url: reg.url }, 'pub/img', 'v1');
    assert.equal(m.status, 200);
    assert.equal(m.digest, img.digest);
    await assert.rejects(pushBlob({ url: reg.url }, 'pub/img', Buffer.from('nope')), /→ 401/);
    const res = await fetch(`${tokens.realm}?service=${tokens.service}&scope=repository:pub/img:pull,push`);
    const body = (await res.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
    assert.equal(body.token, body.access_token);
    assert.equal(body.expires_in, 60);
    assert.ok(!Number.isNaN(Date.parse(body.issued_at)));
    const claims = JSON.parse(Buffer.from(body.token.split('.')[1], 'base64url').toString());
    assert.deepEqual(claims.access, [{ type: 'repository', name: 'pub/img', actions: ['pull'] }]);
    assert.equal(claims.aud, tokens.service);
    assert.equal(claims.iss, tokens.issuer);
    assert.equal(claims.exp - claims.iat, 60);
  });
});

describe('fault servers', () => {
  test('records requests; stop() does not wait for a handler that never answers', async () => {
    const srv = await startFaultServer(() => { /* never answers */ });
    const pending = fetch(`${srv.url}/v2/hang`, { headers: { 'x-probe': '1' } });
    while (srv.requests.length === 0) await new Promise((r) => setTimeout(r, 10));
    const t0 = Date.now();
    await srv.stop();
    assert.ok(Date.now() - t0 < 1000);
    await assert.rejects(pending);
    assert.equal(srv.requests[0].method, 'GET');
    assert.equal(srv.requests[0].url, '/v2/hang');
    assert.equal(srv.requests[0].headers['x-probe'], '1');
  });

  test('a throwing handler answers 500; the recording server answers 200 {}', async () => {
    const bad = await startFaultServer(() => {
      throw new Error('boom');
    });
    const rec = await startRecordingServer();
    try {
      const r1 = await fetch(`${bad.url}/x`);
      assert.equal(r1.status, 500);
      await r1.body?.cancel();
      const r2 = await fetch(`${rec.url}/v2/a/manifests/b`, { method: 'PUT', body: 'payload' });
      assert.equal(r2.status, 200);
      assert.deepEqual(await r2.json(), {});
      assert.deepEqual(rec.requests.map((r) => [r.method, r.url]), [['PUT', '/v2/a/manifests/b']]);
      assert.equal(rec.host, new URL(rec.url).host);
    } finally {
      await bad.stop();
      await rec.stop();
    }
  });
});
