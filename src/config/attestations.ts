/**
 * `policies[].attestations`: the signed in-toto attestations a policy requires, each with a name,
 * the predicate type that meets it and a CEL condition (condition.ts). Validated and compiled in
 * one step, so that every problem — a missing key, a duplicate name, an expression that does not
 * parse or cannot be a bool — is reported with its YAML path by `sigil config check`.
 */
import { compileCondition } from './condition.js';
import type { AttestationRequirement } from './types.js';

/** The condition of an entry that writes none: any attestation of the predicate type will do. */
export const DEFAULT_CONDITION = 'true';

/** What this validation needs of schema.ts's problem collector (its Checker, passed in). */
export interface SchemaChecker {
  error(path: string, message: string): void;
  map(v: unknown, path: string, keys: readonly string[], required?: boolean): Record<string, unknown> | undefined;
  list(v: unknown, path: string): unknown[] | undefined;
  str(v: unknown, path: string, required?: boolean): string | undefined;
  warn(path: string, message: string): void;
}

const ENTRY_KEYS = ['name', 'predicateType', 'condition'];

/** `predicateType`: one predicate type, or a list of them of which any meets the entry (an SPDX or a CycloneDX SBOM). */
function predicateTypes(c: SchemaChecker, raw: unknown, at: string): string[] {
  if (!Array.isArray(raw)) {
    const one = c.str(raw, at, true);
    if (one !== undefined) warnShortName(c, one, at);
    return one === undefined ? [] : [one];
  }
  if (raw.length === 0) c.error(at, 'must name at least one predicate type');
  return raw.flatMap((t, i) => {
    const one = c.str(t, `${at}[${i}]`, true);
    if (one !== undefined) warnShortName(c, one, `${at}[${i}]`);
    return one === undefined ? [] : [one];
  });
}

/**
 * A predicate type is matched exactly as the signed statement spells it, and statements carry
 * URIs: a name without a scheme (cosign's `--type slsaprovenance`, `spdxjson`, …) matches
 * nothing, so every image under the policy would be denied for it.
 */
function warnShortName(c: SchemaChecker, type: string, at: string): void {
  if (!/^[a-z][a-z0-9+.-]*:/i.test(type)) {
    c.warn(at, `${JSON.stringify(type)} is not a URI, and a statement's predicateType is one (e.g. https://slsa.dev/provenance/v1): cosign's short names for \`cosign attest --type\` are not what it writes into the statement, so this matches no attestation`);
  }
}

/** Validates and compiles `attestations` (absent: none). Entries with problems are left out. */
export function checkAttestations(c: SchemaChecker, raw: unknown, at: string): AttestationRequirement[] {
  const list = c.list(raw, at);
  if (list === undefined) return [];
  if (list.length === 0) c.error(at, 'must list at least one attestation (omit it for none)');
  const out: AttestationRequirement[] = [];
  const names = new Map<string, number>();
  list.forEach((entry, i) => {
    const eat = `${at}[${i}]`;
    const e = c.map(entry, eat, ENTRY_KEYS, true);
    if (e === undefined) return;
    const name = c.str(e.name, `${eat}.name`, true);
    if (name !== undefined) {
      const first = names.get(name);
      if (first !== undefined) c.error(`${eat}.name`, `duplicate attestation name ${JSON.stringify(name)} (also ${at}[${first}])`);
      else names.set(name, i);
    }
    const types = predicateTypes(c, e.predicateType, `${eat}.predicateType`);
    const text = e.condition === undefined || e.condition === null ? DEFAULT_CONDITION : c.str(e.condition, `${eat}.condition`, true);
    if (text === undefined) return;
    const condition = compileCondition(text.trim());
    if ('problems' in condition) {
      for (const p of condition.problems) c.error(`${eat}.condition`, p);
      return;
    }
    if (name !== undefined && types.length > 0) out.push({ name, predicateTypes: types, condition });
  });
  return out;
}
