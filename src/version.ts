import { readFileSync } from 'node:fs';

/** sigil's version, from its package.json (`sigil --version`, `sigil_build_info`). */
export function sigilVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
