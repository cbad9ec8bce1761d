#!/bin/sh
# TEST STAND-IN entrypoint (see the Dockerfile): MinIO's root credentials become SeaweedFS's S3 admin identity.
set -eu
export AWS_ACCESS_KEY_ID="${MINIO_ROOT_USER:?MINIO_ROOT_USER must be set}"
export AWS_SECRET_ACCESS_KEY="${MINIO_ROOT_PASSWORD:?MINIO_ROOT_PASSWORD must be set}"
exec weed "$@"
