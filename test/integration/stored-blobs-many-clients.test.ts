import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, readlink, readdir } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client } from 'undici';
import type { Digest } from '../../src/oci/digest.js';
import { storeReadSlabs } from '../../src/store/read-slabs.js';
import { VERIFY_AHEAD_MAX_BYTES } from '../../src/store/limits.js';
import { sha256 } from '../helpers/digest.js';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { pushImage } from '../helpers/push.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { simpleConfig, startSigil, type SigilHandle } from '../helpers/sigil.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';

// Stored blobs are read into slabs of one pool shared by every response in the process, each
// slab read into again once its response reported the chunk written (store/read-slabs.ts). A
// slab reused too early hands a client another blob's bytes. Here many clients of one sigil, over
// HTTP and over HTTPS, read different stored blobs at once — fast, slowly, in ranges, by HEAD, one
// after another on a kept-alive connection, pipelined, or leaving mid-stream — and each gets
// exactly its own bytes; afterwards no stored file is left open, and no stream still counts among the readers of the slab pool.

const REPO = 'team/app';
/** Larger than what the store checks before returning it: each is streamed, many chunks, not a multiple of one. */
const SIZES = [1, 1.3, 1.7, 2.2, 2.9, 3.6].map((m) => Math.round(m * VERIFY_AHEAD_MAX_BYTES) + 4097);

let registry: RegistryHandle;
let dir: string;
let tls: { certPath: string; keyPath: string; ca: string };
const blobs = new Map<Digest, Buffer>();

before(async () => {
  registry = await startRegistry();
  const layers = SIZES.map((n) => randomBytes(n));
  const img = await pushImage({ url: registry.url }, REPO, 'v1', { layers });
  for (const [i, l] of img.layers.entries()) blobs.set(l.digest as Digest, layers[i]!);
  dir = await tempDir('sigil-many-clients-');
  const cert = await selfSignedCert(dir);
  tls = { ...cert, ca: await readFile(cert.certPath, 'utf8') };
});
after(async () => {
  await registry?.stop();
});

interface Answer {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  readonly body: Buffer;
}

/** What one client does with its answer while it comes. */
type Reading = { kind: 'fast' } | { kind: 'slow' } | { kind: 'leave'; after: number };

