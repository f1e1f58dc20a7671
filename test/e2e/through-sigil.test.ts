// Real clients pulling THROUGH sigil: containerd 1.6 (daemon + `ctr --hosts-dir`, the resolver
// CRI uses) and skopeo 1.9, with sigil in-process in front of real docker-registry 2.8
// instances. What these clients send is pinned down in test/helpers/containerd.ts and
// test/helpers/skopeo.ts (re-checked against a bare registry in clients-direct.test.ts).
//
// Two registries hold DIFFERENT images under the same repository names, so every pull below
// proves by its content which upstream sigil routed it to:
//   upstream `registry.test:5000` and `registry.test` → registry A
//   upstream `other.test` (also the defaultUpstream)  → registry B
// No image pushed here is signed: under the `enforce` policy sigil must deny each one (403 DENIED).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { copyFile, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import bcrypt from 'bcryptjs';
import { startContainerd } from '../helpers/containerd.js';
import type { ContainerdHandle } from '../helpers/containerd.js';
import { startFaultServer } from '../helpers/fault-server.js';
import type { FaultServer } from '../helpers/fault-server.js';
import { tempDir } from '../helpers/temp.js';
import { getBlob, makeLayer, pushImage, pushIndex } from '../helpers/push.js';
import type { PushedImage } from '../helpers/push.js';
import { startRegistry } from '../helpers/registry.js';
import type { RegistryHandle } from '../helpers/registry.js';
import { startSigil } from '../helpers/sigil.js';
import type { LogRecord, SigilHandle } from '../helpers/sigil.js';
import { skopeoCopyToDir, skopeoInspect } from '../helpers/skopeo.js';
import { selfSignedCert } from '../helpers/tls.js';
import { sha256 } from '../helpers/digest.js';

const TEST_TIMEOUT_MS = 60_000; // a pull of a few KiB takes well under a second; anything near this is a hang
const PULL_TIMEOUT_MS = 30_000; // ctr/skopeo are killed after this, so a hanging proxy fails the test in time
const BCRYPT_COST = 5; // the lowest cost bcryptjs accepts quickly; strength is irrelevant in a test

const REF_HOST = 'registry.test:5000'; // a registry host that resolves nowhere: only hosts.toml leads to sigil
const REF_HOST_NS = encodeURIComponent(REF_HOST); // registry.test%3A5000, as containerd sends it
const OTHER_HOST = 'other.test';
const PREFIX_NAME = 'registry.test'; // a port-less upstream name, usable as a path prefix in an image reference

const hex = (digest: string): string => digest.replace(/^sha256:/, '');

/** The hosts.toml layout the README recommends: sigil is `server` (the last, and only, host tried). */
const sigilHostsToml = (sigilUrl: string, extra = ''): string =>
  `server = "${sigilUrl}"\n${extra}\n[host."${sigilUrl}"]\n  capabilities = ["pull", "resolve"]\n${extra}`;

/** The UNSAFE layout: the upstream as `server`, sigil as a mirror that containerd falls back FROM. */
const unsafeHostsToml = (upstreamUrl: string, sigilUrl: string): string =>
  `server = "${upstreamUrl}"\n\n[host."${sigilUrl}"]\n  capabilities = ["pull", "resolve"]\n`;

interface ReqLog {
  method: string;
  url: string;
  status?: number;
}

/** The requests sigil logged (fastify's request/response records), from `from` on, in arrival order. */
function requestsSeen(sigil: SigilHandle, from = 0): ReqLog[] {
  const byId = new Map<string, ReqLog>();
  for (const r of sigil.logs.slice(from) as Array<LogRecord & { reqId?: string; req?: { method?: string; url?: string }; res?: { statusCode?: number } }>) {
    if (r.reqId === undefined) continue;
    if (r.req?.url !== undefined) byId.set(r.reqId, { method: r.req.method ?? '', url: r.req.url });
    const seen = byId.get(r.reqId);
    if (seen && r.res?.statusCode !== undefined) seen.status = r.res.statusCode;
  }
  return [...byId.values()];
}

const trace = (reqs: readonly ReqLog[]): string => reqs.map((r) => `${r.method} ${r.url} -> ${r.status ?? '?'}`).join('\n');

