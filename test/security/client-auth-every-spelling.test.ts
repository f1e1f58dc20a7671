import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { startForwarder, type Forwarder } from '../helpers/forwarder.js';
import { tempDir } from '../helpers/temp.js';
import { pushImage, type PushedImage } from '../helpers/push.js';
import { rawRequest, type RawResponse } from '../helpers/raw-http.js';
import { startRegistry, type RegistryHandle } from '../helpers/registry.js';
import { startSigil, simpleConfig, type SigilHandle } from '../helpers/sigil.js';
import { startTokenServer, type TokenServerHandle } from '../helpers/token-server.js';

// A private upstream (token auth, no anonymous pull) that sigil reads with its own credentials,
// behind a counting forwarder; sigil serves it to clients only with htpasswd credentials.
let tokens: TokenServerHandle;
let registry: RegistryHandle;
let forwarder: Forwarder;
let image: PushedImage;
let sigil: SigilHandle;

const REPO = 'sec/app';
const GOOD = `Basic ${Buffer.from('alice:s3cret').toString('base64')}`;

before(async () => {
  tokens = await startTokenServer({ users: { puller: 'pw', pusher: 'pp' }, anonymousPull: false });
  registry = await startRegistry({ tokenAuth: tokens });
  image = await pushImage({ url: registry.url, username: 'pusher', password: 'pp' }, REPO, 'v1');
  forwarder = await startForwarder(registry.url);
  const dir = await tempDir('sigil-auth-spelling-');
  const file = join(dir, 'htpasswd');
  await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 5).replace(/^\$2b\$/, '$2y$')}\n`);
  sigil = await startSigil(
    simpleConfig(
      [{ name: 'priv.test', url: forwarder.url, extra: '    credentials:\n      username: puller\n      password: pw\n' }],
      '\ndefaultUpstream: priv.test\n',
    ).replace('server:\n', `server:\n  auth:\n    htpasswd: ${file}\n`),
  );
});
after(async () => {
  await sigil?.stop();
  await forwarder?.stop();
  await registry?.stop();
  await tokens?.stop();
});

/** What sigil asked the private upstream (directly, or its token server: the test's push is not counted). */
function upstreamSeen(): number {
  return forwarder.requests.length + tokens.requests.filter((r) => r.user !== 'pusher').length;
}

/** Every API that serves registry content, as the path after `/v2/` (two routings for manifests). */
function endpoints(): Record<string, string> {
  return {
    base: '',
    manifest: `${REPO}/manifests/v1`,
    'manifest (upstream prefix)': `priv.test/${REPO}/manifests/v1`,
    'manifest by digest': `${REPO}/manifests/${image.digest}`,
    blob: `${REPO}/blobs/${image.layers[0].digest}`,
    'config blob': `${REPO}/blobs/${image.config.digest}`,
    tags: `${REPO}/tags/list`,
    referrers: `${REPO}/referrers/${image.digest}`,
  };
}

/** Request targets that a router may resolve to `/v2/<rest>`, or to nothing. */
function spellings(rest: string, port: number): string[] {
  const tail = rest === '' ? '' : `/${rest}`;
  const enc = (s: string) => s.replace(/\//g, '%2f');
  return [
    `/v2/${rest}`,
    `/v2${tail}`,
    // percent-encoded unreserved characters in the prefix
    `/%762/${rest}`,
    `/v%32/${rest}`,
    `/%76%32/${rest}`,
    `/%76%32${tail}`,
    `/%56%32/${rest}`,
    `/%2576%32/${rest}`,
    // case
    `/V2/${rest}`,
    // absolute-form (RFC 9112 3.2.2), with this and another authority, and scheme case
    `http://127.0.0.1:${port}/v2/${rest}`,
    `http://127.0.0.1:${port}/%762/${rest}`,
    `http://elsewhere.example/v2/${rest}`,
    `HTTP://127.0.0.1:${port}/v2/${rest}`,
    `https://127.0.0.1:${port}/v2/${rest}`,
    // fragments, params, query in odd places
    `/v2/${rest}#x`,
    `/v2#/${rest}`,
    `/%762/${rest}#frag`,
    `/v2;x/${rest}`,
    `/v2/${rest};x`,
    `/%762;p=1/${rest}`,
    `/v2?/${rest}`,
    // slashes and dot segments
    `//v2/${rest}`,
    `/v2//${rest}`,
    `/./v2/${rest}`,
    `/v2/./${rest}`,
    `/v2/../v2/${rest}`,
    `/x/../v2/${rest}`,
    `/%2e/v2/${rest}`,
    `/v2/%2e%2e/v2/${rest}`,
    // encoded slashes
    `/v2%2f${enc(rest)}`,
    `/v2%2F${rest}`,
    `/v2/${enc(rest)}`,
    `%2fv2/${rest}`,
    // trailing dots and slashes
    `/v2./${rest}`,
    `/v2/${rest}.`,
    `/v2/${rest}/`,
    // backslash
    `/v2\\${rest}`,
  ];
}

