/*
 * A private containerd 1.6 daemon (Debian 1.6.20) driven through `ctr`, for end-to-end pulls.
 *
 * What containerd 1.6.20 (ctr images pull --hosts-dir, i.e. the same resolver CRI uses) does on
 * this machine, measured with a recording proxy in front of docker-registry 2.8
 * (test/e2e/clients-direct.test.ts re-checks the points marked [tested]):
 *
 * 1. hosts.toml lives in <hostsDir>/<host[:port] named by the image ref>/hosts.toml, e.g.
 *    `docker.io/hosts.toml` for docker.io/library/alpine:3. Only `ctr --hosts-dir` (or CRI's
 *    `config_path`) reads it; the daemon itself does not (CRI is disabled here).
 * 2. [tested] A hosts.toml with `server = ...` but no [host] table is REJECTED by this build
 *    ("failed to decode hosts.toml" error="invalid `host` tree", printed by ctr) and then ignored:
 *    ctr silently talks to the ref's host itself. Always add a [host] table (an empty `[host]`
 *    is enough); writeHosts() appends one when the text has none.
 * 3. [tested] To a mirror declared as [host."http://127.0.0.1:PORT"] capabilities ["pull","resolve"]
 *    (and to `server` as well, whenever its host differs from the ref's host) a pull by tag sends,
 *    in order, with no `GET /v2/` ping first:
 *      HEAD /v2/<repo>/manifests/<tag>?ns=<ref host>      Accept: docker v2 manifest, docker list,
 *                                                          OCI manifest, OCI index, * / *
 *      GET  /v2/<repo>/manifests/<digest>?ns=<ref host>   (the index/manifest by the digest the
 *                                                          HEAD's Docker-Content-Digest named)
 *      GET  /v2/<repo>/manifests/<digest>?ns=...          (platform manifest, for an index)
 *      GET  /v2/<repo>/blobs/<digest>?ns=...              (config, then layers; order varies)
 *    `ns` is the ref host URL-encoded (`ns=127.0.0.1%3A5000`, `ns=docker.io`). <repo> is the ref's
 *    path as written (docker.io/library/x → /v2/library/x/...). User-Agent: containerd/1.6.20~ds1.
 *    A pull by digest starts with HEAD /v2/<repo>/manifests/<digest>?ns=... . Content already in
 *    the content store is not fetched again (a second pull may send only the HEAD).
 *    If the HEAD answer lacks Docker-Content-Digest, containerd GETs the manifest by tag next.
 *    If the HEAD answers 405, containerd retries with GET by tag.
 *    With capabilities ["pull"] only, the tag is resolved on the next host (`server`) and only
 *    the by-digest GETs go to the mirror.
 * 4. [tested] Any error status from a mirror (403, 404, 500, 401 without a usable challenge) makes
 *    containerd try the next host, for the HEAD and for every by-digest GET alike. So with
 *    `server = <upstream>` plus [host."<sigil>"], a 403 from sigil does NOT block the pull: the
 *    image comes straight from the upstream. Only `server = "<sigil>"` (sigil the sole host)
 *    makes the 403 stick: ctr then fails with
 *      failed to resolve reference "<ref>": pulling from host <sigil host> failed with status
 *      code [manifests <tag>]: 403 Forbidden
 *    — the status line as sent: a sigil denial reads `403 sigil: no signature found (policy …)` there.
 * 5. A 401 with `WWW-Authenticate: Basic realm=...` makes ctr retry the same request with the
 *    `--user` credentials (Authorization: Basic ...), then it keeps sending them.
 *
 * The snapshotter is `native` by default (plain directory copies: no mounts, works anywhere);
 * overlayfs works in this sandbox too and can be asked for.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { exited, waitExit } from './process.js';

export const CONTAINERD_BIN = '/usr/bin/containerd';
export const CTR_BIN = '/usr/bin/ctr';
const SETPRIV_BIN = '/usr/bin/setpriv'; // --pdeathsig: containerd dies even if the test process is SIGKILLed
/** The containerd namespace every helper command uses. */
export const TEST_NAMESPACE = 'sigil-test';
const PULL_TIMEOUT_MS = 120_000; // a pull that hangs (e.g. a proxy that never answers) must not hang the suite
const CTR_TIMEOUT_MS = 30_000; // local gRPC commands (ls, content get, snapshots) answer in milliseconds
const START_TIMEOUT_MS = 15_000; // containerd boots in ~20 ms; generous for a loaded machine
const START_POLL_MS = 50;
const STOP_GRACE_MS = 5_000; // SIGTERM, then SIGKILL after this
const SOCKET_PATH_MAX = 100; // sun_path is 108 bytes including the NUL; keep a margin
const LOG_TAIL_BYTES = 16 * 1024; // kept for the error message when startup fails
const DEFAULT_PLATFORM = 'linux/amd64';
// ctr pull draws progress bars with ANSI escapes even when stdout is not a terminal
const ANSI_ESCAPE = /\x1b\[[0-9;?]*[A-Za-z]/g;
// ctr runs with this environment only: CONTAINERD_* or *_PROXY variables of the machine must not matter
const CLEAN_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/nonexistent' };

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);

