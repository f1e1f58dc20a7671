// Real containerd 1.6 (ctr) and skopeo 1.9 against a real docker-registry 2.8, no sigil in
// between: proves the client harness works here, and pins down what these clients send to a
// mirror (see the top of test/helpers/containerd.ts), which the README and sigil rely on.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { startContainerd } from '../helpers/containerd.js';
import type { ContainerdHandle } from '../helpers/containerd.js';
import { startFaultServer } from '../helpers/fault-server.js';
import type { FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { getBlob, makeLayer, pushImage, pushIndex } from '../helpers/push.js';
import { startRegistry } from '../helpers/registry.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { skopeoCopyToDir, skopeoInspect } from '../helpers/skopeo.js';
import { sha256 } from '../helpers/digest.js';

const TEST_TIMEOUT_MS = 60_000; // a pull of a few KiB takes ~50 ms; anything near this is a hang
const PULL_TIMEOUT_MS = 30_000;

const hex = (digest: string): string => digest.replace(/^sha256:/, '');

/** A request a recording proxy saw, with the status it answered. */
interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  status: number;
}

interface RecordingProxy {
  readonly server: FaultServer;
  readonly seen: Seen[];
  /** Lines like `HEAD /v2/r/manifests/t?ns=x -> 200`, for assertion messages. */
  trace(): string;
}

/**
 * Forwards every request to `upstream` and records it, unless `deny` returns a status for it,
 * which is then answered with an OCI DENIED error body instead.
 */
