// The Dockerfile and .dockerignore, checked as far as this machine allows: it has no Docker
// engine and cannot pull the base images (docs/DEPLOY.md; config/docker/standin-build.sh
// builds it with stand-in bases). Here: the instructions' facts (stages, non-root USER,
// EXPOSE, VOLUME, ENTRYPOINT), every COPY source present after `npm run build`, the
// .dockerignore letting exactly those through, the HEALTHCHECK's `node -e` script run against
// real sigils, and the runtime stage's file layout rebuilt in a temp dir (with `npm prune
// --omit=dev`) and run as the image would: uid 65532, nothing writable but /var/lib/sigil.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { chmod, chown, cp, mkdir, readFile, readdir, realpath, rename, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { spawnSigil } from '../helpers/cli.js';
import { freePort, waitForHttp, probeHttp } from '../helpers/net.js';
import { tempDir } from '../helpers/temp.js';
import { selfSignedCert } from '../helpers/tls.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url)); // from dist/test/unit
const SCRIPTS_NODE = join(ROOT, 'scripts/node');
const RUNTIME_UID = 65532; // distroless "nonroot"
const SIGIL_START_MS = 15_000; // sigil listens within a second; generous for a loaded machine
const HEALTHCHECK_RUN_MS = 15_000; // the script's own request timeout is 4 s
/** The hung-server case runs the script with its request timeout cut to this (the shipped 4 s is checked apart). */
const SHORT_REQUEST_TIMEOUT_MS = 200;
const PRUNE_TIMEOUT_MS = 120_000; // copying ~60 MiB of node_modules and pruning offline: seconds
const SETPRIV_BIN = '/usr/bin/setpriv';

// --- a Dockerfile reader: instructions with continuations, comments, stages --------------

interface Instruction {
  readonly op: string;
  readonly args: string;
  readonly line: number;
}
interface Stage {
  readonly from: string;
  readonly name?: string;
  readonly instructions: Instruction[];
}

function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.trimEnd();
    if (pending === '' && (/^\s*#/.test(line) || line.trim() === '')) return;
    if (pending !== '' && /^\s*#/.test(line)) return; // comment lines inside a continuation are dropped
    if (pending === '') startLine = i + 1;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1)} `;
      return;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(full);
    if (!m) throw new Error(`Dockerfile line ${startLine}: cannot read ${JSON.stringify(full)}`);
    instructions.push({ op: m[1].toUpperCase(), args: m[2].trim(), line: startLine });
  });
  if (pending !== '') throw new Error('Dockerfile ends inside a line continuation');
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.op === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: FROM ${ins.args}`);
      const from = m[1].replace(/\$\{(\w+)\}/g, (_, n: string) => args.get(n) ?? `<unset ${n}>`);
      stages.push({ from, name: m[2], instructions: [] });
    } else if (stages.length === 0) {
      assert.equal(ins.op, 'ARG', `line ${ins.line}: only ARG may come before the first FROM`);
      const m = /^(\w+)=(\S+)$/.exec(ins.args);
      if (m) args.set(m[1], m[2]);
    } else {
      stages[stages.length - 1].instructions.push(ins);
    }
  }
  return { args, stages };
}

/** COPY [--from=X] [--chown=U:G] SRC... DEST */
function parseCopy(args: string): { from?: string; chown?: string; sources: string[]; dest: string } {
  const words = args.split(/\s+/);
  const flags = new Map<string, string>();
  while (words[0]?.startsWith('--')) {
    const [k, v] = words.shift()!.slice(2).split('=');
    flags.set(k, v);
  }
  assert.ok(words.length >= 2, `COPY ${args}: a source and a destination`);
  return { from: flags.get('from'), chown: flags.get('chown'), sources: words.slice(0, -1), dest: words[words.length - 1] };
}

const jsonArray = (text: string): string[] => {
  const v = JSON.parse(text) as unknown;
  assert.ok(Array.isArray(v) && v.every((s) => typeof s === 'string'), `exec form expected: ${text}`);
  return v as string[];
};