export type Snapshotter = 'native' | 'overlayfs';

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface PullOptions {
  /** --plain-http: only matters for hosts without a hosts.toml (hosts.toml URLs carry their scheme). */
  plainHttp?: boolean;
  /** e.g. 'linux/arm64'; default: containerd's default (linux/amd64 here). */
  platform?: string;
  /** Default true (`ctr images pull`). false: `ctr content fetch` (content + image record, no snapshot). */
  unpack?: boolean;
  /** user[:password] for registries (and proxies) that challenge with Basic or token auth. */
  user?: string;
  /** Also pass --skip-verify (TLS without verification). */
  skipVerify?: boolean;
  timeoutMs?: number;
}

export interface StartOptions {
  snapshotter?: Snapshotter;
}

export interface ContainerdHandle {
  readonly socket: string;
  readonly root: string;
  readonly state: string;
  readonly hostsDir: string;
  readonly snapshotter: Snapshotter;
  /** containerd's own stdout+stderr (info level). */
  readonly logFile: string;
  /**
   * Writes <hostsDir>/<registryHost>/hosts.toml with `tomlText` as given, except that a text
   * without any [host] table gets an empty `[host]` appended (containerd 1.6.20 ignores the file
   * otherwise, see the top of this file).
   */
  writeHosts(registryHost: string, tomlText: string): Promise<void>;
  /** `ctr images pull --hosts-dir ... REF` (or `content fetch` when unpack is false). Never throws. */
  pull(ref: string, opts?: PullOptions): Promise<CmdResult>;
  /** Names of the images in the namespace. */
  images(): Promise<string[]>;
  /**
   * Regular files and symlinks (paths relative to /, sorted) of the unpacked root filesystem of
   * `ref` for `platform` (default linux/amd64). Throws when the image or its snapshot is missing.
   */
  unpackedFiles(ref: string, opts?: { platform?: string }): Promise<string[]>;
  /** One file of the unpacked root filesystem (path relative to /). */
  readUnpackedFile(ref: string, path: string, opts?: { platform?: string }): Promise<Buffer>;
  /** `ctr images rm --sync`: content and snapshots only this image used are gone, so the next pull fetches them again. */
  removeImage(ref: string): Promise<void>;
  /** Any other ctr command against this daemon and namespace (args after the global flags). */
  ctr(args: readonly string[], timeoutMs?: number): Promise<CmdResult>;
  stop(): Promise<void>;
}

