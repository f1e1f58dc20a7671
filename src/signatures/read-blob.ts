import { SigilError, isSigilError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Registry } from '../oci/registry.js';
import { abortable } from '../upstream/abortable.js';

/** A small blob of signature data, read whole: its bytes, or why they are not its bytes. */
export type SignatureBlobRead = { readonly bytes: Buffer } | { readonly problem: string };

/**
 * Reads one blob of signature data (a payload, envelope, bundle or an artifact's config) whole:
 * at most `size` bytes (its descriptor's), digest-checked as it streams whatever the upstream's
 * `verifyBlobDigests` says (these blobs are small, and their bytes are what is judged), and
 * destroyed when `signal` aborts — a body that drips stays under every per-request timeout.
 * Bytes that are longer than the descriptor or do not hash to the digest are a `problem` of this
 * blob; upstream failures and the abort reason are thrown.
 */
export async function readSignatureBlob(
  registry: Registry,
  repository: string,
  digest: Digest,
  size: number,
  what: string,
  signal: AbortSignal | undefined,
): Promise<SignatureBlobRead> {
  signal?.throwIfAborted();
  const opened = registry.openBlob(repository, digest, { method: 'GET', verifyDigest: true, descriptorSize: size });
  const res = await abortable(opened, signal, (late) => late.body?.destroy());
  if (res.body === null) throw new SigilError({ code: 'UPSTREAM_BAD_RESPONSE', message: `${what} ${digest}: blob without a body` });
  const body = res.body;
  const chunks: Buffer[] = [];
  let total = 0;
  const onAbort = (): void => {
    body.destroy(signal?.reason as Error);
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  if (signal?.aborted === true) onAbort();
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length;
      if (total > size) {
        body.destroy();
        return { problem: `blob longer than its descriptor's ${size} bytes` };
      }
      chunks.push(chunk as Buffer);
    }
  } catch (e) {
    if (signal?.aborted === true) throw signal.reason;
    if (isSigilError(e) && e.code === 'DIGEST_MISMATCH') return { problem: e.message };
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  return { bytes: Buffer.concat(chunks) };
}
