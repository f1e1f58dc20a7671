import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { after, afterEach, test } from 'node:test';
import { request } from 'undici';
import type { Digest } from '../oci/digest.js';
import { capturingLogger, collect, sha256, silentLogger } from '../../test/helpers/fake-registry.js';
import { startFaultServer } from '../../test/helpers/fault-server.js';
import { freePort } from '../../test/helpers/net.js';
import { tempStore } from '../../test/helpers/temp-store.js';
import { tempDir } from '../../test/helpers/temp.js';
import { selfSignedCert } from '../../test/helpers/tls.js';
import { signHolder, verifyHolder, type PeerAddress } from './peer-auth.js';
import { PeerClient } from './peer-client.js';
import { PEER_REFUSAL_LOG_MS, PeerServer, type PeerServerOptions } from './peer-server.js';

const token = 'peer-token-0123456789abcdef';
const open: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close();
});
const client = new PeerClient({ token });
after(() => client.close());

/** An address as cluster-flight gets one: from a lease value whose MAC checked. */
function verified(address: string): PeerAddress {
  const key = 'blob:test';
  return verifyHolder(token, key, signHolder(token, key, address))!;
}

async function replica(opts: Partial<PeerServerOptions> = {}) {
  const store = await tempStore();
  const server = new PeerServer({ peer: { listen: { host: '127.0.0.1', port: 0 }, advertise: 'http://127.0.0.1:1', token }, content: store.content, logger: silentLogger(), ...opts });
  const { port } = await server.listen();
  open.push(() => store.close(), () => server.close());
  const scheme = opts.peer?.advertise.startsWith('https:') === true ? 'https' : 'http';
  const address = verified(`${scheme}://127.0.0.1:${port}`);
  const url = (path: string): string => `${address}${path}`;
  const put = async (text: string): Promise<Digest> => {
    const d = sha256(Buffer.from(text));
    await store.content.putBytes(d, Buffer.from(text));
    return d;
  };
  /** A write of `text` under way: the first `split` bytes written, the rest on `finish()`. */
  const writing = async (text: string, split: number, digest = sha256(Buffer.from(text))) => {
    const w = store.content.beginWrite(digest, text.length);
    assert.equal(w.kind, 'writer');
    if (w.kind !== 'writer') throw new Error('unreachable');
    await new Promise<void>((resolve, reject) => w.writer.write(Buffer.from(text.slice(0, split)), (err) => (err ? reject(err) : resolve())));
    return { digest, finish: () => w.writer.end(Buffer.from(text.slice(split))), fail: (why: string) => w.writer.destroy(new Error(why)), done: w.done };
  };
  return { store, server, address, url, put, writing };
}

async function settled(check: () => boolean): Promise<boolean> {
  for (let i = 0; i < 1000 && !check(); i++) await new Promise((r) => setImmediate(r));
  return check();
}

test('a committed object is served whole to a peer with the token, its size announced', async () => {
  const r = await replica();
  const d = await r.put('committed layer');
  const a = await client.open(r.address, d);
  assert.equal(a.kind, 'ok');
  if (a.kind !== 'ok') return;
  assert.deepEqual([a.status, a.offset, a.size], [200, 0, 15]);
  assert.equal((await collect(a.body)).toString(), 'committed layer');
});

test('an object being written here is streamed behind the write, to its end once the digest checked', async () => {
  const r = await replica();
  const w = await r.writing('bytes arriving from the upstream', 10);
  const a = await client.open(r.address, w.digest);
  assert.equal(a.kind, 'ok');
  if (a.kind !== 'ok') return;
  assert.equal(a.size, undefined, 'no size known while it is written');
  const body = collect(a.body);
  w.finish();
  assert.equal((await body).toString(), 'bytes arriving from the upstream');
  await w.done;
});

