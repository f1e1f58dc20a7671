/*
 * podman 4.3 (Debian) as a pulling client, with a private configuration for every call: its own
 * storage root (vfs driver, no overlay mounts needed), run root, registries.conf, policy.json
 * (accept anything: sigil is what verifies), containers.conf and HOME, so nothing under
 * /etc/containers or ~ matters. podman uses containers/image like CRI-O: it ignores layer media
 * types it does not know and sniffs compression from the bytes.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand, type CmdResult } from './containerd.js';

export const PODMAN_BIN = '/usr/bin/podman';
/** Tests pull images of a few KiB: a hang must fail the test, not the suite. */
const PODMAN_TIMEOUT_MS = 60_000;

export interface PodmanHandle {
  /** `podman pull --tls-verify=false <ref>` into this handle's private storage. */
  pull(ref: string): Promise<CmdResult>;
  /** `podman image inspect <ref>` (after a pull). */
  inspect(ref: string): Promise<CmdResult>;
  stop(): Promise<void>;
}

export interface PodmanOptions {
  /** More of registries.conf, e.g. `[[registry]]` tables remapping a registry to a mirror. */
  registriesConf?: string;
}

/** A private podman: storage, configuration and temp dirs under one temp dir, removed by stop(). */
export async function startPodman(opts: PodmanOptions = {}): Promise<PodmanHandle> {
  const dir = await mkdtemp(join(tmpdir(), 'sigil-podman-'));
  const paths = { root: join(dir, 'root'), runroot: join(dir, 'run'), home: join(dir, 'home'), tmp: join(dir, 'tmp') };
  await Promise.all(Object.values(paths).map((p) => mkdir(p, { recursive: true })));
  await Promise.all([
    writeFile(join(dir, 'registries.conf'), `unqualified-search-registries = []\n${opts.registriesConf ?? ''}`),
    writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })),
    writeFile(join(dir, 'containers.conf'), '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n'),
    writeFile(join(dir, 'storage.conf'), `[storage]\ndriver = "vfs"\nrunroot = "${paths.runroot}"\ngraphroot = "${paths.root}"\n`),
  ]);
  const env = {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: paths.home,
    TMPDIR: paths.tmp,
    CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'),
    CONTAINERS_CONF: join(dir, 'containers.conf'),
    CONTAINERS_STORAGE_CONF: join(dir, 'storage.conf'),
    XDG_RUNTIME_DIR: paths.runroot,
  };
  const global = ['--root', paths.root, '--runroot', paths.runroot, '--storage-driver', 'vfs', '--tmpdir', paths.tmp];
  const run = (args: string[]): Promise<CmdResult> => runCommand(PODMAN_BIN, [...global, ...args], PODMAN_TIMEOUT_MS, env);
  return {
    pull: (ref) => run(['pull', '--tls-verify=false', '--signature-policy', join(dir, 'policy.json'), ref]),
    inspect: (ref) => run(['image', 'inspect', ref]),
    async stop() {
      await run(['system', 'reset', '--force']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
