import type { Config } from '../config/types.js';
import { messageOf } from '../errors.js';
import type { ManifestGate } from '../gate/manifest-gate.js';
import type { Evaluation, ManifestTarget } from '../policy/evaluation.js';
import type { Digest } from '../oci/digest.js';
import { INDEX_MEDIA_TYPES } from '../oci/media-types.js';
import { findPolicy } from '../policy/match.js';
import { signatureSubject } from './inventory.js';
import { parseManifest } from '../oci/manifest.js';
import { judge } from './run.js';

/**
 * What a tag claims a manifest is: cosign's signatures or attestations (`<alg>-<hex>.sig`,
 * `.att`) or the referrers fallback index (`<alg>-<hex>`) of that digest. A claim only:
 * `--import` believes the content.
 */
export interface SignatureTag {
  readonly subject: Digest;
  readonly as: 'signature' | 'referrers';
}

export function signatureTagOf(tag: string): SignatureTag | undefined {
  const subject = signatureSubject(tag);
  if (subject === undefined) return undefined;
  return { subject, as: tag.endsWith('.sig') || tag.endsWith('.att') ? 'signature' : 'referrers' };
}

/**
 * Why a manifest tagged as the referrers fallback index of `subject` is not one, or undefined
 * when it is: an image index (distribution-spec "Referrers Tag Schema") every entry of which
 * that this import stored (`imported`; the others are descriptors only, nothing of them is
 * stored) is an image manifest whose `subject` is `subject` and which the gate judges a
 * signature artifact on its content, or verified. The gate reads the store.
 */
export async function referrersIndexProblem(gate: ManifestGate, target: ManifestTarget, ev: Evaluation, subject: Digest, imported: ReadonlySet<Digest>): Promise<string | undefined> {
  const { mediaType, bytes, digest } = ev.manifest;
  if (!INDEX_MEDIA_TYPES.has(mediaType)) return `it is a ${mediaType}, not an image index`;
  let parsed;
  try {
    parsed = parseManifest(bytes, mediaType, `${target.upstream}/${target.repository}@${digest}`);
  } catch (e) {
    return messageOf(e);
  }
  if (parsed.kind !== 'index') return 'it is not an image index';
  for (const child of parsed.children) {
    if (!imported.has(child.digest)) continue;
    let cev: Evaluation;
    try {
      cev = await gate.evaluate({ upstream: target.upstream, repository: target.repository, reference: child.digest });
    } catch (e) {
      return `it lists ${child.digest}, which cannot be judged: ${messageOf(e)}`;
    }
    let c;
    try {
      c = parseManifest(cev.manifest.bytes, cev.manifest.mediaType, `${target.upstream}/${target.repository}@${child.digest}`);
    } catch (e) {
      return `it lists ${child.digest}: ${messageOf(e)}`;
    }
    if (c.kind !== 'image' || c.subject?.digest !== subject) return `it lists ${child.digest}, which is not a referrer of ${subject}`;
    if (cev.basis !== 'signature-artifact' && cev.outcome?.kind !== 'verified') {
      return `it lists ${child.digest}, which is not signature data${cev.notArtifact ? ` (${cev.notArtifact})` : ''}: ${judge(cev).reason}`;
    }
  }
  return undefined;
}

/**
 * Where the gate reads the signature data of images in a repository: the repository itself, or
 * its policy's `signatureRepository` (`<upstream>/<repo>` naming a known upstream, else a
 * repository on the same upstream), as ManifestGate and `sigil mirror` resolve it.
 */
export class SignatureHomes {
  readonly #config: Config;
  readonly #upstreams: ReadonlySet<string>;

  constructor(config: Config, upstreams: ReadonlySet<string>) {
    this.#config = config;
    this.#upstreams = upstreams;
  }

  /**
   * `<upstream>/<repository>` of the places signature data of an image in this repository is
   * kept with it: the repository itself and, when its policy names one, the signature repository.
   */
  readFrom(upstream: string, repository: string): ReadonlySet<string> {
    const own = `${upstream}/${repository}`;
    const sr = findPolicy(this.#config.policies, upstream, repository)?.signatureRepository;
    if (sr === undefined) return new Set([own]);
    const slash = sr.indexOf('/');
    return new Set([own, slash > 0 && this.#upstreams.has(sr.slice(0, slash)) ? sr : `${upstream}/${sr}`]);
  }
}
