export const USAGE = `sigil — an OCI registry proxy that only lets signed images through

Usage:
  sigil serve [--config FILE] [--listen HOST:PORT] [--log-format json|pretty] [--offline]
                                             run the proxy until SIGTERM/SIGINT; SIGHUP, or a change of a
                                             file the config names, reloads it (--listen or $SIGIL_LISTEN
                                             overrides server.listen; logs are JSON unless --log-format pretty)
  sigil verify IMAGE [--config FILE] [--json]
                                             verify IMAGE (host/repo:tag or host/repo@sha256:…) as serve
                                             would; print who signed it, or why not (exit 0 / 1)
  sigil mirror FILE [--config FILE] [--export DIR] [--json]
                                             copy the images FILE selects (verified as serve does) with their
                                             signatures into the content store; --export also writes an OCI layout
  sigil mirror --import DIR [--config FILE]  read such a layout into the store (digests checked, each tag verified)
  sigil cache ls [--config FILE] [--json]    stored tags: digest, objects, bytes, last use
  sigil cache prune [--older-than AGE] [--max-bytes N] [--config FILE]
                                             remove whole images unused for AGE, then least recently used ones down to N bytes
  sigil config check [--config FILE]         validate a config; every problem with its YAML path
  sigil --help | --version

Config lookup: --config, then $SIGIL_CONFIG, then config/sigil.yaml, else a built-in default
(listen 0.0.0.0:5000, public upstreams, every image in warn mode).

Exit status: 0 ok (verify: verified); 1 failure (verify: not verified); 2 usage or config error.
`;