/** Nothing of the image may be in an answer to an unauthenticated client: an error body or none. */
function assertNoContent(res: RawResponse, what: string): void {
  assert.ok(res.status >= 400, `${what}: ${res.status} ${res.body.slice(0, 200)}`);
  assert.equal(res.headers['docker-content-digest'], undefined, what);
  if (res.body === '') return;
  // sigil's OCI error body, or node's/fastify's answer to a request line it cannot parse
  const keys = Object.keys(JSON.parse(res.body) as object).sort().join(',');
  assert.ok(keys === 'errors' || keys === 'error,message,statusCode', `${what}: ${res.body.slice(0, 200)}`);
}

/** Unauthenticated, the whole matrix answers 401 (a route) or 400/404 (no route), and reaches no upstream. */
async function assertMatrixClosed(label: string, authedOk: ReadonlySet<string>): Promise<number> {
  const seen = upstreamSeen();
  let tried = 0;
  for (const rest of Object.values(endpoints())) {
    for (const target of spellings(rest, sigil.port)) {
      for (const method of ['GET', 'HEAD']) {
        for (const authorization of [undefined, `Basic ${Buffer.from('alice:wrong').toString('base64')}`]) {
          const what = `${label}: ${method} ${target}${authorization ? ' (wrong password)' : ''}`;
          const res = await rawRequest(sigil.port, method, target, authorization ? { authorization } : {});
          tried++;
          assert.ok([400, 401, 404].includes(res.status), `${what}: ${res.status}`);
          assertNoContent(res, what);
          if (res.status === 401) assert.equal(res.headers['www-authenticate'], 'Basic realm="sigil"', what);
          // A spelling that serves content with credentials is a route: without them it is a 401.
          if (authedOk.has(`${method} ${target}`)) assert.equal(res.status, 401, what);
        }
      }
    }
  }
  assert.equal(upstreamSeen(), seen, `${label}: unauthenticated requests reached the private upstream`);
  return tried;
}

