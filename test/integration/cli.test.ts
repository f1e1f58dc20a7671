import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { runSigil, spawnSigil } from '../helpers/cli.js';
import { startFaultServer, type FaultServer } from '../helpers/fault-server.js';
import { freePort, waitForHttp } from '../helpers/net.js';
import { tempDir } from '../helpers/temp.js';

let dir: string;
before(async () => {
  dir = await tempDir('sigil-cli-');
});

test('--version, --help, and usage errors exit 2 with the usage', async () => {
  const v = await runSigil(['--version']);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^sigil \d+\.\d+\.\d+/);
  const h = await runSigil(['--help']);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /sigil serve/);
  for (const args of [[], ['frobnicate'], ['serve', '--nope'], ['config'], ['serve', '--config']]) {
    const r = await runSigil(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stdout + r.stderr, /Usage:/);
  }
});

test('sigil <command> --help prints that command\'s help and exits 0; a usage error of the command prints it, not the whole usage', async () => {
  for (const command of ['serve', 'verify', 'mirror', 'cache', 'config']) {
    const h = await runSigil([command, '--help']);
    assert.equal(h.code, 0, command);
    assert.match(h.stdout, new RegExp(`^Usage:\n  sigil ${command} `), command);
    assert.doesNotMatch(h.stdout, /Config lookup/, `${command}: the whole usage`);
  }
  const bad = await runSigil(['cache', 'prune', '--older-than', 'soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^sigil: --older-than: 'soon' is not an age/);
  assert.match(bad.stderr, /Usage:\n  sigil cache ls/);
  assert.doesNotMatch(bad.stderr, /sigil serve/);
});

test('config check: built-in default is valid; a bad file exits 2 naming each YAML path', async () => {
  const empty = join(dir, 'empty');
  await mkdir(empty);
  const d = await runSigil(['config', 'check'], { cwd: empty });
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stdout, /built-in default/);
  const bad = join(dir, 'bad.yaml');
  await writeFile(bad, 'server:\n  listen: nope\nupstreams:\n  - name: x\n    url: ftp://x\npolicies:\n  - name: p\n    match: ["**"]\n    mode: maybe\n');
  const b = await runSigil(['config', 'check', '--config', bad]);
  assert.equal(b.code, 2);
  assert.match(b.stderr, /server\.listen/);
  assert.match(b.stderr, /upstreams\[0\]\.url/);
  assert.match(b.stderr, /policies\[0\]\.mode/);
  const missing = await runSigil(['config', 'check', '--config', join(dir, 'nope.yaml')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /nope\.yaml/);
  const viaEnv = await runSigil(['serve'], { env: { SIGIL_CONFIG: bad } });
  assert.equal(viaEnv.code, 2);
  assert.match(viaEnv.stderr, /policies\[0\]\.mode/);
});

let slow: FaultServer | undefined;
after(async () => {
  await slow?.stop();
});

test('SIGTERM drains an in-flight blob download, then exits 0', async () => {
  const CHUNKS = 10;
  const CHUNK = Buffer.alloc(64 * 1024, 1);
  slow = await startFaultServer((_req, res) => {
    res.writeHead(206, { 'content-type': 'application/octet-stream', 'content-length': String(CHUNKS * CHUNK.length), 'content-range': `bytes 0-${CHUNKS * CHUNK.length - 1}/${CHUNKS * CHUNK.length * 2}` });
    let i = 0;
    const tick = setInterval(() => {
      res.write(CHUNK);
      if (++i === CHUNKS) {
        clearInterval(tick);
        res.end();
      }
    }, 100);
  });
  const port = await freePort();
  const cfg = join(dir, 'drain.yaml');
  await writeFile(cfg, `server:\n  listen: 127.0.0.1:${port}\n  logLevel: warn\nupstreams:\n  - name: slow.test\n    url: ${slow.url}\n`);
  const s = spawnSigil(['serve', '--config', cfg]);
  await waitForHttp(`http://127.0.0.1:${port}/healthz`, 15_000);
  const res = await request(`http://127.0.0.1:${port}/v2/slow.test/a/b/blobs/sha256:${'c'.repeat(64)}`, { headers: { range: 'bytes=0-' } });
  assert.equal(res.statusCode, 206);
  const body = res.body.arrayBuffer();
  s.process.kill('SIGTERM');
  const got = Buffer.from(await body);
  assert.equal(got.length, CHUNKS * CHUNK.length, 'the in-flight download finished');
  assert.equal(await s.exited, 0, s.out.stderr);
  await assert.rejects(request(`http://127.0.0.1:${port}/healthz`));
});

test('`sigil serve` with no config file starts on the built-in default (0.0.0.0:5000, warn mode)', async () => {
  const empty = join(dir, 'default');
  await mkdir(empty);
  const s = spawnSigil(['serve'], { cwd: empty });
  try {
    await waitForHttp('http://127.0.0.1:5000/healthz', 15_000);
    const ready = await request('http://127.0.0.1:5000/readyz');
    assert.equal(ready.statusCode, 200);
    await ready.body.dump();
    const v2 = await request('http://127.0.0.1:5000/v2/');
    assert.equal(v2.headers['docker-distribution-api-version'], 'registry/2.0');
    await v2.body.dump();
  } finally {
    s.process.kill('SIGINT');
  }
  assert.equal(await s.exited, 0, s.out.stderr);
  assert.match(s.out.stdout, /built-in default/);
});