function configToml(dir: string, snapshotter: Snapshotter): string {
  const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid TOML basic string
  const disabled = [
    'io.containerd.grpc.v1.cri', // no kubelet here; also why `config_path` is not set: only CRI reads it
    'io.containerd.snapshotter.v1.btrfs',
    'io.containerd.snapshotter.v1.zfs',
    'io.containerd.snapshotter.v1.aufs',
    'io.containerd.snapshotter.v1.devmapper',
    ...(snapshotter === 'native' ? ['io.containerd.snapshotter.v1.overlayfs'] : []),
    'io.containerd.internal.v1.opt', // would create /opt/containerd
    'io.containerd.tracing.processor.v1.otlp',
    'io.containerd.internal.v1.tracing',
  ];
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    `disabled_plugins = [${disabled.map(q).join(', ')}]`,
    '[grpc]',
    `  address = ${q(join(dir, 'c.sock'))}`,
    '[ttrpc]',
    `  address = ${q(join(dir, 'c.ttrpc.sock'))}`,
    '[debug]',
    '  level = "info"',
    '[plugins."io.containerd.gc.v1.scheduler"]',
    '  startup_delay = "100ms"',
    '',
  ].join('\n');
}


/** Runs a command with a clean environment; kills it after `timeoutMs`. Never rejects. */
export function runCommand(cmd: string, args: readonly string[], timeoutMs: number, env: Record<string, string> = CLEAN_ENV): Promise<CmdResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    const finish = (code: number, extra = ''): void => {
      clearTimeout(timer);
      resolve({
        code,
        stdout: Buffer.concat(out).toString('utf8').replace(ANSI_ESCAPE, ''),
        stderr: Buffer.concat(err).toString('utf8').replace(ANSI_ESCAPE, '') + extra,
      });
    };
    child.once('error', (e) => finish(127, `\n[spawn failed: ${e.message}]`));
    child.once('close', (code, signal) => {
      if (timedOut) finish(124, `\n[killed after ${timeoutMs} ms]`);
      else finish(code ?? 128, signal ? `\n[killed by ${signal}]` : '');
    });
  });
}

/** A directory whose `c.sock` fits in sun_path, under os.tmpdir() when that is short enough. */
async function shortTempDir(): Promise<string> {
  const probe = join(tmpdir(), 'sigil-ctd-XXXXXX', 'c.ttrpc.sock');
  const base = probe.length <= SOCKET_PATH_MAX ? tmpdir() : '/tmp';
  return mkdtemp(join(base, 'sigil-ctd-'));
}

interface Descriptor {
  mediaType: string;
  digest: string;
  platform?: { os?: string; architecture?: string; variant?: string };
}

function platformMatches(d: Descriptor, platform: string): boolean {
  const [os, arch, variant] = platform.split('/');
  const p = d.platform;
  if (!p || p.os !== os || p.architecture !== arch) return false;
  return variant === undefined || p.variant === variant;
}

/** OCI image-spec: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)). */
export function chainId(diffIds: readonly string[]): string {
  let chain = '';
  for (const d of diffIds) chain = chain === '' ? d : `sha256:${createHash('sha256').update(`${chain} ${d}`).digest('hex')}`;
  if (chain === '') throw new Error('image has no layers');
  return chain;
}

interface Mount {
  Type: string;
  Source: string;
  Options: string[];
}

/** Directories of a snapshot view, topmost first: a bind mount's source, or overlay lowerdirs. */
function layerDirs(mounts: readonly Mount[]): string[] {
  if (mounts.length !== 1) throw new Error(`unexpected snapshot mounts ${JSON.stringify(mounts)}`);
  const m = mounts[0];
  if (m.Type === 'bind') return [m.Source];
  if (m.Type === 'overlay') {
    const lower = m.Options.find((o) => o.startsWith('lowerdir='));
    if (lower) return lower.slice('lowerdir='.length).split(':');
  }
  throw new Error(`unsupported snapshot mount ${JSON.stringify(m)}`);
}

/** Records regular files, symlinks and whiteouts under `dir` (paths relative to `top`) not yet in `into`. */
async function walk(dir: string, into: Map<string, 'file' | 'whiteout'>, top: string): Promise<void> {
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const full = join(dir, ent.name);
    const rel = relative(top, full);
    if (into.has(rel)) continue; // a higher layer already decided this path
    if (ent.isDirectory()) {
      await walk(full, into, top);
    } else if (ent.isCharacterDevice() && (await lstat(full)).rdev === 0) {
      into.set(rel, 'whiteout'); // overlayfs whiteout: hides lower layers' entry
    } else {
      into.set(rel, 'file');
    }
  }
}