/** sigil_upstream_requests_total summed per upstream name. */
async function upstreamCounts(sigil: SigilHandle): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const v of (await sigil.metrics.upstreamRequests.get()).values) {
    const name = String(v.labels.upstream);
    counts.set(name, (counts.get(name) ?? 0) + v.value);
  }
  return counts;
}

/** An image whose one layer holds `path` with `text`, so the unpacked content names its source. */
function pushMarked(registry: RegistryHandle, repo: string, tag: string, path: string, text: string): Promise<PushedImage> {
  return pushImage(registry, repo, tag, { layers: [makeLayer(Buffer.from(text), path).blob] });
}

describe('real clients pulling through sigil', { timeout: 10 * TEST_TIMEOUT_MS }, () => {
  let regA: RegistryHandle;
  let regB: RegistryHandle;
  let ctd: ContainerdHandle;
  let sigil: SigilHandle;
  let work: string;
  const extraSigils: SigilHandle[] = [];
  const faultServers: FaultServer[] = [];

  before(async () => {
    [regA, regB, ctd, work] = await Promise.all([startRegistry(), startRegistry(), startContainerd(), tempDir('sigil-through')]);
    sigil = await startSigil(`server:
  listen: 127.0.0.1:0
  logLevel: info
upstreams:
  - name: "${REF_HOST}"
    url: ${regA.url}
  - name: "${PREFIX_NAME}"
    url: ${regA.url}
  - name: "${OTHER_HOST}"
    url: ${regB.url}
  - name: "${regA.host}"
    url: ${regA.url}
defaultUpstream: "${OTHER_HOST}"
policies:
  - name: secure-enforced
    match: ["${REF_HOST}/team/secure", "${PREFIX_NAME}/team/secure", "${regA.host}/team/secure"]
    mode: enforce
    authorities:
      - keyless:
          issuerRegExp: '^https://issuer\\.example$'
          subjectRegExp: '^https://github\\.com/acme/.+$'
  - name: everything-else
    match: ["**"]
    mode: warn
    authorities:
      - keyless:
          issuerRegExp: '^https://issuer\\.example$'
          subjectRegExp: '^https://github\\.com/acme/.+$'
`);
  });

  after(async () => {
    await Promise.all([sigil?.stop(), ...extraSigils.map((s) => s.stop())]);
    await Promise.all(faultServers.map((f) => f.stop()));
    await Promise.all([ctd?.stop(), regA?.stop(), regB?.stop()]);
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** Every test starts from an empty hosts dir: a leftover hosts.toml must not decide a pull. */
  const resetHosts = async (): Promise<void> => {
    for (const d of await readdir(ctd.hostsDir)) await rm(join(ctd.hostsDir, d), { recursive: true, force: true });
  };

  describe('containerd with sigil as the hosts.toml `server`', () => {
    test('pulls and unpacks an image by tag; sigil routes by ?ns=registry.test%3A5000, not by its default upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      const pushed = await pushImage(regA, 'team/app', 'v1', {
        layers: [makeLayer(Buffer.from('from registry A, layer 0\n'), 'etc/app/zero.txt').blob, makeLayer(Buffer.from('layer one\n'), 'usr/share/app/one.txt').blob],
      });
      // the default upstream has an image at the same path: a pull routed by anything but ns= gets it
      const decoy = await pushMarked(regB, 'team/app', 'v1', 'etc/app/zero.txt', 'DECOY from the default upstream\n');
      assert.notEqual(decoy.digest, pushed.digest);
      await ctd.writeHosts(REF_HOST, sigilHostsToml(sigil.url));
      const ref = `${REF_HOST}/team/app:v1`;
      const from = sigil.logs.length;

      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}\nsigil saw:\n${trace(requestsSeen(sigil, from))}`);
      assert.match(res.stdout, new RegExp(`unpacking linux/amd64 ${pushed.digest}`));
      assert.ok((await ctd.images()).includes(ref));
      assert.deepEqual(await ctd.unpackedFiles(ref), ['etc/app/zero.txt', 'usr/share/app/one.txt']);
      assert.equal((await ctd.readUnpackedFile(ref, '/etc/app/zero.txt')).toString(), 'from registry A, layer 0\n');
      assert.equal((await ctd.readUnpackedFile(ref, '/usr/share/app/one.txt')).toString(), 'layer one\n');

      const seen = requestsSeen(sigil, from);
      const t = trace(seen);
      assert.deepEqual(seen.slice(0, 2).map((r) => `${r.method} ${r.url}`), [
        `HEAD /v2/team/app/manifests/v1?ns=${REF_HOST_NS}`,
        `GET /v2/team/app/manifests/${pushed.digest}?ns=${REF_HOST_NS}`,
      ], t);
      const blobs = seen.slice(2).map((r) => `${r.method} ${r.url}`).sort();
      assert.deepEqual(blobs, [pushed.config, ...pushed.layers].map((b) => `GET /v2/team/app/blobs/${b.digest}?ns=${REF_HOST_NS}`).sort(), t);
      assert.ok(seen.every((r) => r.status === 200), t);
      // the manifest was answered with the warn policy's marker
      const decided = (await sigil.metrics.manifestDecisions.get()).values.find((v) => v.labels.upstream === REF_HOST && v.labels.policy === 'everything-else');
      assert.ok(decided && decided.value >= 2, JSON.stringify(decided));
    });

    test('pulls a multi-arch index for linux/arm64 and unpacks only the arm64 layer', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      const index = await pushIndex(regA, 'team/multi', 'v1', [
        { os: 'linux', architecture: 'amd64' },
        { os: 'linux', architecture: 'arm64' },
      ]);
      const [amd64, arm64] = index.children;
      await ctd.writeHosts(REF_HOST, sigilHostsToml(sigil.url));
      const ref = `${REF_HOST}/team/multi:v1`;
      const from = sigil.logs.length;

      const res = await ctd.pull(ref, { platform: 'linux/arm64', timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `ctr pull failed:\n${res.stdout}\n${res.stderr}\nsigil saw:\n${trace(requestsSeen(sigil, from))}`);
      assert.match(res.stdout, new RegExp(`unpacking linux/arm64 ${index.digest}`));
      const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
      assert.ok(content.includes(index.digest) && content.includes(arm64.digest) && content.includes(arm64.layers[0].digest));
      assert.ok(!content.includes(amd64.layers[0].digest), 'the amd64 layer must not be fetched');

      assert.deepEqual(await ctd.unpackedFiles(ref, { platform: 'linux/arm64' }), ['sigil-test/layer-0']);
      const unpacked = await ctd.readUnpackedFile(ref, 'sigil-test/layer-0', { platform: 'linux/arm64' });
      const layerTar = async (digest: string): Promise<Buffer> => gunzipSync((await getBlob(regA, 'team/multi', digest)).body);
      assert.ok((await layerTar(arm64.layers[0].digest)).includes(unpacked), 'the unpacked file is the arm64 layer');
      assert.ok(!(await layerTar(amd64.layers[0].digest)).includes(unpacked));

      const seen = requestsSeen(sigil, from);
      assert.ok(seen.length >= 5 && seen.every((r) => r.url.endsWith(`?ns=${REF_HOST_NS}`) && r.status === 200), trace(seen));
      assert.ok(seen.some((r) => r.url === `/v2/team/multi/manifests/${arm64.digest}?ns=${REF_HOST_NS}`), trace(seen));
      assert.ok(!seen.some((r) => r.url.includes(amd64.digest)), trace(seen));
    });

    test('_default/hosts.toml: one sigil serves two registries, chosen by ns=', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      // the same repository and tag in both registries, different content
      const inA = await pushMarked(regA, 'team/two', 'v1', 'etc/origin', 'registry A\n');
      const inB = await pushMarked(regB, 'team/two', 'v1', 'etc/origin', 'registry B\n');
      await ctd.writeHosts('_default', sigilHostsToml(sigil.url));
      const refA = `${REF_HOST}/team/two:v1`;
      const refB = `${OTHER_HOST}/team/two:v1`;
      const before = await upstreamCounts(sigil);
      const from = sigil.logs.length;

      for (const ref of [refA, refB]) {
        const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
        assert.equal(res.code, 0, `ctr pull ${ref} failed:\n${res.stdout}\n${res.stderr}\nsigil saw:\n${trace(requestsSeen(sigil, from))}`);
      }
      assert.equal((await ctd.readUnpackedFile(refA, 'etc/origin')).toString(), 'registry A\n');
      assert.equal((await ctd.readUnpackedFile(refB, 'etc/origin')).toString(), 'registry B\n');
      const images = await ctd.images();
      assert.ok(images.includes(refA) && images.includes(refB), images.join('\n'));

      const seen = requestsSeen(sigil, from);
      const heads = seen.filter((r) => r.method === 'HEAD').map((r) => r.url);
      assert.deepEqual(heads, [`/v2/team/two/manifests/v1?ns=${REF_HOST_NS}`, `/v2/team/two/manifests/v1?ns=${OTHER_HOST}`], trace(seen));
      assert.ok(seen.some((r) => r.url === `/v2/team/two/manifests/${inA.digest}?ns=${REF_HOST_NS}`), trace(seen));
      assert.ok(seen.some((r) => r.url === `/v2/team/two/manifests/${inB.digest}?ns=${OTHER_HOST}`), trace(seen));
      const after = await upstreamCounts(sigil);
      const grew = (name: string): number => (after.get(name) ?? 0) - (before.get(name) ?? 0);
      assert.ok(grew(REF_HOST) >= 3 && grew(OTHER_HOST) >= 3, `upstream requests: ${JSON.stringify([...after])}`);
      assert.equal(grew(PREFIX_NAME), 0);
    });

    test('an unconfigured registry behind _default is refused (404), never sent to the default upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      await pushMarked(regB, 'team/stray', 'v1', 'etc/origin', 'registry B\n');
      await ctd.writeHosts('_default', sigilHostsToml(sigil.url));
      const ref = 'unknown.test/team/stray:v1';
      const from = sigil.logs.length;
      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, /404 Not Found|not found/);
      assert.ok(!(await ctd.images()).includes(ref));
      const seen = requestsSeen(sigil, from);
      assert.ok(seen.length >= 1 && seen.every((r) => r.url === '/v2/team/stray/manifests/v1?ns=unknown.test' && r.status === 404), trace(seen));
    });
  });

  describe('enforce fails closed', () => {
    test('the recommended layout: the pull of an image under an enforce policy fails with 403; a warn image pulls', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      const secureImage = await pushMarked(regA, 'team/secure', 'v1', 'etc/secret', 'unsigned\n');
      await pushMarked(regA, 'team/open', 'v1', 'etc/open', 'open\n');
      await ctd.writeHosts(REF_HOST, sigilHostsToml(sigil.url));
      const secure = `${REF_HOST}/team/secure:v1`;
      const open = `${REF_HOST}/team/open:v1`;
      const from = sigil.logs.length;

      const denied = await ctd.pull(secure, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(denied.code, 0, `the enforce image must not pull:\n${denied.stdout}`);
      assert.match(denied.stderr, new RegExp(`pulling from host ${sigil.host.replace(/\./g, '\\.')} failed with status code \\[manifests v1\\]: 403 sigil: no signature found \\(policy secure-enforced\\)`));
      // sigil is listed twice (the [host] entry and `server`): asked twice, denied twice, nothing else tried
      const seenDenied = requestsSeen(sigil, from);
      assert.deepEqual(seenDenied, [1, 2].map(() => ({ method: 'HEAD', url: `/v2/team/secure/manifests/v1?ns=${REF_HOST_NS}`, status: 403 })), trace(seenDenied));
      assert.ok(sigil.logs.slice(from).some((l) => l.policy === 'secure-enforced' && /denied/.test(l.msg ?? '')), 'sigil logged the denial');

      const ok = await ctd.pull(open, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}`);
      assert.equal((await ctd.readUnpackedFile(open, 'etc/open')).toString(), 'open\n');

      const images = await ctd.images();
      assert.ok(!images.includes(secure), `the denied image is not in containerd:\n${images.join('\n')}`);
      assert.ok(images.includes(open));
      const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
      assert.ok(!content.includes(secureImage.digest) && !content.includes(secureImage.layers[0].digest), 'nothing of the denied image reached the content store');
    });

    test('the recommended layout: a pull by digest of an enforced image fails as well', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      const pushed = await pushMarked(regA, 'team/secure', 'v2', 'etc/secret', 'unsigned, by digest\n');
      await ctd.writeHosts(REF_HOST, sigilHostsToml(sigil.url));
      const ref = `${REF_HOST}/team/secure@${pushed.digest}`;
      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, /403 sigil: no signature found \(policy secure-enforced\)/);
      const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
      assert.ok(!content.includes(pushed.digest) && !content.includes(pushed.layers[0].digest), 'nothing of the image reached the content store');
    });

    test('UNSAFE LAYOUT DEMONSTRATION (server = upstream, sigil only a [host] mirror): the enforced image gets through', { timeout: TEST_TIMEOUT_MS }, async () => {
      // This is the layout the README warns against. containerd treats any error status from a
      // mirror as "try the next host", so sigil's 403 only sends it to the upstream directly.
      await resetHosts();
      await pushMarked(regA, 'team/secure', 'v3', 'etc/secret', 'bypassed sigil\n');
      await ctd.writeHosts(REF_HOST, unsafeHostsToml(regA.url, sigil.url));
      const ref = `${REF_HOST}/team/secure:v3`;
      const from = sigil.logs.length;

      const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `the unsafe layout lets the image through:\n${res.stdout}\n${res.stderr}`);
      assert.ok((await ctd.images()).includes(ref));
      assert.equal((await ctd.readUnpackedFile(ref, 'etc/secret')).toString(), 'bypassed sigil\n');
      const seen = requestsSeen(sigil, from);
      assert.ok(seen.some((r) => r.url.startsWith('/v2/team/secure/manifests/') && r.status === 403), `sigil did deny it:\n${trace(seen)}`);
      assert.ok(seen.every((r) => r.status === 403 || r.url.includes('/blobs/')), trace(seen));
    });

    test('UNSAFE LAYOUT DEMONSTRATION (no `server` line, sigil the only [host]): containerd appends the registry itself and the enforced image gets through', { timeout: TEST_TIMEOUT_MS }, async () => {
      // Without `server`, containerd 1.6 adds the image's own registry as the last host.
      // Here the ref names registry A itself (sigil has an upstream of that name, enforced).
      await resetHosts();
      await pushMarked(regA, 'team/secure', 'v4', 'etc/secret', 'bypassed sigil again\n');
      await ctd.writeHosts(regA.host, `[host."${sigil.url}"]\n  capabilities = ["pull", "resolve"]\n`);
      const ref = `${regA.host}/team/secure:v4`;
      const from = sigil.logs.length;

      const res = await ctd.pull(ref, { plainHttp: true, timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `the unsafe layout lets the image through:\n${res.stdout}\n${res.stderr}`);
      assert.equal((await ctd.readUnpackedFile(ref, 'etc/secret')).toString(), 'bypassed sigil again\n');
      const seen = requestsSeen(sigil, from);
      assert.ok(seen.some((r) => r.url === `/v2/team/secure/manifests/v4?ns=${encodeURIComponent(regA.host)}` && r.status === 403), `sigil did deny it:\n${trace(seen)}`);
    });

    for (const blobType of ['application/vnd.oci.image.manifest.v1+json', 'application/octet-stream']) {
      test(`a pull by digest cannot get a denied manifest through /blobs/ (upstream serves manifests there too, as ${blobType})`, { timeout: TEST_TIMEOUT_MS }, async () => {
        // When /manifests/<digest> fails, containerd 1.6 resolves a digest ref with HEAD
        // /blobs/<digest> next. distribution 2.8 answers 404 there; some registries serve the
        // manifest. In front of registry A: a proxy that does, with the given Content-Type.
        await resetHosts();
        const pushed = await pushMarked(regA, 'team/secure', 'blobs', 'etc/secret', 'must not unpack\n');
        const upstream = await startFaultServer((req, res) => {
          if (new URL(req.url ?? '/', 'http://x').pathname === `/v2/team/secure/blobs/${pushed.digest}`) {
            res.writeHead(200, { 'content-type': blobType, 'content-length': String(pushed.manifest.length), 'docker-content-digest': pushed.digest });
            res.end(req.method === 'HEAD' ? undefined : pushed.manifest);
            return;
          }
          const fwd = httpRequest(new URL(req.url ?? '/', regA.url), { method: req.method, headers: { ...req.headers, host: regA.host } }, (up) => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          });
          fwd.on('error', (err) => res.destroy(err));
          req.pipe(fwd);
        });
        faultServers.push(upstream);
        const s2 = await startSigil(`server:
  listen: 127.0.0.1:0
  logLevel: info
upstreams:
  - name: "${REF_HOST}"
    url: ${upstream.url}
policies:
  - name: secure-enforced
    match: ["${REF_HOST}/team/secure"]
    mode: enforce
    authorities:
      - keyless: { issuerRegExp: '^https://issuer\\.example$', subjectRegExp: '^https://github\\.com/acme/.+$' }
`);
        extraSigils.push(s2);
        await ctd.writeHosts(REF_HOST, sigilHostsToml(s2.url));
        const ref = `${REF_HOST}/team/secure@${pushed.digest}`;

        const res = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
        assert.notEqual(res.code, 0, `${res.stdout}\n${res.stderr}`);
        // containerd did try /blobs/<manifest digest>, and sigil refused it without asking the upstream.
        const blobTries = requestsSeen(s2).filter((r) => r.url.startsWith(`/v2/team/secure/blobs/${pushed.digest}`));
        assert.ok(blobTries.length > 0 && blobTries.every((r) => r.status === 403), trace(requestsSeen(s2)));
        assert.ok(!upstream.requests.some((r) => r.url.startsWith(`/v2/team/secure/blobs/${pushed.digest}`)), 'the upstream was not asked for it');
        const content0 = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
        assert.ok(!content0.includes(pushed.digest), 'the denied manifest did not reach containerd through /blobs/');
        const content = (await ctd.ctr(['content', 'ls', '-q'])).stdout.split('\n');
        assert.ok(!content.includes(pushed.config.digest) && !content.includes(pushed.layers[0].digest), 'no config or layer of the denied image was fetched');
        await assert.rejects(ctd.unpackedFiles(ref), 'nothing of it is unpacked');
        if (blobType !== 'application/octet-stream') {
          assert.match(res.stderr, /manifests[ /]sha256:[0-9a-f]{64}(\]|\?ns=registry\.test%3A5000): 403 sigil: [^\n]* \(policy secure-enforced\)/);
          assert.ok(!content.includes(pushed.digest), 'the manifest itself was not fetched');
          assert.ok(!(await ctd.images()).includes(ref));
        }
      });
    }
  });

  describe('skopeo through sigil (plain http)', () => {
    const copyAndCheck = async (src: string, pushed: PushedImage): Promise<void> => {
      const out = join(work, `copy-${Math.random().toString(36).slice(2)}`);
      const res = await skopeoCopyToDir(src, out, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `skopeo copy ${src} failed:\n${res.stdout}\n${res.stderr}`);
      assert.equal(sha256(await readFile(join(out, 'manifest.json'))), pushed.digest, 'the manifest bytes as the upstream stored them');
      for (const blob of [pushed.config, ...pushed.layers]) {
        assert.equal(sha256(await readFile(join(out, hex(blob.digest)))), blob.digest);
      }
      assert.deepEqual((await readdir(out)).sort(), ['manifest.json', 'version', hex(pushed.config.digest), ...pushed.layers.map((l) => hex(l.digest))].sort());
    };

    test('the defaultUpstream route: docker://<sigil>/team/sk:v1 comes from the default upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      const inB = await pushImage(regB, 'team/sk', 'v1', { layers: 2 });
      await pushImage(regA, 'team/sk', 'v1', { layers: 2 });
      const from = sigil.logs.length;
      await copyAndCheck(`docker://${sigil.host}/team/sk:v1`, inB);
      const seen = requestsSeen(sigil, from);
      assert.equal(seen[0]?.url, '/v2/', trace(seen));
      assert.ok(seen.some((r) => r.method === 'GET' && r.url === '/v2/team/sk/manifests/v1' && r.status === 200), trace(seen));

      const inspect = await skopeoInspect(`docker://${sigil.host}/team/sk:v1`, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(inspect.code, 0, inspect.stderr);
      const info = JSON.parse(inspect.stdout) as { Digest: string; RepoTags: string[]; Layers: string[] };
      assert.equal(info.Digest, inB.digest);
      assert.deepEqual(info.RepoTags, ['v1']);
      assert.deepEqual(info.Layers, inB.layers.map((l) => l.digest));

      const raw = await skopeoInspect(`docker://${sigil.host}/team/sk:v1`, { raw: true, timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(raw.code, 0, raw.stderr);
      assert.equal(sha256(Buffer.from(raw.stdout)), inB.digest);
    });

    test('the prefix route: docker://<sigil>/registry.test/team/skp:v2 comes from that upstream', { timeout: TEST_TIMEOUT_MS }, async () => {
      const inA = await pushImage(regA, 'team/skp', 'v2', { layers: 1 });
      await pushImage(regA, 'team/skp', 'v2-extra'); // a second tag, for tags/list
      await pushImage(regB, 'team/skp', 'v2'); // the default upstream has something else there
      const from = sigil.logs.length;
      await copyAndCheck(`docker://${sigil.host}/${PREFIX_NAME}/team/skp:v2`, inA);
      const seen = requestsSeen(sigil, from);
      assert.ok(seen.some((r) => r.url === `/v2/${PREFIX_NAME}/team/skp/manifests/v2` && r.status === 200), trace(seen));

      const inspect = await skopeoInspect(`docker://${sigil.host}/${PREFIX_NAME}/team/skp:v2`, { timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(inspect.code, 0, inspect.stderr);
      const info = JSON.parse(inspect.stdout) as { Name: string; Digest: string; RepoTags: string[] };
      assert.equal(info.Digest, inA.digest);
      assert.deepEqual([...info.RepoTags].sort(), ['v2', 'v2-extra'], 'the tags of registry A');
      assert.ok(requestsSeen(sigil, from).some((r) => r.url === `/v2/${PREFIX_NAME}/team/skp/tags/list` && r.status === 200));
    });

    test('a `host:port` upstream name cannot be a path prefix in an image reference (skopeo refuses it); ns= or a port-less name is needed', { timeout: TEST_TIMEOUT_MS }, async () => {
      const from = sigil.logs.length;
      const res = await skopeoInspect(`docker://${sigil.host}/${REF_HOST}/team/sk:v1`, { raw: true, timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(res.code, 0);
      assert.match(res.stderr, /invalid reference format/);
      assert.equal(requestsSeen(sigil, from).length, 0, 'skopeo never sent it');
    });

    test('an enforced image: skopeo copy fails with 403 DENIED and writes nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
      await pushMarked(regA, 'team/secure', 'sk', 'etc/secret', 'unsigned\n');
      const out = join(work, 'denied');
      const from = sigil.logs.length;
      const res = await skopeoCopyToDir(`docker://${sigil.host}/${PREFIX_NAME}/team/secure:sk`, out, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(res.code, 0, res.stdout);
      assert.match(res.stderr, /reading manifest sk in .*: denied: .*secure-enforced/);
      await assert.rejects(readFile(join(out, 'manifest.json')), { code: 'ENOENT' });
      const seen = requestsSeen(sigil, from);
      assert.ok(seen.some((r) => r.url === `/v2/${PREFIX_NAME}/team/secure/manifests/sk` && r.status === 403), trace(seen));
      assert.ok(!seen.some((r) => r.url.includes('/blobs/')), trace(seen));
    });
  });

  describe('sigil with TLS and htpasswd', () => {
    let tlsSigil: SigilHandle;
    let certPath: string;
    let certDir: string;

    before(async () => {
      const tlsDir = join(work, 'tls');
      await mkdir(tlsDir);
      ({ certPath } = await selfSignedCert(tlsDir));
      const keyPath = join(tlsDir, 'server.key');
      // skopeo's cert dir: *.crt are CAs; a *.key there would need a client *.cert beside it
      certDir = join(work, 'skopeo-certs');
      await mkdir(certDir);
      await copyFile(certPath, join(certDir, 'ca.crt'));
      // htpasswd -B writes $2y$ entries; bcryptjs writes $2b$: the same algorithm
      const htpasswd = join(work, 'htpasswd');
      await writeFile(htpasswd, `alice:${bcrypt.hashSync('s3cret', BCRYPT_COST).replace(/^\$2b\$/, '$2y$')}\n`);
      tlsSigil = await startSigil(`server:
  listen: 127.0.0.1:0
  logLevel: info
  tls:
    cert: ${certPath}
    key: ${keyPath}
  auth:
    htpasswd: ${htpasswd}
upstreams:
  - name: "${REF_HOST}"
    url: ${regA.url}
defaultUpstream: "${REF_HOST}"
`);
      extraSigils.push(tlsSigil);
      assert.match(tlsSigil.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    });

    test('containerd: ctr --user alice:s3cret with `ca = <cert>` in hosts.toml pulls; without credentials 401; without the CA an x509 error', { timeout: TEST_TIMEOUT_MS }, async () => {
      await resetHosts();
      await pushMarked(regA, 'team/tls', 'v1', 'etc/tls', 'over https\n');
      const ref = `${REF_HOST}/team/tls:v1`;

      await ctd.writeHosts(REF_HOST, sigilHostsToml(tlsSigil.url));
      const noCa = await ctd.pull(ref, { user: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(noCa.code, 0);
      assert.match(noCa.stderr, /x509: certificate signed by unknown authority/);

      await ctd.writeHosts(REF_HOST, sigilHostsToml(tlsSigil.url, `ca = ${JSON.stringify(certPath)}\n`));
      const from = tlsSigil.logs.length;
      const anonymous = await ctd.pull(ref, { timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(anonymous.code, 0, anonymous.stdout);
      assert.match(anonymous.stderr, /401 Unauthorized/);
      const wrong = await ctd.pull(ref, { user: 'alice:wrong', timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(wrong.code, 0, wrong.stdout);
      assert.match(wrong.stderr, /401 Unauthorized/);
      assert.ok(!(await ctd.images()).includes(ref));
      const refused = requestsSeen(tlsSigil, from);
      assert.ok(refused.length >= 1 && refused.every((r) => r.status === 401), trace(refused));

      const ok = await ctd.pull(ref, { user: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(ok.code, 0, `${ok.stdout}\n${ok.stderr}\nsigil saw:\n${trace(requestsSeen(tlsSigil, from))}`);
      assert.equal((await ctd.readUnpackedFile(ref, 'etc/tls')).toString(), 'over https\n');
      const served = requestsSeen(tlsSigil, from).filter((r) => r.status === 200);
      assert.ok(served.some((r) => r.url.includes('/blobs/')) && served.every((r) => r.url.endsWith(`?ns=${REF_HOST_NS}`)), trace(served));
      // skip_verify instead of a CA works too (TLS still, unverified)
      await ctd.removeImage(ref);
      await ctd.writeHosts(REF_HOST, sigilHostsToml(tlsSigil.url, 'skip_verify = true\n'));
      const unverified = await ctd.pull(ref, { user: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(unverified.code, 0, `${unverified.stdout}\n${unverified.stderr}`);
      assert.equal((await ctd.readUnpackedFile(ref, 'etc/tls')).toString(), 'over https\n');
      // credentials never reach a log line
      assert.ok(!JSON.stringify(tlsSigil.logs).includes(Buffer.from('alice:s3cret').toString('base64')));
    });

    test('skopeo: --src-creds and --src-cert-dir (verified TLS) copy; without credentials 401', { timeout: TEST_TIMEOUT_MS }, async () => {
      const pushed = await pushImage(regA, 'team/tls-sk', 'v1', { layers: 2 });
      const src = `docker://${tlsSigil.host}/team/tls-sk:v1`;
      const out = join(work, 'tls-copy');

      const anonymous = await skopeoCopyToDir(src, join(work, 'tls-anon'), { tlsVerify: true, certDir, timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(anonymous.code, 0);
      assert.match(anonymous.stderr, /reading manifest v1 in .*: unauthorized/);

      const unverified = await skopeoCopyToDir(src, join(work, 'tls-nocert'), { tlsVerify: true, creds: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.notEqual(unverified.code, 0);
      assert.match(unverified.stderr, /x509|certificate/);

      const res = await skopeoCopyToDir(src, out, { tlsVerify: true, certDir, creds: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
      assert.equal(sha256(await readFile(join(out, 'manifest.json'))), pushed.digest);
      for (const blob of [pushed.config, ...pushed.layers]) assert.equal(sha256(await readFile(join(out, hex(blob.digest)))), blob.digest);

      const insecure = await skopeoInspect(src, { tlsVerify: false, creds: 'alice:s3cret', timeoutMs: PULL_TIMEOUT_MS });
      assert.equal(insecure.code, 0, insecure.stderr);
      assert.equal((JSON.parse(insecure.stdout) as { Digest: string }).Digest, pushed.digest);
    });
  });
});
