/** image-spec "Image Index" platform: what an index child runs on. */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** `linux/amd64`, `linux/arm64/v8`: parsed, or undefined when malformed. */
export function parsePlatform(text: string): Platform | undefined {
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9_.-]+$/i.test(p))) return undefined;
  const [os, architecture, variant] = parts;
  return { os, architecture, ...(variant !== undefined ? { variant } : {}) };
}

/** A child of an index fits the wanted platforms (no list: every child); a variant asked for must match. */
export function platformWanted(d: { readonly platform?: Platform }, wanted: readonly Platform[] | undefined): boolean {
  if (wanted === undefined) return true;
  const p = d.platform;
  if (p === undefined) return false;
  return wanted.some((w) => w.os === p.os && w.architecture === p.architecture && (w.variant === undefined || w.variant === p.variant));
}

export function platformText(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant !== undefined ? `/${p.variant}` : ''}`;
}
