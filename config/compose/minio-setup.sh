#!/bin/sh
# The shared profile's one-shot job (docker-compose.yml, service minio-setup, image minio/mc):
# creates the bucket sigil's replicas share and an access key that may use that bucket only
# (not MinIO's root credentials). Runs again on every `docker compose --profile shared up`;
# each step is idempotent. (MC may be overridden: test/unit/deploy-compose.test.ts runs this
# script with a stand-in for mc.)
set -eu

MC=${MC:-/usr/bin/mc}
MINIO_URL=${MINIO_URL:-http://minio:9000}
BUCKET=${BUCKET:-sigil-store}
POLICY=${BUCKET}-readwrite
MINIO_WAIT_SECONDS=60 # MinIO answers within a few seconds of starting
: "${MINIO_ROOT_USER:?MINIO_ROOT_USER must be set}"
: "${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD must be set}"
: "${SIGIL_S3_ACCESS_KEY_ID:?SIGIL_S3_ACCESS_KEY_ID must be set (the replicas' access key)}"
: "${SIGIL_S3_SECRET_ACCESS_KEY:?SIGIL_S3_SECRET_ACCESS_KEY must be set}"

log() { printf 'minio-setup: %s\n' "$*" >&2; }

# 1. MinIO is up when it accepts the root credentials.
waited=0
until "$MC" alias set local "$MINIO_URL" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null 2>&1; do
  waited=$((waited + 1))
  if [ "$waited" -ge "$MINIO_WAIT_SECONDS" ]; then
    log "MinIO at $MINIO_URL did not answer within ${MINIO_WAIT_SECONDS}s"
    exit 1
  fi
  sleep 1
done

# 2. The bucket.
"$MC" mb --ignore-existing "local/$BUCKET"

# 3. What sigil does with it: read, write and delete objects (delete: eviction under
# cache.shared.s3.maxBytes), list them (eviction), clean up its multipart uploads. Nothing else.
policy=$(mktemp)
trap 'rm -f "$policy"' EXIT
cat >"$policy" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::$BUCKET/*"]
    }
  ]
}
JSON
"$MC" admin policy create local "$POLICY" "$policy"

# 4. The replicas' access key, with that policy only.
"$MC" admin user add local "$SIGIL_S3_ACCESS_KEY_ID" "$SIGIL_S3_SECRET_ACCESS_KEY"
# (Attaching twice is an error, hence the look first; `case`, not grep: the mc image is minimal.)
info=$("$MC" admin user info local "$SIGIL_S3_ACCESS_KEY_ID" --json)
case "$info" in
  *'"policyName":'*"\"$POLICY\""*) log "$SIGIL_S3_ACCESS_KEY_ID already has $POLICY" ;;
  *) "$MC" admin policy attach local "$POLICY" --user "$SIGIL_S3_ACCESS_KEY_ID" ;;
esac
log "bucket $BUCKET ready for $SIGIL_S3_ACCESS_KEY_ID"
