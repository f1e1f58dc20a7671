import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { MAX_JSON_DEPTH, jsonDepth, parseJson, tryParseJson } from '../../src/oci/json.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { sha256 } from '../helpers/digest.js';

// JSON from upstreams is hostile input: nesting deep enough to overflow the stack of whatever
// walks or re-serialises it must be a clear 502 with a reason, never a 500 or a crash.

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';
/** What an attacker sent: 200,000 levels. */
const LEVELS = 200_000;
const deep = (inner: string) => `${'['.repeat(LEVELS)}${inner}${']'.repeat(LEVELS)}`;

const image = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'a'.repeat(64)}`, size: 2 }, layers: [] }));
const imageDigest = sha256(image);
const deepIndex = Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_INDEX}","manifests":${deep('')}}`);
const deepAnnotations = Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":{},"layers":[],"annotations":{"x":${deep('1')}}}`);
const deepTags = Buffer.from(`{"name":"a/b","tags":${deep('"v1"')}}`);

describe('the JSON reader refuses hostile nesting', () => {
  test('depth is counted outside strings only, escapes included', () => {
    assert.equal(jsonDepth('{"a":[1,{"b":"[[[[{{{{"}]}'), 3);
    assert.equal(jsonDepth('{"a":"\\"[[[[["}'), 1);
    assert.equal(jsonDepth('"[[[["'), 0);
    assert.equal(jsonDepth(deep('')), Infinity);
  });

  test('a document nested deeper than MAX_JSON_DEPTH is refused with what it was', () => {
    const ok = `${'['.repeat(MAX_JSON_DEPTH)}${']'.repeat(MAX_JSON_DEPTH)}`;
    assert.doesNotThrow(() => parseJson(ok, 'ok'));
    assert.throws(() => parseJson(`[${ok}]`, 'the referrers tag sha256-1'), /^JsonRefused: the referrers tag sha256-1 is nested deeper than 64 levels/);
    assert.throws(() => parseJson('{', 'a token answer'), /a token answer is not JSON/);
    assert.equal(tryParseJson(Buffer.from(deep(''))), undefined);
  });
});

describe('hostile JSON from an upstream is a 502 with a reason', () => {
  let up: FaultServer;
  let sigil: SigilHandle;
  const cleanups: Array<() => Promise<void>> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function start(mode: 'warn' | 'enforce') {
    up = await startFaultServer((req, res) => {
      const url = req.url ?? '';
      const send = (status: number, type: string, body: Buffer | string) => {
        res.writeHead(status, { 'content-type': type, 'content-length': String(Buffer.byteLength(body)) });
        res.end(body);
      };
      if (url === '/v2/' || url === '/v2') return send(200, 'application/json', '{}');
      if (url.startsWith(`/v2/a/b/referrers/${imageDigest}`)) return send(200, OCI_INDEX, deepIndex);
      if (url.startsWith('/v2/a/b/referrers/')) return send(404, 'application/json', '{"errors":[{"code":"NOT_FOUND","message":"no"}]}');
      if (url === '/v2/a/b/manifests/deep') return send(200, OCI_MANIFEST, deepAnnotations);
      if (url === '/v2/a/b/manifests/signed-by-deep' || url === `/v2/a/b/manifests/${imageDigest}`) return send(200, OCI_MANIFEST, image);
      // the referrers fallback tag and the .sig tag of the image: deeply nested
      if (url === `/v2/a/b/manifests/${imageDigest.replace(':', '-')}`) return send(200, OCI_INDEX, deepIndex);
      if (url === `/v2/a/b/manifests/${imageDigest.replace(':', '-')}.sig`) return send(200, OCI_MANIFEST, deepAnnotations);
      if (url.startsWith('/v2/a/b/tags/list')) return send(200, 'application/json', deepTags);
      return send(404, 'application/json', '{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no"}]}');
    });
    const server = up;
    cleanups.push(() => server.stop());
    const pem = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const policy = `policies:\n  - name: all\n    match: ["**"]\n    mode: ${mode}\n    authorities:\n      - key: ${JSON.stringify(pem)}\n        tlog: ignore\n`;
    sigil = await startSigil(simpleConfig([{ name: 'up.test', url: up.url }], policy));
    const proxy = sigil;
    cleanups.push(() => proxy.stop());
  }

  async function get(path: string, accept?: string) {
    const res = await request(`${sigil.url}${path}`, { headers: accept ? { accept } : {} });
    const body = Buffer.from(await res.body.arrayBuffer());
    const err = res.statusCode >= 400 ? (JSON.parse(body.toString()) as { errors: Array<{ code: string; message: string }> }).errors[0] : undefined;
    return { status: res.statusCode, err };
  }

  before(() => start('warn'));

  test('a referrers answer nested 200,000 levels deep', async () => {
    const r = await get(`/v2/up.test/a/b/referrers/${imageDigest}`);
    assert.equal(r.status, 502);
    assert.match(r.err!.message, /nested deeper than 64 levels/);
  });

  test('a manifest nested 200,000 levels deep', async () => {
    const r = await get('/v2/up.test/a/b/manifests/deep', OCI_MANIFEST);
    assert.equal(r.status, 502);
    assert.equal(r.err!.code, 'MANIFEST_INVALID');
    assert.match(r.err!.message, /nested deeper than 64 levels/);
  });

  test('a tag list nested 200,000 levels deep', async () => {
    const r = await get('/v2/up.test/a/b/tags/list');
    assert.equal(r.status, 502);
  });

  test('signature data nested deep is a failed lookup: denied under enforce, with the reason, and sigil keeps serving', async () => {
    await start('enforce');
    const r = await get('/v2/up.test/a/b/manifests/signed-by-deep', OCI_MANIFEST);
    assert.equal(r.status, 403);
    assert.match(r.err!.message, /nested deeper than 64 levels/);
    const again = await get('/v2/');
    assert.equal(again.status, 200);
  });
});