test('when the write being followed fails (a wrong digest), the peer sees its body cut off, never complete', async () => {
  const r = await replica();
  const w = await r.writing('bytes that are not what the digest says', 5, sha256(Buffer.from('other')));
  const a = await client.open(r.address, w.digest);
  assert.equal(a.kind, 'ok');
  if (a.kind !== 'ok') return;
  const body = collect(a.body);
  w.finish();
  await assert.rejects(body);
  await assert.rejects(w.done, /DIGEST|hash/i);
});

test('when the holder stops mid-stream, the peer\'s body errors', async () => {
  const r = await replica();
  const w = await r.writing('a download that will not finish', 12);
  const a = await client.open(r.address, w.digest);
  assert.equal(a.kind, 'ok');
  if (a.kind !== 'ok') return;
  const body = collect(a.body);
  await r.server.close();
  w.fail('upstream reset');
  await assert.rejects(body);
});

test('an object neither stored nor being written is 404, and asking starts no write of it', async () => {
  const r = await replica();
  const other = await r.writing('another blob in flight', 3); // so the server looks among the writes
  const missing = sha256(Buffer.from('missing'));
  const a = await client.open(r.address, missing);
  assert.deepEqual(a.kind === 'failed' && a.reason, 'absent');
  assert.equal(await settled(() => r.store.content.writesInFlight === 1), true, 'the write it did not want is gone');
  const w = r.store.content.beginWrite(missing);
  assert.equal(w.kind, 'writer', 'nothing of it to follow');
  if (w.kind === 'writer') w.writer.destroy();
  other.finish();
  await other.done;
  assert.equal(await r.store.content.has(missing), false);
});

test('asking for an object not being written, while others are, never begins a write of it (no temp file, nothing a local pull could follow)', async () => {
  const r = await replica();
  const other = await r.writing('another blob in flight', 3);
  const begun: string[] = [];
  const content = r.store.content;
  const beginWrite = content.beginWrite.bind(content);
  content.beginWrite = (...args: Parameters<typeof beginWrite>) => {
    const w = beginWrite(...args);
    if (w.kind === 'writer') begun.push(args[0]);
    return w;
  };
  const missing = sha256(Buffer.from('missing'));
  const a = await client.open(r.address, missing);
  assert.deepEqual(a.kind === 'failed' && a.reason, 'absent');
  assert.deepEqual(begun, [], 'no write begun for a peer');
  const b = await client.open(r.address, other.digest);
  assert.ok(b.kind === 'ok', 'the write in flight is still followed');
  const body = collect(b.body);
  other.finish();
  assert.equal((await body).toString(), 'another blob in flight');
  assert.deepEqual(begun, []);
});

test('Range: bytes=N- resumes from byte N, of a stored object and of one being written', async () => {
  const r = await replica();
  const d = await r.put('0123456789');
  const a = await client.open(r.address, d, 4);
  assert.ok(a.kind === 'ok');
  assert.deepEqual([a.status, a.offset, a.size, (await collect(a.body)).toString()], [206, 4, 10, '456789']);
  const raw = await request(r.url(`/sigil-peer/v1/objects/${d}`), { headers: { authorization: `Bearer ${token}`, range: 'bytes=4-' } });
  assert.equal(raw.headers['content-range'], 'bytes 4-9/10');
  await raw.body.dump();

  const w = await r.writing('abcdefghijklmnop', 2);
  const b = await client.open(r.address, w.digest, 6);
  assert.ok(b.kind === 'ok');
  const body = collect(b.body);
  w.finish();
  assert.deepEqual([b.status, b.offset, (await body).toString()], [206, 6, 'ghijklmnop']);
});

test('a range past the end, or any range but bytes=N-, is 416', async () => {
  const r = await replica();
  const d = await r.put('short');
  for (const range of ['bytes=5-', 'bytes=0-2', 'bytes=-2', 'bytes=1-,3-', 'pages=1-']) {
    const res = await request(r.url(`/sigil-peer/v1/objects/${d}`), { headers: { authorization: `Bearer ${token}`, range } });
    await res.body.dump();
    assert.equal(res.statusCode, 416, range);
  }
});