async function startRecordingProxy(upstream: string, deny?: (method: string, path: string) => number | undefined): Promise<RecordingProxy> {
  const seen: Seen[] = [];
  const server = await startFaultServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy.invalid');
    const entry: Seen = { method: req.method ?? '', path: url.pathname, query: url.searchParams, status: 0 };
    seen.push(entry);
    const denied = deny?.(entry.method, entry.path);
    if (denied !== undefined) {
      entry.status = denied;
      req.resume();
      const body = JSON.stringify({ errors: [{ code: 'DENIED', message: 'denied by the recording proxy' }] });
      res.writeHead(denied, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
      res.end(entry.method === 'HEAD' ? undefined : body);
      return;
    }
    const target = new URL(req.url ?? '/', upstream);
    const fwd = httpRequest(target, { method: req.method, headers: { ...req.headers, host: target.host } }, (up) => {
      entry.status = up.statusCode ?? 0;
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', (err) => res.destroy(err));
    req.pipe(fwd);
  });
  return {
    server,
    seen,
    trace: () => seen.map((s) => `${s.method} ${s.path}${s.query.size ? `?${s.query}` : ''} -> ${s.status}`).join('\n'),
  };
}

const mirrorToml = (server: string, mirror: string, capabilities = '["pull", "resolve"]'): string =>
  `server = "${server}"\n\n[host."${mirror}"]\n  capabilities = ${capabilities}\n`;

describe('real clients against docker-registry directly', { timeout: 5 * TEST_TIMEOUT_MS }, () => {
  let registry: RegistryHandle;
  let ctd: ContainerdHandle;
  const proxies: RecordingProxy[] = [];
  const skopeoDir = (): Promise<string> => tempDir('sigil-skopeo-dir');

  before(async () => {
    [registry, ctd] = await Promise.all([startRegistry(), startContainerd()]);
  });

  after(async () => {
    await Promise.all([...proxies.map((p) => p.server.stop()), ctd?.stop(), registry?.stop()]);
  });

  const proxy = async (deny?: (method: string, path: string) => number | undefined): Promise<RecordingProxy> => {
    const p = await startRecordingProxy(registry.url, deny);
    proxies.push(p);
    return p;
  };

  test('containerd pulls and unpacks an image by tag through hosts.toml (server = the registry)', { timeout: TEST_TIMEOUT_MS }, async () => {
    const files = [makeLayer(Buffer.from('hello from layer 0\n'), 'etc/sigil/zero.txt'), makeLayer(Buffer.from('layer one\n'), 'usr/share/sigil/one.txt')];
    const pushed = await pushImage(registry, 'direct/single', 'v1', { layers: files.map((f) => f.blob) });
    // a ref host that answers nothing: only the hosts.toml can lead containerd to the registry
    const refHost = 'registry.sigil.invalid:5000';
    await ctd.writeHosts(refHost, `server = "${registry.url}"\n`);
    const ref = `${refHost}/direct/single:v1`;

    const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
    assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, new RegExp(`unpacking linux/amd64 ${pushed.digest}`));
    assert.ok((await ctd.images()).includes(ref));
    assert.deepEqual(await ctd.unpackedFiles(ref), ['etc/sigil/zero.txt', 'usr/share/sigil/one.txt']);
    assert.equal((await ctd.readUnpackedFile(ref, '/etc/sigil/zero.txt')).toString(), 'hello from layer 0\n');
    assert.equal((await ctd.readUnpackedFile(ref, '/usr/share/sigil/one.txt')).toString(), 'layer one\n');
  });

  test('containerd pulls a multi-arch index and unpacks only linux/amd64', { timeout: TEST_TIMEOUT_MS }, async () => {
    const index = await pushIndex(registry, 'direct/multi', 'v1', [
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
      { os: 'linux', architecture: 'amd64' },
    ]);
    const [arm64, amd64] = index.children;
    await ctd.writeHosts(registry.host, `server = "${registry.url}"\n`);
    const ref = `${registry.host}/direct/multi:v1`;

    const res = await ctd.pull(ref, { platform: 'linux/amd64', timeoutMs: PULL_TIMEOUT_MS });
    assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}`);
    assert.match(res.stdout, new RegExp(`unpacking linux/amd64 ${index.digest}`));
    assert.ok((await ctd.images()).includes(ref));

    const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
    assert.ok(content.includes(index.digest) && content.includes(amd64.digest) && content.includes(amd64.layers[0].digest));
    assert.ok(!content.includes(arm64.layers[0].digest), 'the arm64 layer must not be fetched');

    assert.deepEqual(await ctd.unpackedFiles(ref), ['sigil-test/layer-0']);
    const unpacked = await ctd.readUnpackedFile(ref, 'sigil-test/layer-0');
    const layerTar = (digest: string): Promise<Buffer> => getBlob(registry, 'direct/multi', digest).then((r) => gunzipSync(r.body));
    assert.ok((await layerTar(amd64.layers[0].digest)).includes(unpacked), 'the unpacked file is the amd64 layer');
    assert.ok(!(await layerTar(arm64.layers[0].digest)).includes(unpacked));
    await assert.rejects(ctd.unpackedFiles(ref, { platform: 'linux/arm64/v8' }), new RegExp(`${arm64.digest}.*not found`));
  });

  test('skopeo copies an image to dir: with its manifest and blobs', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pushed = await pushImage(registry, 'direct/skopeo', 'v1', { layers: 2 });
    const dir = await skopeoDir();
    const out = join(dir, 'image');

    const res = await skopeoCopyToDir(`docker://${registry.host}/direct/skopeo:v1`, out);
    assert.equal(res.code, 0, `skopeo copy failed:\n${res.stdout}\n${res.stderr}`);
    const manifest = await readFile(join(out, 'manifest.json'));
    assert.equal(sha256(manifest), pushed.digest, 'dir: keeps the manifest bytes as served');
    for (const blob of [pushed.config, ...pushed.layers]) {
      assert.equal(sha256(await readFile(join(out, hex(blob.digest)))), blob.digest);
    }
    assert.deepEqual((await readdir(out)).sort(), ['manifest.json', 'version', hex(pushed.config.digest), ...pushed.layers.map((l) => hex(l.digest))].sort());

    const raw = await skopeoInspect(`docker://${registry.host}/direct/skopeo:v1`, { raw: true });
    assert.equal(raw.code, 0, raw.stderr);
    assert.equal(sha256(Buffer.from(raw.stdout)), pushed.digest);
  });

  test('skopeo picks the requested platform from an index', { timeout: TEST_TIMEOUT_MS }, async () => {
    const index = await pushIndex(registry, 'direct/skopeo-multi', 'v1', [
      { os: 'linux', architecture: 'amd64' },
      { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    const dir = await skopeoDir();
    const res = await skopeoCopyToDir(`docker://${registry.host}/direct/skopeo-multi:v1`, join(dir, 'arm64'), { platform: 'linux/arm64/v8' });
    assert.equal(res.code, 0, `skopeo copy failed:\n${res.stdout}\n${res.stderr}`);
    assert.equal(sha256(await readFile(join(dir, 'arm64', 'manifest.json'))), index.children[1].digest);
  });

  describe('what containerd sends to a mirror', () => {
    test('[host] with pull,resolve: HEAD by tag, then GETs by digest, all with ?ns=<ref host>, no /v2/ ping', { timeout: TEST_TIMEOUT_MS }, async () => {
      const repo = 'library/traced';
      const index = await pushIndex(registry, repo, '1.0', [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }], { layers: 2 });
      const amd64 = index.children[0];
      const mirror = await proxy();
      // docker.io as the ref host, as on a real node; server and mirror are both local
      await ctd.writeHosts('docker.io', mirrorToml(registry.url, mirror.server.url));

      const res = await ctd.pull(`docker.io/${repo}:1.0`, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}`);
      const trace = mirror.trace();
      assert.ok(mirror.seen.every((s) => s.query.get('ns') === 'docker.io' && [...s.query.keys()].length === 1), trace);
      assert.ok(!mirror.seen.some((s) => s.path === '/v2/' || s.path === '/v2'), `no ping:\n${trace}`);
      assert.deepEqual(mirror.seen.slice(0, 3).map((s) => `${s.method} ${s.path}`), [
        `HEAD /v2/${repo}/manifests/1.0`,
        `GET /v2/${repo}/manifests/${index.digest}`,
        `GET /v2/${repo}/manifests/${amd64.digest}`,
      ], trace);
      const blobs = mirror.seen.slice(3).map((s) => `${s.method} ${s.path}`).sort();
      const want = [amd64.config, ...amd64.layers].map((b) => `GET /v2/${repo}/blobs/${b.digest}`).sort();
      assert.deepEqual(blobs, want, trace);
      assert.ok(mirror.seen.every((s) => s.status === 200), trace);

      // a second pull of content already in the store only re-resolves the tag
      const before = mirror.seen.length;
      assert.equal((await ctd.pull(`docker.io/${repo}:1.0`, { timeoutMs: PULL_TIMEOUT_MS })).code, 0);
      assert.deepEqual(mirror.seen.slice(before).map((s) => `${s.method} ${s.path}`), [`HEAD /v2/${repo}/manifests/1.0`], mirror.trace());
    });

    test('a pull by digest starts with HEAD /manifests/<digest>', { timeout: TEST_TIMEOUT_MS }, async () => {
      const pushed = await pushImage(registry, 'direct/by-digest', 'v1');
      const mirror = await proxy();
      await ctd.writeHosts(registry.host, mirrorToml(registry.url, mirror.server.url));
      const res = await ctd.pull(`${registry.host}/direct/by-digest@${pushed.digest}`, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}`);
      assert.deepEqual(mirror.seen.slice(0, 2).map((s) => `${s.method} ${s.path}`), [
        `HEAD /v2/direct/by-digest/manifests/${pushed.digest}`,
        `GET /v2/direct/by-digest/manifests/${pushed.digest}`,
      ], mirror.trace());
      assert.ok(mirror.seen.every((s) => s.query.get('ns') === registry.host), mirror.trace());
    });

    test('a 403 from a mirror falls through to `server`: the pull succeeds from the upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      const pushed = await pushImage(registry, 'direct/denied', 'v1');
      const upstream = await proxy();
      const mirror = await proxy(() => 403);
      await ctd.writeHosts(registry.host, mirrorToml(upstream.server.url, mirror.server.url));

      const ref = `${registry.host}/direct/denied:v1`;
      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `the 403 is not final:\n${res.stdout}\n${res.stderr}`);
      assert.ok((await ctd.images()).includes(ref));
      // the mirror was asked first for everything, and every request was then repeated upstream
      const asked = (p: RecordingProxy): string[] => p.seen.map((s) => `${s.method} ${s.path}`).sort(); // blobs come in parallel
      assert.deepEqual(asked(mirror), asked(upstream), `mirror:\n${mirror.trace()}\nupstream:\n${upstream.trace()}`);
      assert.ok(asked(mirror).includes(`GET /v2/direct/denied/manifests/${pushed.digest}`));
      assert.ok(mirror.seen.every((s) => s.status === 403) && upstream.seen.every((s) => s.status === 200));
    });

    test('a 403 from the only host (server = the proxy) fails the pull', { timeout: TEST_TIMEOUT_MS }, async () => {
      await pushImage(registry, 'direct/denied-only', 'v1');
      const only = await proxy(() => 403);
      await ctd.writeHosts(registry.host, `server = "${only.server.url}"\n`);
      const ref = `${registry.host}/direct/denied-only:v1`;
      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, new RegExp(`pulling from host ${only.server.host} failed with status code \\[manifests v1\\]: 403 Forbidden`));
      assert.deepEqual(only.seen.map((s) => `${s.method} ${s.path}?${s.query}`), [`HEAD /v2/direct/denied-only/manifests/v1?ns=${encodeURIComponent(registry.host)}`]);
      assert.ok(!(await ctd.images()).includes(ref));
    });

    test('containerd 1.6.20 ignores a hosts.toml that has `server` but no [host] table', { timeout: TEST_TIMEOUT_MS }, async () => {
      await pushImage(registry, 'direct/quirk', 'v1');
      const refHost = await proxy(() => 404); // stands for the real upstream the ref names
      const hostDir = join(ctd.hostsDir, refHost.server.host);
      await mkdir(hostDir, { recursive: true });
      await writeFile(join(hostDir, 'hosts.toml'), `server = "${registry.url}"\n`); // as written, without writeHosts' fix
      const ref = `${refHost.server.host}/direct/quirk:v1`;

      const ignored = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(ignored.code, 0);
      assert.match(ignored.stderr, /failed to decode hosts\.toml.*invalid `host` tree/);
      assert.deepEqual(refHost.seen.map((s) => `${s.method} ${s.path}`), ['HEAD /v2/direct/quirk/manifests/v1'], 'went to the ref host');

      await ctd.writeHosts(refHost.server.host, `server = "${registry.url}"\n`); // appends an empty [host]
      const honoured = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(honoured.code, 0, `${honoured.stdout}\n${honoured.stderr}`);
      assert.equal(refHost.seen.length, 1, 'the ref host was not asked again');
    });
  });

  test('what skopeo sends: /v2/ ping, GET manifest by tag (no HEAD), blobs; inspect also lists tags', { timeout: TEST_TIMEOUT_MS }, async () => {
    const pushed = await pushImage(registry, 'direct/skopeo-trace', 'v1');
    const p = await proxy();
    const dir = await skopeoDir();
    const copy = await skopeoCopyToDir(`docker://${p.server.host}/direct/skopeo-trace:v1`, join(dir, 'img'));
    assert.equal(copy.code, 0, copy.stderr);
    const asked = p.seen.map((s) => `${s.method} ${s.path}${s.query.size ? `?${s.query}` : ''}`);
    assert.deepEqual(asked.slice(0, 2), ['GET /v2/', 'GET /v2/direct/skopeo-trace/manifests/v1'], p.trace());
    assert.deepEqual(asked.slice(2).sort(), [pushed.config, ...pushed.layers].map((b) => `GET /v2/direct/skopeo-trace/blobs/${b.digest}`).sort(), p.trace());

    const before = p.seen.length;
    const inspect = await skopeoInspect(`docker://${p.server.host}/direct/skopeo-trace:v1`);
    assert.equal(inspect.code, 0, inspect.stderr);
    assert.equal((JSON.parse(inspect.stdout) as { Digest: string }).Digest, pushed.digest);
    assert.ok(p.seen.slice(before).some((s) => s.method === 'GET' && s.path === '/v2/direct/skopeo-trace/tags/list'), p.trace());

    // skopeo shrugs off a DENIED tag list (ECR does that) but not other errors
    for (const [status, ok] of [[403, true], [404, false], [500, false]] as const) {
      const tagsDenied = await proxy((method, path) => (path.endsWith('/tags/list') ? status : undefined));
      const r = await skopeoInspect(`docker://${tagsDenied.server.host}/direct/skopeo-trace:v1`);
      assert.equal(r.code === 0, ok, `tags/list ${status}: ${r.stderr}`);
    }
  });
});
