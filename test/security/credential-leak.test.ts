import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startTokenServer, type TokenServerHandle } from '../helpers/token-server.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';

// Prevents: client credentials forwarded upstream; upstream credentials, tokens or
// token challenges handed back to clients or written to logs.
const PASSWORD = 'upstream-secret-PASSWORD-7f3a';
let tokens: TokenServerHandle;
let registry: RegistryHandle;
let image: PushedImage;

before(async () => {
  tokens = await startTokenServer({ users: { sigil: PASSWORD, pusher: 'push-pass' }, anonymousPull: false });
  registry = await startRegistry({ tokenAuth: tokens });
  image = await pushImage({ url: registry.url, username: 'pusher', password: 'push-pass' }, 'private/app', 'v1', { layers: 1 });
});
after(async () => {
  await registry?.stop();
  await tokens?.stop();
});

test('with upstream credentials: pulls work, and no token, password or upstream challenge reaches the client or the logs', async () => {
  const sigil = await startSigil(
    simpleConfig([
      {
        name: 'private.test',
        url: registry.url,
        extra: `    credentials:\n      username: sigil\n      password: \${PW}\n`,
      },
    ]),
    { env: { PW: PASSWORD } },
  );
  try {
    const m = await request(`${sigil.url}/v2/private.test/private/app/manifests/v1`, {
      headers: { authorization: 'Bearer client-token-must-not-travel' },
    });
    const body = Buffer.from(await m.body.arrayBuffer());
    assert.equal(m.statusCode, 200);
    assert.equal(m.headers['docker-content-digest'], image.digest);
    const b = await request(`${sigil.url}/v2/private.test/private/app/blobs/${image.layers[0].digest}`);
    await b.body.dump();
    assert.equal(b.statusCode, 200);
    for (const res of [m, b]) {
      const all = JSON.stringify(res.headers);
      assert.ok(!/bearer|token|realm/i.test(all), all);
      assert.ok(!all.includes(PASSWORD));
    }
    assert.ok(!body.toString().includes(PASSWORD));
    // The token server saw sigil's credentials, never the client's bearer token.
    assert.ok(tokens.requests.some((r) => r.user === 'sigil'));
    assert.ok(tokens.requests.every((r) => !String(r.authorization).includes('client-token-must-not-travel')));
    const logText = JSON.stringify(sigil.logs);
    assert.ok(sigil.logs.length > 0);
    assert.ok(!logText.includes(PASSWORD), 'password in logs');
    assert.ok(!logText.includes('client-token-must-not-travel'), 'client token in logs');
    assert.ok(!/"Bearer [A-Za-z0-9._-]{20,}/.test(logText), 'a bearer token in logs');
  } finally {
    await sigil.stop();
  }
});

test('without credentials, an upstream that requires them gives 403 DENIED and no upstream challenge', async () => {
  const sigil = await startSigil(simpleConfig([{ name: 'private.test', url: registry.url }]));
  try {
    const res = await request(`${sigil.url}/v2/private.test/private/app/manifests/v1`);
    const body = (await res.body.json()) as { errors: Array<{ code: string }> };
    assert.equal(res.statusCode, 403);
    assert.equal(body.errors[0].code, 'DENIED');
    assert.equal(res.headers['www-authenticate'], undefined);
  } finally {
    await sigil.stop();
  }
});

test("the client's Authorization header is never sent upstream", async () => {
  const upstream: FaultServer = await startFaultServer((_req, res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end('{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}');
  });
  const sigil = await startSigil(simpleConfig([{ name: 'up.test', url: upstream.url }]));
  try {
    for (const path of ['manifests/v1', `blobs/sha256:${'b'.repeat(64)}`, 'tags/list']) {
      const res = await request(`${sigil.url}/v2/up.test/a/b/${path}`, {
        headers: { authorization: 'Basic Y2xpZW50OnNlY3JldA==', cookie: 'session=1' },
      });
      await res.body.dump();
    }
    assert.ok(upstream.requests.length >= 3);
    for (const r of upstream.requests) {
      assert.equal(r.headers.authorization, undefined, r.url);
      assert.equal(r.headers.cookie, undefined, r.url);
    }
  } finally {
    await sigil.stop();
    await upstream.stop();
  }
});
