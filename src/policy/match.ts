import type { Policy } from '../config/types.js';

/** sigil.example.yaml: policies are tried in order; the first whose match fits `<upstream>/<repository>` applies. */
export function findPolicy(policies: readonly Policy[], upstream: string, repository: string): Policy | undefined {
  const subject = `${upstream}/${repository}`;
  return policies.find((p) => p.matchers.some((re) => re.test(subject)));
}