test('without valid credentials no spelling of a /v2/ request target reaches the private upstream or serves its content', async () => {
  // Cold: nothing cached, so any bypass would have to ask the upstream.
  const tried = await assertMatrixClosed('cold', new Set());
  assert.equal(upstreamSeen(), 0);

  // Credentials work for the normal spelling (the matrix above is not closed because all is).
  const authedOk = new Set<string>();
  for (const [name, rest] of Object.entries(endpoints())) {
    const res = await rawRequest(sigil.port, 'GET', `/v2/${rest}`, { authorization: GOOD });
    assert.equal(res.status, 200, `${name} with credentials: ${res.status} ${res.body.slice(0, 200)}`);
  }
  assert.ok(upstreamSeen() > 0, 'the authenticated pulls went to the upstream');
  const text = await (await fetch(`${sigil.url}/metrics`)).text();
  for (const route of ['manifest', 'blob', 'tags', 'referrers']) {
    assert.match(text, new RegExp(`sigil_http_requests_total\\{route="${route}",method="GET",status="200"\\} [1-9]`), route);
  }

  // Which odd spellings the router resolves to a content route (those must be 401s without credentials).
  for (const rest of Object.values(endpoints())) {
    for (const target of spellings(rest, sigil.port)) {
      for (const method of ['GET', 'HEAD']) {
        const res = await rawRequest(sigil.port, method, target, { authorization: GOOD });
        if (res.status >= 200 && res.status < 300) authedOk.add(`${method} ${target}`);
      }
    }
  }
  // The examples are routes, so the matrix does probe routes and not only 404s.
  for (const target of [`/%762/${REPO}/manifests/v1`, `/v%32/${REPO}/tags/list`, `/%76%32/${REPO}/blobs/${image.layers[0].digest}`, `http://127.0.0.1:${sigil.port}/v2/${REPO}/referrers/${image.digest}`]) {
    assert.ok(authedOk.has(`GET ${target}`), `GET ${target} is a route with credentials`);
  }

  // Warm: caches hold the manifest, tags and verdicts now; still nothing without credentials.
  const triedWarm = await assertMatrixClosed('warm', authedOk);
  assert.equal(triedWarm, tried);
  process.stdout.write(`# ${tried} unauthenticated requests per pass; ${authedOk.size} method+target pairs serve content with credentials\n`);
});

test('push and delete are refused before any body is read, whatever the spelling: 401 without credentials, 405 with', async () => {
  const seen = upstreamSeen();
  const uploads = `${REPO}/blobs/uploads/`;
  const targets = [
    `/v2/${uploads}`,
    `/%762/${uploads}`,
    `/v%32/${uploads}`,
    `/%76%32/${uploads}`,
    `http://127.0.0.1:${sigil.port}/v2/${uploads}`,
    `/v2/${uploads}#x`,
    `/v2/${REPO}/manifests/v1`,
    `/%762/${REPO}/manifests/v1`,
    `/v2/`,
    `/%762/`,
  ];
  // A declared body that is never sent: an answer that waited for it would time out.
  const body = { 'content-length': String(64 * 1024 * 1024), 'content-type': 'application/octet-stream' };
  for (const target of targets) {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'TRACE']) {
      const anon = await rawRequest(sigil.port, method, target, body);
      assert.equal(anon.status, 401, `${method} ${target} without credentials: ${anon.status} ${anon.body.slice(0, 200)}`);
      assert.equal(anon.headers['www-authenticate'], 'Basic realm="sigil"');
      const authed = await rawRequest(sigil.port, method, target, { ...body, authorization: GOOD });
      assert.equal(authed.status, 405, `${method} ${target} with credentials: ${authed.status} ${authed.body.slice(0, 200)}`);
      assert.match(authed.body, /UNSUPPORTED/);
    }
  }
  assert.equal(upstreamSeen(), seen, 'a refused push or delete reached the upstream');
  const text = await (await fetch(`${sigil.url}/metrics`)).text();
  assert.match(text, /sigil_http_requests_total\{route="push",method="POST",status="405"\} [1-9]/);
});

test('a request that matches no route answers 404 without credentials and reaches no upstream; the operational endpoints stay open', async () => {
  const seen = upstreamSeen();
  for (const target of ['/nothing', '/v3/', `/v2x/${REPO}/manifests/v1`, `/%763/${REPO}/manifests/v1`, `http://127.0.0.1:${sigil.port}/v1/`]) {
    const res = await rawRequest(sigil.port, 'GET', target);
    assert.equal(res.status, 404, `${target}: ${res.status}`);
    assertNoContent(res, target);
  }
  for (const path of ['/healthz', '/readyz', '/metrics']) {
    const res = await rawRequest(sigil.port, 'GET', path);
    assert.equal(res.status, 200, path);
  }
  assert.equal(upstreamSeen(), seen);
});
