// `sigil serve` as a process: SIGHUP reloads instead of ending it, a changed config file reloads
// by itself, --listen and $SIGIL_LISTEN override server.listen, --log-format picks the log form,
// SIGTERM ends it even when nothing reads its log any more.
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { request } from 'undici';
import { runSigil, spawnSigil } from '../helpers/cli.js';
import { freePort, waitForHttp } from '../helpers/net.js';
import { exited, waitExit } from '../helpers/process.js';
import { tempDir } from '../helpers/temp.js';

let dir: string;
before(async () => {
  dir = await tempDir('sigil-serve-reload-');
});

/** A config on a port nothing can bind (1: privileged): served at all only through an override. */
const config = (policy: string, logLevel = 'info') => `server:
  listen: 127.0.0.1:1
  logLevel: ${logLevel}
upstreams:
  - name: reg.test
    url: http://127.0.0.1:9
policies:
  - name: ${policy}
    match: ["**"]
    mode: warn
    authorities:
      - keyless: { issuerRegExp: "^.*$", subjectRegExp: "^.*$" }
`;

async function metric(base: string, sample: string): Promise<number | undefined> {
  const text = await (await request(`${base}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line === undefined ? undefined : Number(line.slice(sample.length + 1));
}

const RELOADED = /"msg":"config reloaded"/g;

test('SIGHUP reloads the config and sigil goes on serving; a changed or broken config file is picked up by itself', async () => {
  const cfg = join(dir, 'sigil.yaml');
  await writeFile(cfg, config('first'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const s = spawnSigil(['serve', '--config', cfg, '--listen', `127.0.0.1:${port}`]);
  try {
    await waitForHttp(`${base}/healthz`, 15_000);

    s.process.kill('SIGHUP');
    const [first] = await s.stdoutMatches(RELOADED, 1);
    assert.ok(first);
    assert.equal(exited(s.process), false, 'SIGHUP ended sigil');
    assert.equal((await request(`${base}/healthz`)).statusCode, 200);
    const line = JSON.parse(s.out.stdout.split('\n').find((l) => l.includes('"msg":"config reloaded"')) ?? '{}') as Record<string, unknown>;
    assert.equal(line.trigger, 'SIGHUP');
    assert.equal(line.generation, 2);
    assert.equal(await metric(base, 'sigil_config_reloads_total{result="success"}'), 1);

    await writeFile(cfg, config('second'));
    await s.stdoutMatches(RELOADED, 2);
    assert.match(s.out.stdout, /"trigger":"file change","config":"[^"]*sigil\.yaml","generation":3,"msg":"config reloaded"/);
    assert.doesNotMatch(s.out.stdout, /needs a restart/, 'the --listen override holds across reloads: nothing to restart for');

    await writeFile(cfg, 'server: [\n');
    await s.stdoutMatches(/"msg":"config reload refused; the running config keeps serving"/g, 1);
    const ready = await request(`${base}/readyz`);
    assert.equal(ready.statusCode, 200);
    assert.match(((await ready.body.json()) as { degraded?: { config?: string } }).degraded?.config ?? '', /\(file change\) refused/);
    assert.equal(await metric(base, 'sigil_config_reloads_total{result="failure"}'), 1);
    assert.equal(exited(s.process), false);
  } finally {
    s.process.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0, s.out.stderr);
});

test('a config file found at the default location and then removed is not replaced by the built-in default: the reload is refused', async () => {
  const cwd = await tempDir('sigil-serve-default-location-');
  await mkdir(join(cwd, 'config'));
  const cfg = join(cwd, 'config', 'sigil.yaml');
  await writeFile(cfg, config('first'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const s = spawnSigil(['serve', '--listen', `127.0.0.1:${port}`], { cwd });
  try {
    await waitForHttp(`${base}/healthz`, 15_000);
    await rm(cfg);
    s.process.kill('SIGHUP');
    await s.stdoutMatches(/"msg":"config reload refused; the running config keeps serving"/g, 1);
    assert.doesNotMatch(s.out.stdout, /"msg":"config reloaded"/, 'the built-in default (every image in warn mode) took over');
    assert.match(s.out.stdout, /config reload: [^"]*config\/sigil\.yaml is gone: a reload does not fall back to the built-in default/);
    const ready = await request(`${base}/readyz`);
    assert.equal(ready.statusCode, 200);
    assert.match(((await ready.body.json()) as { degraded?: { config?: string } }).degraded?.config ?? '', /sigil\.yaml is gone/);

    await writeFile(cfg, config('second'));
    s.process.kill('SIGHUP');
    const [reloaded] = await s.stdoutMatches(/"config":"[^"]*config\/sigil\.yaml","generation":2,"msg":"config reloaded"/g, 1);
    assert.ok(reloaded, 'the file back is loaded');
  } finally {
    s.process.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0, s.out.stderr);
});

test('$SIGIL_LISTEN overrides server.listen, and --listen overrides both', async () => {
  const cfg = join(dir, 'listen.yaml');
  await writeFile(cfg, config('p', 'warn'));
  const [fromEnv, fromFlag] = [await freePort(), await freePort()];
  const s = spawnSigil(['serve', '--config', cfg], { env: { SIGIL_LISTEN: `127.0.0.1:${fromEnv}` } });
  try {
    await waitForHttp(`http://127.0.0.1:${fromEnv}/healthz`, 15_000);
  } finally {
    s.process.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0, s.out.stderr);
  const t = spawnSigil(['serve', '--config', cfg, `--listen=127.0.0.1:${fromFlag}`], { env: { SIGIL_LISTEN: `127.0.0.1:${fromEnv}` } });
  try {
    await waitForHttp(`http://127.0.0.1:${fromFlag}/healthz`, 15_000);
    await assert.rejects(request(`http://127.0.0.1:${fromEnv}/healthz`), 'listening on $SIGIL_LISTEN too');
  } finally {
    t.process.kill('SIGTERM');
  }
  assert.equal(await t.exited, 0, t.out.stderr);
});

