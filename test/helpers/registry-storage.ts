import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { RegistryHandle } from './registry.js';
import { sha256Hex } from './digest.js';

/**
 * Writes a manifest straight into the real registry's filesystem storage, the layout
 * distribution 2.8 reads (docker/registry/v2/{blobs,repositories}). For the real signature
 * fixtures: their manifests name config and layer blobs nobody has, so the registry's push
 * API (which checks that referenced blobs exist) refuses them; reads do not check.
 */
export async function seedManifest(reg: RegistryHandle, repo: string, tag: string | null, bytes: Buffer): Promise<string> {
  const hex = sha256Hex(bytes);
  const digest = `sha256:${hex}`;
  const v2 = join(reg.dir, 'data', 'docker', 'registry', 'v2');
  const blobDir = join(v2, 'blobs', 'sha256', hex.slice(0, 2), hex);
  await mkdir(blobDir, { recursive: true });
  await writeFile(join(blobDir, 'data'), bytes);
  const manifests = join(v2, 'repositories', repo, '_manifests');
  const rev = join(manifests, 'revisions', 'sha256', hex);
  await mkdir(rev, { recursive: true });
  await writeFile(join(rev, 'link'), digest);
  if (tag !== null) {
    const current = join(manifests, 'tags', tag, 'current');
    const index = join(manifests, 'tags', tag, 'index', 'sha256', hex);
    await mkdir(current, { recursive: true });
    await mkdir(index, { recursive: true });
    await writeFile(join(current, 'link'), digest);
    await writeFile(join(index, 'link'), digest);
  }
  return digest;
}
