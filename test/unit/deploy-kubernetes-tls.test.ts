// The Secret sigil-tls: made by config/kubernetes's kustomization from the files
// config/kubernetes/tls/generate.sh writes (a kept private CA and a certificate it signs for
// the nodes' addresses), so that `kubectl apply -k` either has the Secret or stops naming the
// missing file, instead of leaving pods in ContainerCreating. With kubectl on the PATH, the
// kustomizations are built for real (`kubectl kustomize`, offline).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate, createPrivateKey, createPublicKey } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { cp, readFile, rm } from 'node:fs/promises';
import { createServer, connect, type TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { tempDir } from '../helpers/temp.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const K8S = join(ROOT, 'config/kubernetes');
const GENERATED = ['ca.crt', 'ca.key', 'tls.crt', 'tls.key'];

type Obj = Record<string, any>; // manifests are untyped YAML: property chains are checked by the asserts

function onPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/** A TLS handshake with a server holding `cert`/`key`, the client trusting only `ca`, for `servername`. */
async function handshake(cert: string, key: string, ca: string, servername: string): Promise<{ authorized: boolean; error?: string }> {
  const server = createServer({ cert, key }, (s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  try {
    return await new Promise((resolve, reject) => {
      const socket: TLSSocket = connect({ host: '127.0.0.1', port, ca, servername, rejectUnauthorized: false }, () => {
        resolve({ authorized: socket.authorized, ...(socket.authorizationError ? { error: String(socket.authorizationError) } : {}) });
        socket.destroy();
      });
      socket.once('error', reject);
    });
  } finally {
    server.close();
  }
}

describe('config/kubernetes: the Secret sigil-tls', () => {
  let dir: string;
  const read = (f: string) => readFile(join(dir, 'kubernetes/tls', f), 'utf8');
  const generate = (...args: string[]) => run(join(dir, 'kubernetes/tls/generate.sh'), args, { env: { PATH: process.env.PATH ?? '' } });

  before(async () => {
    // a copy: generate.sh writes next to itself
    dir = await tempDir('sigil-k8s-tls-');
    for (const d of ['kubernetes', 'kubernetes-persistent-store']) await cp(join(ROOT, 'config', d), join(dir, d), { recursive: true, filter: (src) => !GENERATED.some((f) => src.endsWith(`/tls/${f}`)) });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('the kustomization makes it from tls/: a kubernetes.io/tls Secret in sigil, with the CA, under a fixed name; git ignores the files', async () => {
    const k = parse(await readFile(join(K8S, 'kustomization.yaml'), 'utf8')) as Obj;
    const gen = (k.secretGenerator as Obj[]).find((g) => g.name === 'sigil-tls');
    assert.ok(gen);
    assert.equal(gen.namespace, 'sigil');
    assert.equal(gen.type, 'kubernetes.io/tls');
    assert.deepEqual(gen.files, ['tls.crt=tls/tls.crt', 'tls.key=tls/tls.key', 'ca.crt=tls/ca.crt']);
    assert.equal(gen.options.disableNameSuffixHash, true, 'the Deployment\'s volume and the ServiceMonitor name sigil-tls');
    const ignored = (await readFile(join(ROOT, '.gitignore'), 'utf8')).split('\n');
    for (const pattern of ['/config/kubernetes/tls/*.crt', '/config/kubernetes/tls/*.key']) assert.ok(ignored.includes(pattern), pattern);
  });

  test('generate.sh: a CA, and a certificate it signs for the nodes\' addresses and sigil.sigil.svc, that a TLS client trusting the CA accepts', async () => {
    const out = await generate('10.96.0.50', 'sigil.internal.example', 'fd00::50');
    assert.match(out.stdout, /made a CA/);
    const ca = new X509Certificate(await read('ca.crt'));
    const leaf = new X509Certificate(await read('tls.crt'));
    assert.ok(ca.ca, 'ca.crt is a CA');
    assert.ok(!leaf.ca);
    assert.ok(leaf.verify(ca.publicKey), 'signed by the CA');
    assert.equal(leaf.checkIP('10.96.0.50'), '10.96.0.50');
    assert.equal(leaf.checkIP('fd00::50'), 'fd00::50');
    assert.equal(leaf.checkHost('sigil.internal.example'), 'sigil.internal.example');
    assert.equal(leaf.checkHost('sigil.sigil.svc'), 'sigil.sigil.svc', 'the name the ServiceMonitor checks');
    assert.equal(leaf.checkHost('sigil.evil.example'), undefined);
    assert.ok(createPublicKey(createPrivateKey(await read('tls.key'))).equals(leaf.publicKey), 'tls.key is the certificate\'s key');
    const ok = await handshake(await read('tls.crt'), await read('tls.key'), await read('ca.crt'), 'sigil.internal.example');
    assert.deepEqual(ok, { authorized: true });
    const wrongName = await handshake(await read('tls.crt'), await read('tls.key'), await read('ca.crt'), 'other.example');
    assert.equal(wrongName.authorized, false);
    assert.match(wrongName.error ?? '', /ALTNAME|does not match/i);
  });

  test('generate.sh again: the CA stays (the nodes keep trusting it), a new certificate for new addresses', async () => {
    const caBefore = await read('ca.crt');
    const leafBefore = await read('tls.crt');
    const out = await generate('10.96.0.51');
    assert.doesNotMatch(out.stdout, /made a CA/);
    assert.equal(await read('ca.crt'), caBefore);
    assert.notEqual(await read('tls.crt'), leafBefore);
    const leaf = new X509Certificate(await read('tls.crt'));
    assert.ok(leaf.verify(new X509Certificate(caBefore).publicKey));
    assert.equal(leaf.checkIP('10.96.0.51'), '10.96.0.51');
    assert.equal(leaf.checkIP('10.96.0.50'), undefined);
  });

  test('generate.sh refuses what is neither an IP address nor a DNS name, and no address at all, without writing', async () => {
    const leafBefore = await read('tls.crt');
    for (const args of [['bad_name'], ['-x'], []]) {
      await assert.rejects(generate(...args), (err: Error & { code?: number; stderr?: string }) => err.code === 2 && /ADDRESS|neither/.test(err.stderr ?? ''));
    }
    assert.equal(await read('tls.crt'), leafBefore);
  });

  test('kubectl kustomize (when kubectl is on the PATH): the Secret holds the generated files; without them the build stops naming the file', async (t) => {
    const kubectl = onPath('kubectl');
    if (!kubectl) return t.skip('kubectl is not on the PATH');
    const build = async (d: string): Promise<Obj[]> => parseAllDocuments((await run(kubectl, ['kustomize', join(dir, d)], { maxBuffer: 8 << 20 })).stdout).map((x) => x.toJS() as Obj);
    const docs = await build('kubernetes');
    const secret = docs.find((d) => d.kind === 'Secret' && d.metadata.name === 'sigil-tls');
    assert.ok(secret);
    assert.equal(secret.metadata.namespace, 'sigil');
    assert.equal(secret.type, 'kubernetes.io/tls');
    for (const f of ['tls.crt', 'tls.key', 'ca.crt']) assert.equal(Buffer.from(secret.data[f], 'base64').toString(), await read(f), f);
    const deployment = docs.find((d) => d.kind === 'Deployment');
    assert.ok((deployment?.spec.template.spec.volumes as Obj[]).some((v) => v.secret?.secretName === 'sigil-tls'));

    const persistent = await build('kubernetes-persistent-store');
    assert.deepEqual(persistent.filter((d) => d.kind === 'Deployment' || d.kind === 'StatefulSet').map((d) => d.kind), ['StatefulSet']);
    assert.ok(persistent.some((d) => d.kind === 'Secret' && d.metadata.name === 'sigil-tls'));

    const monitoring = await build('kubernetes/monitoring');
    const dashboard = monitoring.find((d) => d.kind === 'ConfigMap');
    assert.equal(dashboard?.metadata.labels.grafana_dashboard, '1');
    assert.ok(JSON.parse(dashboard?.data['grafana-dashboard.json'] as string).panels.length > 0);

    for (const f of GENERATED) await rm(join(dir, 'kubernetes/tls', f));
    await assert.rejects(build('kubernetes'), (err: Error & { stderr?: string }) => /tls\/tls\.crt/.test(err.stderr ?? ''));
  });
});