test('without the token every request is 401 and says nothing of what it asked for', async () => {
  const { logger, records } = capturingLogger();
  const r = await replica({ logger });
  const d = await r.put('secret layer');
  const wrong = [undefined, 'Bearer nope', `Bearer ${token}x`, `Basic ${Buffer.from(`x:${token}`).toString('base64')}`, token];
  for (const authorization of wrong) {
    for (const [method, path] of [['GET', `/sigil-peer/v1/objects/${d}`], ['GET', '/sigil-peer/v1/objects/sha256:nope'], ['DELETE', `/sigil-peer/v1/objects/${d}`], ['GET', '/']] as const) {
      const res = await request(r.url(path), { method, headers: authorization !== undefined ? { authorization } : {} });
      const body = await res.body.text();
      assert.deepEqual([res.statusCode, body, res.headers['content-range']], [401, '', undefined], `${method} ${path} with ${authorization}`);
    }
  }
  const refused = await new PeerClient({ token: 'another-token-0123456789' }).open(r.address, d);
  assert.equal(refused.kind === 'failed' && refused.reason, 'refused');
  await client.open(r.address, d).then((a) => a.kind === 'ok' && a.body.resume());
  assert.ok(records.some((x) => x.msg === 'peer request without the peer token refused'));
  assert.equal(JSON.stringify(records).includes(token), false, 'the token is never logged');
});

test(`requests without the token are logged at most once per PEER_REFUSAL_LOG_MS (${PEER_REFUSAL_LOG_MS} ms), with how many were refused`, async () => {
  const { logger, records } = capturingLogger();
  let now = 0;
  const r = await replica({ logger, now: () => now });
  const refuse = async (n: number) => {
    for (let i = 0; i < n; i++) assert.equal((await request(r.url('/sigil-peer/v1/objects/sha256:x'))).statusCode, 401);
  };
  const lines = () => records.filter((x) => x.msg === 'peer request without the peer token refused');
  await refuse(50);
  assert.deepEqual(lines().map((x) => x.refused), [1], 'the first, at once; the flood after it, not');
  now += PEER_REFUSAL_LOG_MS;
  await refuse(1);
  assert.deepEqual(lines().map((x) => x.refused), [1, 50], 'then one line counting the 49 held back and this one');
});

test('with the token: only GET and HEAD, no request body, a valid digest under the objects path', async () => {
  const r = await replica();
  const d = await r.put('layer');
  const auth = { authorization: `Bearer ${token}` };
  const ask = async (method: string, path: string, body?: string): Promise<number> => {
    const res = await request(r.url(path), { method: method as 'GET', headers: auth, ...(body !== undefined ? { body } : {}) });
    await res.body.dump();
    return res.statusCode;
  };
  assert.equal(await ask('PUT', `/sigil-peer/v1/objects/${d}`, 'x'), 405);
  assert.equal(await ask('DELETE', `/sigil-peer/v1/objects/${d}`), 405);
  assert.equal(await ask('POST', `/sigil-peer/v1/objects/${d}`, 'x'), 405);
  assert.equal(await ask('GET', `/sigil-peer/v1/objects/${d}`, 'a body'), 400);
  assert.equal(await ask('GET', '/sigil-peer/v1/objects/sha256:abc'), 400);
  assert.equal(await ask('GET', `/sigil-peer/v1/objects/${d}/../x`), 400);
  assert.equal(await ask('GET', `/v2/app/blobs/${d}`), 404);
  const head = await request(r.url(`/sigil-peer/v1/objects/${d}`), { method: 'HEAD', headers: auth });
  assert.deepEqual([head.statusCode, head.headers['content-length'], await head.body.text()], [200, '5', '']);
});