const all = (s: Stage, op: string): Instruction[] => s.instructions.filter((i) => i.op === op);
const last = (s: Stage, op: string): Instruction => {
  const found = all(s, op);
  assert.ok(found.length > 0, `the stage has a ${op}`);
  return found[found.length - 1];
};

/** WORKDIR in effect at instruction `ins` of stage `s` ('/' before any). */
function workdirAt(s: Stage, ins: Instruction): string {
  let wd = '/';
  for (const i of s.instructions) {
    if (i === ins) break;
    if (i.op === 'WORKDIR') wd = posix.resolve(wd, i.args);
  }
  return wd;
}

function envOf(s: Stage): Map<string, string> {
  const env = new Map<string, string>();
  for (const i of all(s, 'ENV')) for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env.set(m[1], m[2]);
  return env;
}

// --- .dockerignore: moby's patternmatcher semantics, for the patterns used ---------------

function globRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*' && pattern[i + 1] === '*') {
      // `**` any number of directories; `**/` may also match none
      if (pattern[i + 2] === '/') {
        re += '(?:.*/)?';
        i += 2;
      } else {
        re += '.*';
        i += 1;
      }
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** Whether `.dockerignore` keeps `path` out of the build context (last matching pattern wins; a pattern matching a parent directory matches its contents). */
function dockerIgnored(ignoreText: string, path: string): boolean {
  const patterns = ignoreText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => ({ negate: l.startsWith('!'), re: globRegExp(posix.normalize(l.replace(/^!/, '')).replace(/^\/+/, '')) }));
  const parts = path.split('/');
  const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
  let ignored = false;
  for (const p of patterns) if (candidates.some((c) => p.re.test(c))) ignored = !p.negate;
  return ignored;
}

// --- the files -----------------------------------------------------------------------------

const dockerfileText = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
const dockerignoreText = await readFile(join(ROOT, '.dockerignore'), 'utf8');
const dockerfile = parseDockerfile(dockerfileText);
const buildStage = dockerfile.stages[0];
const runtime = dockerfile.stages[dockerfile.stages.length - 1];
const healthcheckArgv = (): string[] => {
  const hc = last(runtime, 'HEALTHCHECK').args;
  const m = /\bCMD\s+(\[.*\])$/.exec(hc);
  assert.ok(m, `HEALTHCHECK in exec form: ${hc}`);
  return jsonArray(m[1]);
};