/** A guard against a hang, not a timing check: the drain of an idle server takes milliseconds. */
const STOP_GUARD_MS = 15_000;

test('SIGTERM ends sigil serve when the reader of its log is gone (a pipe without reader does not hold the exit)', async () => {
  const cfg = join(dir, 'reader-gone.yaml');
  await writeFile(cfg, config('p'));
  const port = await freePort();
  const s = spawnSigil(['serve', '--config', cfg, '--listen', `127.0.0.1:${port}`]);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 15_000);
    await s.stdoutMatches(/"msg":"sigil is serving"/g, 1);
    s.process.stdout!.destroy(); // the log collector died: the next line sigil writes gets EPIPE
    s.process.kill('SIGTERM');
    assert.equal(await waitExit(s.process, STOP_GUARD_MS), true, `still running ${STOP_GUARD_MS} ms after SIGTERM\n${s.out.stderr}`);
    assert.equal(s.process.exitCode, 0, s.out.stderr);
  } finally {
    s.process.kill('SIGKILL');
  }
});

test('--log-format pretty prints readable lines instead of JSON', async () => {
  const cfg = join(dir, 'pretty.yaml');
  await writeFile(cfg, config('p'));
  const port = await freePort();
  const s = spawnSigil(['serve', '--config', cfg, '--listen', `127.0.0.1:${port}`, '--log-format', 'pretty']);
  try {
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, 15_000);
    await s.stdoutMatches(/INFO.*sigil is serving/g, 1);
  } finally {
    s.process.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0, s.out.stderr);
  assert.doesNotMatch(s.out.stdout, /^\{"level"/m, 'a JSON record in pretty output');
  assert.match(s.out.stdout, /^\[[^\]]+\] INFO: stopped \{"code":0\}$/m);
});

test('a bad --listen, $SIGIL_LISTEN or --log-format exits 2 naming it; serve --help shows them', async () => {
  const cfg = join(dir, 'flags.yaml');
  await writeFile(cfg, config('p'));
  const format = await runSigil(['serve', '--config', cfg, '--log-format', 'xml']);
  assert.equal(format.code, 2);
  assert.match(format.stderr, /^sigil: --log-format: expected json or pretty, got 'xml'$/m);
  const flag = await runSigil(['serve', '--config', cfg, '--listen', 'localhost']);
  assert.equal(flag.code, 2);
  assert.match(flag.stderr, /^sigil: --listen: expected host:port/m);
  const env = await runSigil(['serve', '--config', cfg], { env: { SIGIL_LISTEN: '127.0.0.1:99999' } });
  assert.equal(env.code, 2);
  assert.match(env.stderr, /^sigil: \$SIGIL_LISTEN: port 99999 is out of range/m);
  const help = await runSigil(['serve', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--listen HOST:PORT/);
  assert.match(help.stdout, /--log-format json\|pretty/);
  assert.match(help.stdout, /SIGHUP/);
});