function get(s: SigilHandle, digest: Digest, opts: { method?: string; range?: string; agent?: HttpAgent; reading?: Reading } = {}): Promise<Answer | 'left'> {
  const https = s.url.startsWith('https:');
  const reading = opts.reading ?? { kind: 'fast' };
  const options: RequestOptions & { ca?: string } = {
    host: '127.0.0.1',
    port: s.port,
    path: `/v2/${REPO}/blobs/${digest}`,
    method: opts.method ?? 'GET',
    headers: opts.range !== undefined ? { range: opts.range } : {},
    ...(opts.agent !== undefined ? { agent: opts.agent } : {}),
    ...(https ? { ca: tls.ca } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = (https ? httpsRequest : httpRequest)(options, (res) => {
      const chunks: Buffer[] = [];
      let had = 0;
      res.on('data', (c: Buffer) => {
        chunks.push(c);
        had += c.length;
        if (reading.kind === 'leave' && had >= reading.after) {
          req.destroy();
          resolve('left');
        } else if (reading.kind === 'slow') {
          res.pause();
          setTimeout(() => res.resume(), 3);
        }
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', (e) => (reading.kind === 'leave' ? resolve('left') : reject(e)));
    });
    req.on('error', (e) => (reading.kind === 'leave' ? resolve('left') : reject(e)));
    req.end();
  });
}

function assertWhole(a: Answer | 'left', digest: Digest, what: string): void {
  assert.notEqual(a, 'left', what);
  if (a === 'left') return;
  assert.equal(a.status, 200, what);
  assert.equal(sha256(a.body), digest, `${what}: the blob's own bytes`);
}

/** Descriptors of this process open on files under `root`. */
async function openUnder(root: string): Promise<string[]> {
  const open: string[] = [];
  for (const fd of await readdir('/proc/self/fd')) {
    const target = await readlink(`/proc/self/fd/${fd}`).catch(() => '');
    if (target.startsWith(root)) open.push(target);
  }
  return open;
}

/** Sigil with a store, in front of the registry (through a forwarder that can be taken down). */
async function storeSigil(scheme: 'http' | 'https'): Promise<{ sigil: SigilHandle; fwd: Forwarder; storeDir: string }> {
  const fwd = await startForwarder(registry.url);
  const storeDir = await tempDir('sigil-many-clients-store-');
  let yaml = simpleConfig([{ name: 'r.test', url: fwd.url }], `defaultUpstream: r.test\ncache:\n  store:\n    dir: ${storeDir}\n    maxBytes: 1073741824\n`);
  if (scheme === 'https') yaml = yaml.replace('server:\n', `server:\n  tls:\n    cert: ${tls.certPath}\n    key: ${tls.keyPath}\n`);
  try {
    return { sigil: await startSigil(yaml), fwd, storeDir };
  } catch (e) {
    await fwd.stop();
    throw e;
  }
}

/** Fills the store with every blob, then takes the upstream away: from then on only the store answers. */
async function fill(sigil: SigilHandle, fwd: Forwarder): Promise<void> {
  for (const d of blobs.keys()) assertWhole(await get(sigil, d), d, `${d} on the way into the store`);
  fwd.setDown(true);
  // Recorded for the repository once committed: from then on served from the store alone.
  for (const d of blobs.keys()) {
    for (let i = 0; ; i++) {
      const a = await get(sigil, d);
      if (a !== 'left' && a.status === 200) {
        assertWhole(a, d, `${d} from the store`);
        break;
      }
      if (i === 200) assert.fail(`${d} is not served from the store`);
      await sleep(20);
    }
  }
}

for (const scheme of ['http', 'https'] as const) {
  test(`over ${scheme}, many clients reading different stored blobs at once (slowly, in ranges, by HEAD, kept-alive, pipelined, leaving mid-stream) each get exactly their own bytes, and no stored file stays open nor stream counted as reading`, async () => {
    const { sigil, fwd, storeDir } = await storeSigil(scheme);
    const https = scheme === 'https';
    const digests = [...blobs.keys()];
    try {
      await fill(sigil, fwd);
      const work: Array<Promise<void>> = [];
      for (let i = 0; i < 48; i++) {
        const d = digests[i % digests.length]!;
        const bytes = blobs.get(d)!;
        const what = `client ${i} (${d})`;
        switch (i % 6) {
          case 0:
            work.push(get(sigil, d).then((a) => assertWhole(a, d, what)));
            break;
          case 1:
            work.push(get(sigil, d, { reading: { kind: 'slow' } }).then((a) => assertWhole(a, d, `${what}, slow`)));
            break;
          case 2: {
            // every other one a range of all of it (checked like a whole read)
            const start = i % 12 === 2 ? 0 : (i * 7919) % (bytes.length >> 1);
            const end = i % 12 === 2 ? bytes.length - 1 : Math.min(bytes.length - 1, start + 300_000 + i * 40_000);
            work.push(
              get(sigil, d, { range: `bytes=${start}-${end}` }).then((a) => {
                assert.ok(a !== 'left');
                assert.equal(a.status, 206, what);
                assert.ok(a.body.equals(bytes.subarray(start, end + 1)), `${what}: bytes ${start}-${end}`);
              }),
            );
            break;
          }
          case 3:
            work.push(
              get(sigil, d, { method: 'HEAD' }).then((a) => {
                assert.ok(a !== 'left');
                assert.equal(a.status, 200, what);
                assert.equal(a.headers['content-length'], String(bytes.length), what);
                assert.equal(a.body.length, 0, `${what}: a HEAD has no body`);
              }),
            );
            break;
          case 4:
            work.push(get(sigil, d, { reading: { kind: 'leave', after: 100_000 + i * 20_000 } }).then(() => {}));
            break;
          case 5:
            work.push(get(sigil, d, { reading: { kind: 'slow' } }).then((a) => assertWhole(a, d, `${what}, slow`)));
            break;
        }
      }
      // One connection kept alive: every blob in turn, some slowly, one in a range.
      const Agent = https ? HttpsAgent : HttpAgent;
      const agent = new Agent({ keepAlive: true, maxSockets: 1 });
      work.push(
        (async () => {
          for (const [k, d] of [...digests, ...digests].entries()) {
            const a = await get(sigil, d, { agent, reading: { kind: k % 2 === 0 ? 'slow' : 'fast' } });
            assertWhole(a, d, `kept-alive request ${k}`);
          }
        })().finally(() => agent.destroy()),
      );
      // Requests pipelined on one connection: the answers come in order, each its blob's.
      const pipelined = new Client(sigil.url, { pipelining: digests.length, ...(https ? { connect: { ca: tls.ca } } : {}) });
      work.push(
        Promise.all(
          digests.map(async (d) => {
            const res = await pipelined.request({ path: `/v2/${REPO}/blobs/${d}`, method: 'GET' });
            assert.equal(res.statusCode, 200);
            assert.equal(sha256(Buffer.from(await res.body.arrayBuffer())), d, `pipelined ${d}`);
          }),
        ).then(
          () => pipelined.close(),
          async (e: unknown) => {
            await pipelined.destroy();
            throw e;
          },
        ),
      );
      await Promise.all(work);
      assert.ok(storeReadSlabs.idle > 0, 'the stored blobs were read into pooled slabs, given back once written');

      // After clients left mid-stream: every blob still whole, for every client.
      const again = await Promise.all(digests.map((d) => get(sigil, d, { reading: { kind: 'slow' } })));
      for (const [k, d] of digests.entries()) assertWhole(again[k]!, d, `${d} after the others left`);

      const objects = `${storeDir}/blobs/`;
      for (let i = 0; (await openUnder(objects)).length > 0; i++) {
        if (i === 500) assert.fail(`stored files left open: ${(await openUnder(objects)).join(', ')}`);
        await sleep(10);
      }
      // Every response written or gone: no stream still counts among the slab pool's readers (it would size the next ones' slabs).
      for (let i = 0; storeReadSlabs.streams > 0; i++) {
        if (i === 500) assert.fail(`${storeReadSlabs.streams} streams still count as reading`);
        await sleep(10);
      }
      assert.equal(fwd.count('GET', `/v2/${REPO}/blobs/`), digests.length, 'each blob came from the upstream once, then from the store');
    } finally {
      await sigil.stop();
      await fwd.stop();
    }
  });
}