/** The request timeout (ms) written in the HEALTHCHECK script: its one `{timeout:<ms>,` option. */
const SCRIPT_TIMEOUT_RE = /\{timeout:(\d+),/;
function requestTimeoutOf(script: string): number {
  const m = SCRIPT_TIMEOUT_RE.exec(script);
  assert.ok(m && script.split('{timeout:').length === 2, `one request timeout in: ${script}`);
  return Number(m[1]);
}
function withRequestTimeout(script: string, ms: number): string {
  requestTimeoutOf(script);
  return script.replace(SCRIPT_TIMEOUT_RE, `{timeout:${ms},`);
}

/**
 * Runs the HEALTHCHECK's node arguments with scripts/node; resolves to the exit code (-1 when
 * it had to be killed). `requestTimeoutMs` replaces the script's own request timeout.
 */
async function runHealthcheck(url: string | undefined, opts: { uid?: number; node?: string; requestTimeoutMs?: number } = {}): Promise<number> {
  const argv = healthcheckArgv();
  if (opts.requestTimeoutMs !== undefined) argv[2] = withRequestTimeout(argv[2], opts.requestTimeoutMs);
  const env: Record<string, string> = { PATH: '/usr/bin:/bin' };
  if (url !== undefined) env.SIGIL_HEALTHCHECK_URL = url;
  const [cmd, cmdArgs] = opts.uid === undefined
    ? [SCRIPTS_NODE, argv.slice(1)]
    : [SETPRIV_BIN, [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', opts.node ?? SCRIPTS_NODE, ...argv.slice(1)]];
  return await new Promise<number>((resolve, reject) => {
    const p = spawn(cmd, cmdArgs, { env, stdio: 'ignore' });
    const timer = setTimeout(() => p.kill('SIGKILL'), HEALTHCHECK_RUN_MS);
    p.on('error', reject);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(code ?? (signal === 'SIGKILL' ? -1 : -2));
    });
  });
}

describe('Dockerfile', () => {
  test('the reader reads continuations, comments, ARG-in-FROM and stages', () => {
    const d = parseDockerfile('# c\nARG B=img:1\nFROM ${B} AS one\nRUN a \\\n  # dropped\n  b\nFROM one\nCOPY --from=one --chown=1:2 /x /y ./\n');
    assert.deepEqual(d.stages.map((s) => [s.from, s.name]), [['img:1', 'one'], ['one', undefined]]);
    assert.equal(d.stages[0].instructions[0].args, 'a    b');
    assert.deepEqual(parseCopy(d.stages[1].instructions[0].args), { from: 'one', chown: '1:2', sources: ['/x', '/y'], dest: './' });
    assert.throws(() => parseDockerfile('FROM a\nRUN x \\'), /continuation/);
  });

  test('two stages: node:24-bookworm builds (npm ci, build, prune), distroless Node 24 runs', () => {
    assert.equal(dockerfile.stages.length, 2);
    assert.equal(buildStage.from, 'node:24-bookworm');
    assert.equal(buildStage.name, 'build');
    assert.equal(runtime.from, 'gcr.io/distroless/nodejs24-debian12:nonroot');
    const runs = all(buildStage, 'RUN').map((i) => i.args);
    assert.ok(runs.includes('npm ci'), runs.join('\n'));
    assert.ok(runs.some((r) => /npm run build\b/.test(r) && /npm prune --omit=dev\b/.test(r)), runs.join('\n'));
    assert.equal(all(runtime, 'RUN').length, 0, 'the runtime base has no shell: no RUN there');
    assert.match(dockerfileText, /^# syntax=docker\/dockerfile:1$/m);
  });

  test('runs as a numeric non-root user, exposes 5000, declares the store volume, sets SIGIL_CONFIG', async () => {
    const user = last(runtime, 'USER').args;
    assert.match(user, /^\d+:\d+$/, 'numeric, so Kubernetes runAsNonRoot can check it');
    assert.equal(user, `${RUNTIME_UID}:${RUNTIME_UID}`);
    assert.equal(last(runtime, 'EXPOSE').args, '5000');
    assert.deepEqual(jsonArray(last(runtime, 'VOLUME').args), ['/var/lib/sigil']);
    const env = envOf(runtime);
    assert.equal(env.get('SIGIL_CONFIG'), '/etc/sigil/sigil.yaml');
    // the shipped default config listens where EXPOSE and the HEALTHCHECK say
    assert.match(await readFile(join(ROOT, 'config/sigil.yaml'), 'utf8'), /^\s+listen: 0\.0\.0\.0:5000\b/m);
    // files are copied as root: the runtime user cannot change them
    const idx = runtime.instructions.findIndex((i) => i.op === 'USER');
    assert.equal(runtime.instructions[idx].args, '0:0', 'first USER switches to root for the copies');
    assert.ok(runtime.instructions.slice(0, idx).every((i) => i.op !== 'COPY' && i.op !== 'WORKDIR'));
  });

  test('ENTRYPOINT runs node on dist/src/main.js (not bin/sigil), CMD serve; the file exists after the build', () => {
    const entry = jsonArray(last(runtime, 'ENTRYPOINT').args);
    assert.deepEqual(entry, ['/nodejs/bin/node', '/opt/sigil/dist/src/main.js']);
    assert.deepEqual(jsonArray(last(runtime, 'CMD').args), ['serve']);
    assert.equal(last(runtime, 'WORKDIR').args, '/opt/sigil');
    assert.ok(existsSync(join(ROOT, 'dist/src/main.js')), 'dist/src/main.js (npm run build)');
    const hc = healthcheckArgv();
    assert.equal(hc[0], entry[0], 'the HEALTHCHECK uses the same node');
    assert.equal(hc[1], '-e');
  });

  test('every COPY source exists: context paths in the repository, build-stage paths after `npm run build`', () => {
    const buildWorkdir = posix.resolve('/', last(buildStage, 'WORKDIR').args);
    const createdByRun = all(buildStage, 'RUN').flatMap((r) => [...r.args.matchAll(/mkdir -p (\S+)/g)].map((m) => m[1]));
    let checked = 0;
    for (const stage of dockerfile.stages) {
      for (const ins of all(stage, 'COPY')) {
        const c = parseCopy(ins.args);
        for (const src of c.sources) {
          checked++;
          if (c.from === undefined) {
            assert.ok(existsSync(join(ROOT, src)), `line ${ins.line}: ${src} is not in the repository`);
            assert.ok(!dockerIgnored(dockerignoreText, src), `line ${ins.line}: ${src} is excluded by .dockerignore`);
          } else {
            assert.equal(c.from, 'build', `line ${ins.line}`);
            if (src.startsWith(`${buildWorkdir}/`)) {
              const rel = src.slice(buildWorkdir.length + 1);
              assert.ok(existsSync(join(ROOT, rel)), `line ${ins.line}: ${rel} does not exist after the build`);
            } else {
              assert.ok(createdByRun.some((d) => d === src || d.startsWith(`${src}/`)), `line ${ins.line}: ${src} is made by no RUN mkdir`);
            }
          }
        }
      }
    }
    assert.ok(checked >= 10, `${checked} COPY sources`);
  });

  test('.dockerignore lets in exactly what the build needs; test/, bench/, secrets and build output stay out', () => {
    for (const kept of ['package.json', 'package-lock.json', 'tsconfig.json', 'scripts/node', 'src/main.ts', 'src/config/load.ts', 'assets/public-good/trusted_root.json', 'config/sigil.yaml']) {
      assert.ok(!dockerIgnored(dockerignoreText, kept), `${kept} is needed`);
    }
    for (const out of ['node_modules/yaml/package.json', 'dist/src/main.js', '.git/HEAD', '.tools/node24/x', 'test/unit/config.test.ts', 'bench/run.ts',
      'config/compose/sigil.yaml', 'config/kubernetes/20-secret-keys.yaml', 'scripts/setup.sh', 'README.md', 'docs/DEPLOY.md', 'src/some.key', 'src/.env', 'src/registry/memory-cache.test.ts', '.notes/COMMON.md']) {
      assert.ok(dockerIgnored(dockerignoreText, out), `${out} must not be in the build context`);
    }
    // the matcher itself: last match wins, parents count, ** spans directories
    assert.ok(dockerIgnored('*\n!a\n', 'b/c'));
    assert.ok(!dockerIgnored('*\n!a\n', 'a/c'));
    assert.ok(dockerIgnored('**/*.key\n', 'x/y/z.key'));
    assert.ok(dockerIgnored('**/*.key\n', 'z.key'));
  });
});

describe('the HEALTHCHECK script against real sigils', { timeout: 90_000 }, () => {
  let dir: string;
  let plainPort: number;
  let tlsPort: number;
  const sigils: Array<ReturnType<typeof spawnSigil>> = [];
  let silent: Server | undefined;
  const sockets = new Set<Socket>();

  before(async () => {
    dir = await tempDir('sigil-deploy-hc-');
    const { certPath, keyPath } = await selfSignedCert(dir);
    plainPort = await freePort();
    tlsPort = await freePort();
    const base = 'upstreams:\n  - name: reg.test\n    url: http://127.0.0.1:9\n';
    await writeFile(join(dir, 'plain.yaml'), `server:\n  listen: 127.0.0.1:${plainPort}\n  logLevel: warn\n${base}`);
    await writeFile(join(dir, 'tls.yaml'), `server:\n  listen: 127.0.0.1:${tlsPort}\n  logLevel: warn\n  tls: { cert: ${certPath}, key: ${keyPath} }\n${base}`);
    sigils.push(spawnSigil(['serve', '--config', join(dir, 'plain.yaml')]), spawnSigil(['serve', '--config', join(dir, 'tls.yaml')]));
    await Promise.all([waitForHttp(`http://127.0.0.1:${plainPort}/healthz`, SIGIL_START_MS), waitForHttp(`https://127.0.0.1:${tlsPort}/healthz`, SIGIL_START_MS)]);
  });

  after(async () => {
    for (const s of sigils) s.process.kill('SIGTERM');
    await Promise.all(sigils.map((s) => s.exited));
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => (silent ? silent.close(() => resolve()) : resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  test('its default URL is sigil\'s default listener; it succeeds against a running sigil, over HTTP and HTTPS', async () => {
    const script = healthcheckArgv()[2];
    assert.match(script, /'http:\/\/127\.0\.0\.1:5000\/healthz'/);
    assert.match(script, /process\.env\.SIGIL_HEALTHCHECK_URL/);
    assert.equal(await probeHttp(`http://127.0.0.1:${plainPort}/healthz`), 200);
    assert.equal(await runHealthcheck(`http://127.0.0.1:${plainPort}/healthz`), 0);
    assert.equal(await runHealthcheck(`https://127.0.0.1:${tlsPort}/healthz`), 0, 'a self-signed certificate is fine: it is a liveness probe');
  });

  test('it fails when nothing listens, when sigil answers non-200, and when the server never answers', async () => {
    const closed = await freePort();
    assert.equal(await runHealthcheck(`http://127.0.0.1:${closed}/healthz`), 1);
    assert.equal(await runHealthcheck(`http://127.0.0.1:${plainPort}/no-such-endpoint`), 1, 'a 404 is not healthy');
    assert.equal(await runHealthcheck(`http://127.0.0.1:${tlsPort}/healthz`), 1, 'plain HTTP to the TLS listener');
    // a server that accepts and never answers (a hung process): the script's own timeout ends it
    // (exit 1; killed by runHealthcheck would be -1). Its request timeout is cut short here; the
    // shipped one must end the script before Docker's --timeout does.
    const shipped = requestTimeoutOf(healthcheckArgv()[2]);
    const dockerTimeout = /--timeout=(\d+)s\b/.exec(last(runtime, 'HEALTHCHECK').args);
    assert.ok(dockerTimeout, 'the HEALTHCHECK sets --timeout');
    assert.ok(shipped < Number(dockerTimeout[1]) * 1000, `the script's ${shipped} ms timeout ends it before Docker's ${dockerTimeout[1]} s`);
    silent = createServer(() => undefined);
    silent.on('connection', (s) => sockets.add(s));
    await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', () => resolve()));
    const hung = `http://127.0.0.1:${(silent.address() as AddressInfo).port}/healthz`;
    assert.equal(await runHealthcheck(hung, { requestTimeoutMs: SHORT_REQUEST_TIMEOUT_MS }), 1, 'ended by its own timeout, not killed');
  });
});

describe('the runtime stage\'s file layout, run as the image runs it', { timeout: 180_000 }, () => {
  let root: string;
  let port: number;
  let node: string;
  let sigil: ReturnType<typeof spawn> | undefined;
  let exited: Promise<number | null> | undefined;
  let output = '';
  const asRoot = process.getuid?.() === 0;

  /** `root`-relative path of an image path. */
  const inRoot = (imagePath: string): string => join(root, imagePath);

  before(async () => {
    root = await tempDir('sigil-deploy-image-');
    await chmod(root, 0o755); // mkdtemp makes 0700: uid 65532 must be able to enter it
    node = (await run(SCRIPTS_NODE, ['-p', 'process.execPath'])).stdout.trim();

    // the build stage's /src/node_modules after `npm prune --omit=dev`
    const build = join(root, '.build');
    await mkdir(build);
    await Promise.all(['package.json', 'package-lock.json'].map((f) => cp(join(ROOT, f), join(build, f))));
    // the directory itself even where node_modules is a symlink (a git worktree's): a copied link
    // would make npm reinstall every package from its cache instead of pruning
    // (cp(1): fs.cp copies the ~110 MiB tree file by file in JavaScript, 4× the time)
    await run('cp', ['-a', '--', await realpath(join(ROOT, 'node_modules')), join(build, 'node_modules')], { timeout: PRUNE_TIMEOUT_MS });
    const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? '/usr/bin:/bin'}`, npm_config_update_notifier: 'false' };
    await run('npm', ['prune', '--omit=dev', '--offline', '--no-audit', '--no-fund'], { cwd: build, env, timeout: PRUNE_TIMEOUT_MS });

    const buildWorkdir = posix.resolve('/', last(buildStage, 'WORKDIR').args);
    for (const ins of all(runtime, 'COPY')) {
      const c = parseCopy(ins.args);
      const destBase = posix.resolve(workdirAt(runtime, ins), c.dest);
      for (const src of c.sources) {
        const dest = c.dest.endsWith('/') || c.sources.length > 1 ? posix.join(destBase, posix.basename(src)) : destBase;
        let from: string;
        if (c.from === undefined) from = join(ROOT, src);
        else if (src === `${buildWorkdir}/node_modules`) from = join(build, 'node_modules');
        else if (src.startsWith(`${buildWorkdir}/`)) from = join(ROOT, src.slice(buildWorkdir.length + 1));
        else {
          // made by `RUN mkdir -p` in the build stage
          from = join(root, '.build', src);
          await mkdir(join(from, 'store'), { recursive: true });
        }
        await mkdir(dirname(inRoot(dest)), { recursive: true });
        if (from === join(build, 'node_modules')) await rename(from, inRoot(dest)); // a copy already; same file system
        else await cp(from, inRoot(dest), { recursive: true, verbatimSymlinks: true });
        if (c.chown !== undefined && asRoot) { // only root can give files away; the tree is checked without it otherwise
          const [uid, gid] = c.chown.split(':').map(Number);
          for (const p of [inRoot(dest), ...(await readdir(inRoot(dest), { recursive: true })).map((e) => join(inRoot(dest), e))]) await chown(p, uid, gid);
        }
      }
    }
    await rm(build, { recursive: true, force: true });
    await mkdir(inRoot('/tmp'), { mode: 0o1777 });
    await chmod(inRoot('/tmp'), 0o1777);

    // the image's config is config/sigil.yaml; only the listener moves to a free loopback port
    port = await freePort();
    const cfg = inRoot('/etc/sigil/sigil.yaml');
    const text = await readFile(cfg, 'utf8');
    assert.match(text, /listen: 0\.0\.0\.0:5000/);
    await writeFile(cfg, text.replace('listen: 0.0.0.0:5000', `listen: 127.0.0.1:${port}`));

    // read-only: nothing is writable (not even by its owner) but /var/lib/sigil and /tmp
    await run('chmod', ['-R', 'a-w', inRoot('/opt'), inRoot('/etc')]);
    await chmod(root, 0o555);
  });

  after(async () => {
    if (sigil && sigil.exitCode === null) sigil.kill('SIGKILL');
    await exited;
    await chmod(root, 0o755).catch(() => undefined);
    await run('chmod', ['-R', 'u+w', root]).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  });

  const imageEnv = (): Record<string, string> => {
    const env: Record<string, string> = { PATH: '/usr/bin:/bin', TMPDIR: inRoot('/tmp') };
    for (const [k, v] of envOf(runtime)) env[k] = k === 'SIGIL_CONFIG' ? inRoot(v) : v;
    return env;
  };

  /** The ENTRYPOINT + args, with the image's node replaced by this machine's, as the runtime user when possible. */
  const imageCommand = (args: string[]): [string, string[]] => {
    const entry = jsonArray(last(runtime, 'ENTRYPOINT').args);
    const argv = [node, inRoot(entry[1]), ...args];
    return asRoot ? [SETPRIV_BIN, [`--reuid=${RUNTIME_UID}`, `--regid=${RUNTIME_UID}`, '--clear-groups', ...argv]] : [argv[0], argv.slice(1)];
  };

  test('the layout holds compiled JavaScript, production dependencies only, the trust root and the default config', async () => {
    const files = (await readdir(inRoot('/opt/sigil/dist'), { recursive: true })).filter((f) => !f.endsWith('/'));
    assert.ok(files.includes('src/main.js'));
    assert.ok(files.every((f) => !f.startsWith('test') && !f.startsWith('bench') && !f.endsWith('.ts')), 'no tests, no TypeScript sources');
    const modules = await readdir(inRoot('/opt/sigil/node_modules'));
    for (const dev of ['typescript', 'autocannon']) assert.ok(!modules.includes(dev), `${dev} is a dev dependency`);
    assert.ok(existsSync(inRoot('/opt/sigil/node_modules/@sigstore/tuf/seeds.json')), '@sigstore/tuf and its seeds: trust.tuf fetches at run time');
    for (const dep of ['fastify', 'undici', 'yaml', 'pino']) assert.ok(modules.includes(dep), dep);
    assert.ok(existsSync(inRoot('/opt/sigil/assets/public-good/trusted_root.json')));
    if (asRoot) assert.equal((await stat(inRoot('/var/lib/sigil'))).uid, RUNTIME_UID, 'COPY --chown');
    assert.equal((await stat(inRoot('/opt/sigil/dist/src/main.js'))).uid, process.getuid?.() ?? 0, 'code belongs to root, not to the runtime user');
  });

  test('as uid 65532 with a read-only tree: --version and config check work', async () => {
    const [cmd, args] = imageCommand(['--version']);
    const v = await run(cmd, args, { cwd: inRoot('/opt/sigil'), env: imageEnv() });
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(v.stdout.trim(), `sigil ${pkg.version}`, 'package.json is found beside dist/');
    const [cmd2, args2] = imageCommand(['config', 'check']);
    const c = await run(cmd2, args2, { cwd: inRoot('/opt/sigil'), env: imageEnv() });
    assert.match(c.stdout, /sigil\.yaml: valid/);
  });

  test('serve: ready, the HEALTHCHECK passes, the tree cannot be written, SIGTERM stops it cleanly', async () => {
    const [cmd, args] = imageCommand(jsonArray(last(runtime, 'CMD').args));
    sigil = spawn(cmd, args, { cwd: inRoot('/opt/sigil'), env: imageEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    sigil.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    sigil.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    const proc = sigil;
    exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)));
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, SIGIL_START_MS).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${output}`);
    });
    assert.equal(await probeHttp(`http://127.0.0.1:${port}/readyz`), 200, output);
    assert.equal(await runHealthcheck(`http://127.0.0.1:${port}/healthz`, asRoot ? { uid: RUNTIME_UID, node } : {}), 0);
    // the process's user cannot write its own code or config
    const writeProbe = `require('node:fs').writeFileSync(${JSON.stringify(inRoot('/opt/sigil/x'))}, '')`;
    const [wcmd, wargs] = asRoot ? [SETPRIV_BIN, [`--reuid=${RUNTIME_UID}`, `--regid=${RUNTIME_UID}`, '--clear-groups', node, '-e', writeProbe]] : [node, ['-e', writeProbe]];
    await assert.rejects(run(wcmd, wargs), /EACCES/);
    sigil.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    assert.match(output, /"msg":"stopped"/);
  });
});
