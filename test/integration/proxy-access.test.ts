import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Agent, request } from 'undici';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startTokenServer, type TokenServerHandle } from '../helpers/token-server.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { tempDir } from '../helpers/temp.js';
import { startSigil, simpleConfig } from '../helpers/sigil.js';
import { selfSignedCert } from '../helpers/tls.js';

let registry: RegistryHandle;
let image: PushedImage;
let dir: string;

before(async () => {
  registry = await startRegistry();
  image = await pushImage({ url: registry.url }, 'team/app', 'v1');
  dir = await tempDir('sigil-access-');
});
after(async () => {
  await registry?.stop();
});

function basic(user: string, pass: string): string {
  return `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
}

test('server.auth.htpasswd: /v2/ needs valid Basic credentials; operational endpoints stay open', async () => {
  // htpasswd -B writes $2y$ bcrypt entries; bcryptjs writes $2b$: the same algorithm.
  const hash = bcrypt.hashSync('s3cret', 5).replace(/^\$2b\$/, '$2y$');
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${hash}\nbob:${bcrypt.hashSync('other', 5)}\n`);
  const sigil = await startSigil(
    simpleConfig([{ name: 'r.test', url: registry.url }], `\ndefaultUpstream: r.test\n`).replace(
      'server:\n',
      `server:\n  auth:\n    htpasswd: ${file}\n`,
    ),
  );
  try {
    for (const authorization of [undefined, basic('alice', 'wrong'), basic('mallory', 's3cret'), 'Bearer x', 'Basic !!!']) {
      const res = await request(`${sigil.url}/v2/team/app/manifests/v1`, { headers: authorization ? { authorization } : {} });
      const body = (await res.body.json()) as { errors: Array<{ code: string }> };
      assert.equal(res.statusCode, 401, String(authorization));
      assert.equal(res.headers['www-authenticate'], 'Basic realm="sigil"');
      assert.equal(body.errors[0].code, 'UNAUTHORIZED');
    }
    const v2 = await request(`${sigil.url}/v2/`);
    await v2.body.dump();
    assert.equal(v2.statusCode, 401);
    // A push without credentials is refused for authentication first, still never reaching upstream.
    const push = await request(`${sigil.url}/v2/team/app/blobs/uploads/`, { method: 'POST' });
    await push.body.dump();
    assert.equal(push.statusCode, 401);
    for (let i = 0; i < 3; i++) {
      const ok = await request(`${sigil.url}/v2/team/app/manifests/v1`, { headers: { authorization: basic('alice', 's3cret') } });
      await ok.body.dump();
      assert.equal(ok.statusCode, 200);
      assert.equal(ok.headers['docker-content-digest'], image.digest);
    }
    const bob = await request(`${sigil.url}/v2/`, { headers: { authorization: basic('bob', 'other') } });
    await bob.body.dump();
    assert.equal(bob.statusCode, 200);
    for (const path of ['/healthz', '/readyz', '/metrics']) {
      const res = await request(`${sigil.url}${path}`);
      await res.body.dump();
      assert.equal(res.statusCode, 200, path);
    }
  } finally {
    await sigil.stop();
  }
});

test('server.tls: the listener speaks HTTPS with the configured certificate', async () => {
  const { certPath, keyPath } = await selfSignedCert(dir);
  const sigil = await startSigil(
    simpleConfig([{ name: 'r.test', url: registry.url }], `\ndefaultUpstream: r.test\n`).replace(
      'server:\n',
      `server:\n  tls:\n    cert: ${certPath}\n    key: ${keyPath}\n`,
    ),
  );
  const dispatcher = new Agent({ connect: { ca: await readFile(certPath, 'utf8') } });
  try {
    assert.match(sigil.url, /^https:/);
    const res = await request(`${sigil.url}/v2/team/app/manifests/v1`, { dispatcher });
    await res.body.dump();
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['docker-content-digest'], image.digest);
    // Plain HTTP to the TLS port does not get a registry answer.
    await assert.rejects(async () => {
      const r = await request(sigil.url.replace('https:', 'http:') + '/v2/', { headersTimeout: 2000 });
      await r.body.dump();
      if (r.statusCode === 200) throw new Error('unexpected');
      throw new Error(`status ${r.statusCode}`);
    });
  } finally {
    await dispatcher.close();
    await sigil.stop();
  }
});

test('a token-auth upstream: sigil fetches one token per repository scope and reuses it', async () => {
  const tokens: TokenServerHandle = await startTokenServer({ users: { puller: 'pw', pusher: 'pp' }, anonymousPull: false });
  const reg = await startRegistry({ tokenAuth: tokens });
  const sigil = await startSigil(
    simpleConfig([{ name: 'tok.test', url: reg.url, extra: '    credentials:\n      username: puller\n      password: pw\n' }]),
  );
  try {
    const img = await pushImage({ url: reg.url, username: 'pusher', password: 'pp' }, 'sec/app', 'v1', { layers: 2 });
    const before = tokens.requests.filter((r) => r.user === 'puller').length;
    assert.equal(before, 0);
    const paths = [
      'manifests/v1',
      `manifests/${img.digest}`,
      ...img.layers.map((l) => `blobs/${l.digest}`),
      `blobs/${img.config.digest}`,
      'tags/list',
    ];
    await Promise.all(
      paths.map(async (p) => {
        const res = await request(`${sigil.url}/v2/tok.test/sec/app/${p}`);
        await res.body.dump();
        assert.equal(res.statusCode, 200, p);
      }),
    );
    const used = tokens.requests.filter((r) => r.user === 'puller');
    assert.equal(used.length, 1, JSON.stringify(used));
    assert.ok(used[0].scope.some((s) => s === 'repository:sec/app:pull'), JSON.stringify(used[0].scope));
  } finally {
    await sigil.stop();
    await reg.stop();
    await tokens.stop();
  }
});