async function listRootfs(dirs: readonly string[]): Promise<string[]> {
  const entries = new Map<string, 'file' | 'whiteout'>();
  const hidden = (rel: string): boolean => {
    for (let p = rel; p.includes('/'); ) {
      p = p.slice(0, p.lastIndexOf('/'));
      if (entries.has(p)) return true; // under a whiteout, or under a file that replaced a directory
    }
    return false;
  };
  for (const dir of dirs) await walk(dir, entries, dir); // topmost layer first
  return [...entries]
    .filter(([rel, kind]) => kind === 'file' && !hidden(rel))
    .map(([rel]) => rel)
    .sort();
}

/**
 * Starts a private containerd (own root, state, sockets, hosts dir, config.toml v2 with CRI and
 * every snapshotter but the chosen one disabled) and waits until `ctr version` answers.
 * The daemon is killed when the test process exits, even by SIGKILL (setpriv --pdeathsig).
 */
export async function startContainerd(opts: StartOptions = {}): Promise<ContainerdHandle> {
  const snapshotter = opts.snapshotter ?? 'native';
  const dir = await shortTempDir();
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const hostsDir = join(dir, 'hosts');
  const socket = join(dir, 'c.sock');
  const logFile = join(dir, 'containerd.log');
  await Promise.all([mkdir(root), mkdir(state), mkdir(hostsDir)]);
  const configPath = join(dir, 'config.toml');
  await writeFile(configPath, configToml(dir, snapshotter));

  const argv = [CONTAINERD_BIN, '--config', configPath];
  const [cmd, ...args] = existsSync(SETPRIV_BIN) ? [SETPRIV_BIN, '--pdeathsig', 'KILL', ...argv] : argv;
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(cmd, args, { env: CLEAN_ENV, stdio: ['ignore', logFd, logFd] });
  } finally {
    closeSync(logFd);
  }
  const onExit = (): void => {
    if (!exited(child)) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', onExit);

  const ctr = (ctrArgs: readonly string[], timeoutMs = CTR_TIMEOUT_MS): Promise<CmdResult> =>
    runCommand(CTR_BIN, ['--address', socket, '--namespace', TEST_NAMESPACE, '--connect-timeout', '5s', ...ctrArgs], timeoutMs);

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      if (!exited(child)) {
        child.kill('SIGTERM');
        if (!(await waitExit(child, STOP_GRACE_MS))) {
          child.kill('SIGKILL');
          await waitExit(child, STOP_GRACE_MS);
        }
      }
      process.off('exit', onExit);
      await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };

  const deadline = Date.now() + START_TIMEOUT_MS;
  let last: CmdResult | undefined;
  for (;;) {
    if (exited(child) || Date.now() > deadline) {
      const log = existsSync(logFile) ? (await readFile(logFile, 'utf8')).slice(-LOG_TAIL_BYTES) : '';
      await stop();
      const why = exited(child) ? `exited (code ${child.exitCode}, signal ${child.signalCode})` : `did not answer within ${START_TIMEOUT_MS} ms`;
      throw new Error(`containerd ${why}; last ctr version: ${last?.stderr ?? ''}\n${log}`);
    }
    if (existsSync(socket)) {
      last = await ctr(['version'], START_TIMEOUT_MS);
      if (last.code === 0 && last.stdout.includes('Server:')) break;
    }
    await sleep(START_POLL_MS);
  }

  const imageTarget = async (ref: string): Promise<{ mediaType: string; digest: string }> => {
    const ls = await ctr(['images', 'ls']);
    if (ls.code !== 0) throw new Error(`ctr images ls failed: ${ls.stderr}`);
    for (const line of ls.stdout.split('\n').slice(1)) {
      const [name, mediaType, digest] = line.trim().split(/\s+/);
      if (name === ref) return { mediaType, digest };
    }
    throw new Error(`image ${ref} not in namespace ${TEST_NAMESPACE}:\n${ls.stdout}`);
  };
  const blobJson = async <T>(digest: string): Promise<T> => {
    const r = await ctr(['content', 'get', digest]);
    if (r.code !== 0) throw new Error(`ctr content get ${digest} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  };
  /** Runs `fn` on the layer directories of a read-only view of the image's top snapshot. */
  const withView = async <T>(ref: string, platform: string, fn: (dirs: string[]) => Promise<T>): Promise<T> => {
    let target: Descriptor = await imageTarget(ref);
    if (INDEX_TYPES.has(target.mediaType)) {
      const index = await blobJson<{ manifests: Descriptor[] }>(target.digest);
      const found = index.manifests.find((d) => platformMatches(d, platform));
      if (!found) throw new Error(`index of ${ref} has no ${platform} manifest`);
      target = found;
    }
    const manifest = await blobJson<{ config: Descriptor }>(target.digest);
    const config = await blobJson<{ rootfs: { diff_ids: string[] } }>(manifest.config.digest);
    const chain = chainId(config.rootfs.diff_ids);
    const key = `sigil-view-${randomBytes(6).toString('hex')}`;
    const view = await ctr(['snapshots', '--snapshotter', snapshotter, 'view', '--mounts', key, chain]);
    if (view.code !== 0) throw new Error(`no unpacked snapshot ${chain} for ${ref} (${platform}): ${view.stderr}`);
    try {
      return await fn(layerDirs(JSON.parse(view.stdout) as Mount[]));
    } finally {
      await ctr(['snapshots', '--snapshotter', snapshotter, 'rm', key]);
    }
  };

  return {
    socket,
    root,
    state,
    hostsDir,
    snapshotter,
    logFile,
    async writeHosts(registryHost: string, tomlText: string): Promise<void> {
      const hostDir = join(hostsDir, registryHost);
      await mkdir(hostDir, { recursive: true });
      const hasHostTable = /^\s*\[host[.\]]/m.test(tomlText);
      const text = hasHostTable ? tomlText : `${tomlText.trimEnd()}\n\n# containerd 1.6.20 ignores a hosts.toml without a [host] table\n[host]\n`;
      await writeFile(join(hostDir, 'hosts.toml'), text);
    },
    pull(ref: string, o: PullOptions = {}): Promise<CmdResult> {
      const unpack = o.unpack ?? true;
      const a = unpack ? ['images', 'pull', '--snapshotter', snapshotter] : ['content', 'fetch'];
      a.push('--hosts-dir', hostsDir);
      if (o.plainHttp) a.push('--plain-http');
      if (o.skipVerify) a.push('--skip-verify');
      if (o.platform) a.push('--platform', o.platform);
      if (o.user) a.push('--user', o.user);
      a.push(ref);
      return ctr(a, o.timeoutMs ?? PULL_TIMEOUT_MS);
    },
    async images(): Promise<string[]> {
      const r = await ctr(['images', 'ls', '-q']);
      if (r.code !== 0) throw new Error(`ctr images ls failed: ${r.stderr}`);
      return r.stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
    },
    unpackedFiles(ref: string, o: { platform?: string } = {}): Promise<string[]> {
      return withView(ref, o.platform ?? DEFAULT_PLATFORM, listRootfs);
    },
    readUnpackedFile(ref: string, path: string, o: { platform?: string } = {}): Promise<Buffer> {
      const rel = path.replace(/^\/+/, '');
      return withView(ref, o.platform ?? DEFAULT_PLATFORM, async (dirs) => {
        for (const d of dirs) {
          try {
            return await readFile(join(d, rel));
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
          }
        }
        throw new Error(`${path} not in the unpacked rootfs of ${ref}`);
      });
    },
    async removeImage(ref: string): Promise<void> {
      // --sync: waits for the garbage collection that drops the now unreferenced content and snapshots
      const r = await ctr(['images', 'rm', '--sync', ref]);
      if (r.code !== 0) throw new Error(`ctr images rm ${ref} failed: ${r.stderr}`);
    },
    ctr,
    stop,
  };
}