test('past its concurrent peer streams the server answers 503 (busy), and serves again once one ends', async () => {
  const r = await replica({ maxStreams: 1 });
  const w = await r.writing('a slow download', 4);
  const first = await client.open(r.address, w.digest);
  assert.ok(first.kind === 'ok');
  const busy = await client.open(r.address, w.digest);
  assert.equal(busy.kind === 'failed' && busy.reason, 'busy');
  w.finish();
  assert.equal((await collect(first.body)).toString(), 'a slow download');
  assert.equal(await settled(() => r.server.streams === 0), true);
  const again = await client.open(r.address, w.digest);
  assert.ok(again.kind === 'ok');
  assert.equal((await collect(again.body)).toString(), 'a slow download');
});

test('connections past its bound are dropped at once (a flood on the peer port costs no more sockets), and it serves again once they go', async () => {
  const r = await replica({ maxConnections: 3 });
  const d = await r.put('still served');
  const port = Number(new URL(r.address).port);
  const idle: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    idle.push(s);
  }
  const extra = connect(port, '127.0.0.1');
  extra.on('error', () => {});
  extra.resume();
  await once(extra, 'close');
  assert.equal(await settled(() => r.server.connections === 3), true, 'the extra connection was not kept');
  for (const s of idle) s.destroy();
  assert.equal(await settled(() => r.server.connections === 0), true);
  const a = await client.open(r.address, d);
  assert.ok(a.kind === 'ok');
  assert.equal((await collect(a.body)).toString(), 'still served');
});

test('an https advertise address is served with server.tls, reached through cache.shared.peer.ca', async () => {
  const dir = await tempDir('sigil-peer-tls-');
  const { certPath, keyPath } = await selfSignedCert(dir);
  const [cert, key] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  const r = await replica({ peer: { listen: { host: '127.0.0.1', port: 0 }, advertise: 'https://127.0.0.1:1', token }, tls: { cert, key, certPath, keyPath } });
  const d = await r.put('over tls');
  const withCa = new PeerClient({ token, ca: cert });
  open.push(() => withCa.close());
  const a = await withCa.open(r.address, d);
  assert.ok(a.kind === 'ok');
  assert.equal((await collect(a.body)).toString(), 'over tls');
  const b = await client.open(r.address, d);
  assert.equal(b.kind === 'failed' && b.reason, 'unreachable', 'a certificate the system roots do not know is refused');
  assert.throws(() => new PeerServer({ peer: { listen: { host: '127.0.0.1', port: 0 }, advertise: 'https://x:1', token }, content: r.store.content, logger: silentLogger() }), /needs server\.tls/);
});

test('a peer that does not listen is unreachable, quickly and without throwing', async () => {
  const a = await client.open(verified(`http://127.0.0.1:${await freePort()}`), sha256(Buffer.from('x')));
  assert.equal(a.kind === 'failed' && a.reason, 'unreachable');
});

test('a peer that answers other bytes than asked (another offset, a 200 to a resume) is a bad answer, its body never used', async () => {
  const d = sha256(Buffer.from('x'));
  const answers: Array<[number, Record<string, string>]> = [
    [200, { 'sigil-peer-offset': '0' }], // the whole object to a read from byte 5
    [206, { 'sigil-peer-offset': '4' }], // another offset
    [206, {}], // no offset at all
    [302, { location: 'http://elsewhere.example/' }], // never followed
  ];
  const peer = await startFaultServer((_req, res) => {
    const [status, headers] = answers.shift()!;
    res.writeHead(status, headers);
    res.end('bytes');
  });
  open.push(() => peer.stop());
  for (let i = 0; i < 4; i++) {
    const a = await client.open(verified(peer.url), d, 5);
    assert.equal(a.kind === 'failed' && a.reason, 'bad-answer', `answer ${i}`);
  }
  assert.equal(peer.requests.every((r) => r.headers.authorization === `Bearer ${token}` && r.headers.range === 'bytes=5-'), true);
});
