import { open, stat, type FileHandle } from 'node:fs/promises';
import { SigilError, isSigilError } from '../errors.js';
import { digestOf, type Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { MANIFEST_MAX_BYTES } from '../upstream/limits.js';
import { NOFOLLOW_READ, blobPath } from './oci-layout.js';

/**
 * The objects of an OCI layout being imported, read as untrusted input: a manifest only within
 * MANIFEST_MAX_BYTES, with the descriptor's size and digest checked before it is used; a blob
 * opened (never through a symlink) for the store to hash as it writes it.
 */

/** Is `digest` in the layout (a regular file)? A child manifest missing from a platform-filtered mirror is not. */
export async function inLayout(dir: string, digest: Digest): Promise<boolean> {
  return stat(blobPath(dir, digest)).then((st) => st.isFile(), () => false);
}

/** The bytes of the manifest `desc` names: MANIFEST_TOO_LARGE, MANIFEST_UNKNOWN, or DIGEST_MISMATCH when they are not its bytes. */
export async function readLayoutManifest(dir: string, desc: Descriptor): Promise<Buffer> {
  if (desc.size > MANIFEST_MAX_BYTES) throw new SigilError({ code: 'MANIFEST_TOO_LARGE', message: `manifest ${desc.digest}: ${desc.size} bytes exceed ${MANIFEST_MAX_BYTES}` });
  let bytes: Buffer;
  try {
    const fh = await open(blobPath(dir, desc.digest), NOFOLLOW_READ);
    try {
      const { size } = await fh.stat();
      if (size !== desc.size) throw new SigilError({ code: 'DIGEST_MISMATCH', message: `manifest ${desc.digest}: the layout's file has ${size} bytes, the descriptor says ${desc.size}` });
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (isSigilError(e)) throw e;
    throw new SigilError({ code: 'MANIFEST_UNKNOWN', message: `manifest ${desc.digest}: not in the layout (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
  }
  const got = digestOf(bytes, desc.digest);
  if (got !== desc.digest) throw new SigilError({ code: 'DIGEST_MISMATCH', message: `manifest ${desc.digest}: the layout's file hashes to ${got}` });
  return bytes;
}

/** The layout's file of blob `digest`, open for reading; BLOB_UNKNOWN when it is not there. */
export async function openLayoutBlob(dir: string, digest: Digest): Promise<FileHandle> {
  try {
    return await open(blobPath(dir, digest), NOFOLLOW_READ);
  } catch (e) {
    throw new SigilError({ code: 'BLOB_UNKNOWN', message: `blob ${digest}: not in the layout (${(e as NodeJS.ErrnoException).code ?? String(e)})` });
  }
}
