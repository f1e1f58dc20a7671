/**
 * Every help text of the command line: `sigil --help` (USAGE) and `sigil <command> --help`
 * (commandUsage), which a usage error of that command prints too.
 */
export const USAGE = `sigil — an OCI registry proxy that only lets signed images through

Usage:
  sigil serve [--config FILE] [--listen HOST:PORT] [--log-format json|pretty] [--offline]
                                             run the proxy until SIGTERM/SIGINT; SIGHUP, or a change of a
                                             file the config names, reloads it (--listen or $SIGIL_LISTEN
                                             overrides server.listen; logs are JSON unless --log-format pretty)
  sigil verify IMAGE [--config FILE] [--json]
                                             verify IMAGE (host/repo:tag or host/repo@sha256:…) as serve
                                             would; print who signed it, or why not (exit 0 / 1 / 3)
  sigil verify IMAGE --key FILE | --certificate-identity[-regexp] S --certificate-oidc-issuer[-regexp] I
               [--trusted-root FILE] [--allow-http-registry] [--insecure-ignore-tlog] [--json]
                                             cosign-style: these flags are the authority; without a config
                                             IMAGE's registry is contacted directly
  sigil mirror FILE [--config FILE] [--export DIR] [--json]
                                             copy the images FILE selects (verified as serve does) with their
                                             signatures into the content store; --export also writes an OCI layout
  sigil mirror --import DIR [--config FILE]  read such a layout into the store (digests checked, each tag verified)
  sigil cache ls [--config FILE] [--json]    stored tags: digest, objects, bytes, last use
  sigil cache prune [--older-than AGE] [--max-bytes N] [--dry-run] [--config FILE]
                                             remove whole images unused for AGE, then least recently used ones down to N bytes
  sigil config check [--config FILE]         validate a config; every problem with its YAML path
  sigil <command> --help                     that command's help
  sigil --help | --version

Config lookup: --config, then $SIGIL_CONFIG, then config/sigil.yaml, else a built-in default
(listen 0.0.0.0:5000, public upstreams, every image in warn mode).

Exit status: 0 ok (verify: verified); 1 failure (verify: not verified); 2 usage or config error;
3 verify: could not check (upstream unreachable or failing).
`;

export const SERVE_USAGE = `Usage:
  sigil serve [--config F] [--listen HOST:PORT] [--log-format json|pretty] [--offline]
                    run the proxy until SIGTERM/SIGINT, then drain the requests in flight;
                    SIGHUP, or a change of the config or a file it names, reloads the config
                    --listen (else $SIGIL_LISTEN) overrides server.listen
                    --log-format pretty prints readable logs (default: JSON lines)
                    --offline serves only from the content store (cache.store) and contacts no upstream

Exit status: 0 clean shutdown; 1 cannot listen, or requests still open 30 s after the signal;
2 bad config.
`;

export const VERIFY_USAGE = `Usage:
  sigil verify IMAGE [--config F] [--json]
                    resolve IMAGE through the configured upstreams and verify it as serve would
  sigil verify IMAGE --key FILE [--insecure-ignore-tlog] [--trusted-root FILE] [--allow-http-registry] [--config F] [--json]
  sigil verify IMAGE --certificate-identity S | --certificate-identity-regexp R
                     --certificate-oidc-issuer I | --certificate-oidc-issuer-regexp R
                     [--trusted-root FILE] [--allow-http-registry] [--config F] [--json]
                    cosign-style: the flags are the one authority of this check (mode enforce). With a
                    config, IMAGE goes through its upstreams; without one, IMAGE's registry is contacted
                    directly over HTTPS (--allow-http-registry: plain HTTP when HTTPS fails)

IMAGE: host/repo:tag, host/repo@sha256:…, or host/repo:tag@sha256:… (a platform manifest checked
through the index its tag names); without a host, the default upstream (without a config: docker.io).
--key: a PEM public key; the signature needs a Rekor entry unless --insecure-ignore-tlog.
--certificate-*-regexp: must match the whole value (cosign accepts a match anywhere in it).
--trusted-root: a trusted_root.json (default: the public Sigstore root shipped with sigil).

Exit status: 0 verified; 1 not verified; 2 usage or config error; 3 could not check (the registry
unreachable or failing, or the signatures could not be read).
`;

export const MIRROR_USAGE = `Usage:
  sigil mirror FILE [--config F] [--export DIR] [--json]
                    copy the images FILE selects, verified as serve verifies them, with their
                    signatures, into the content store (cache.store); --export also writes an
                    OCI layout (ref names <upstream>/<repo>:<tag>, e.g. skopeo copy oci:DIR:ghcr.io/acme/app:1.2.3 …)
  sigil mirror --import DIR [--config F] [--json]
                    read such a layout into the content store (every digest checked), each tag
                    verified as serve --offline verifies it before it is stored; signature data
                    only when its content is signature data and the image it signs is kept

FILE:
  images:
    - image: ghcr.io/acme/app     # a configured upstream's name (or alias), then the repository
      tags: ["1.2.3"]             # explicit tags
      semver: ">=1.2 <2"          # every tag (leading v allowed) in the range
      latest: 3                   # the 3 highest release versions
      platforms: [linux/amd64]    # of an index, only these children (default: all)

Each image is reported as verified (signature verified), unverified (no policy, or mode off),
signature (signature data, kept with the image it signs), denied (did not verify under an
enforce or warn policy: not copied) or failed (could not be copied or checked). Progress goes to
stderr: a line per image and, while one downloads, a line every few seconds (redrawn on a terminal).

Exit status: 0 everything mirrored (imported); 1 something denied or failed; 2 usage, config or FILE error.
`;

export const CACHE_USAGE = `Usage:
  sigil cache ls [--config F] [--json]
                    stored tags: digest, objects, bytes, last use
  sigil cache prune [--older-than AGE] [--max-bytes N] [--dry-run] [--config F] [--json]
                    remove whole images unused for AGE (7d, 12h, 1d12h), then the least recently
                    used ones until the store holds at most N bytes (10737418240, 10GiB);
                    --dry-run says what would be removed and removes nothing

Exit status: 0 ok; 2 usage or config error.
`;

export const CONFIG_USAGE = `Usage:
  sigil config check [--config F]
                    validate the config (and every file it names); print every problem with its
                    YAML path, warnings included

Exit status: 0 valid; 2 invalid.
`;

const COMMAND_USAGE: ReadonlyMap<string, string> = new Map([
  ['serve', SERVE_USAGE],
  ['verify', VERIFY_USAGE],
  ['mirror', MIRROR_USAGE],
  ['cache', CACHE_USAGE],
  ['config', CONFIG_USAGE],
]);

/** `sigil <command> --help`; undefined for a command that does not exist. */
export function commandUsage(command: string): string | undefined {
  return COMMAND_USAGE.get(command);
}
