#!/bin/sh
# dtkbot's build step in a Kubernetes Job (package kubebuild): copy the recipe
# out of its ConfigMap, build it with buildah, push it, and leave the pushed
# digest as the container's termination message.
#
# The arguments are buildah bud's: the kernel and the target, never a
# secret. Secrets are files at fixed paths, mounted from Secret volumes only
# when configured; they are handed to buildah here, so neither a secret nor
# its path appears in the pod's spec:
#   /var/run/dtkbot/secrets/rhsm/{org,activation-key}  RUN --mount=type=secret ids
#   /var/run/dtkbot/secrets/pull/auth.json              pulls (the base image)
#   /var/run/dtkbot/secrets/push/auth.json              the push
# STORAGE_DRIVER and BUILDAH_ISOLATION come from the environment (buildah
# reads both); DTKBOT_IMAGE is the reference to push, DTKBOT_TLS_VERIFY
# ("true", "false" or empty) the push's TLS verification.
set -eu
recipe=/var/run/dtkbot/recipe
secrets=/var/run/dtkbot/secrets
work=/workspace
mkdir -p "$work/context" "$HOME"
cp -RL "$recipe/context/." "$work/context/"
cp -L "$recipe/Containerfile" "$work/Containerfile"

if [ -f "$secrets/rhsm/org" ]; then
  set -- --secret "id=rhsm-org,src=$secrets/rhsm/org" \
    --secret "id=rhsm-activation-key,src=$secrets/rhsm/activation-key" "$@"
fi
if [ -f "$secrets/pull/auth.json" ]; then
  set -- --authfile "$secrets/pull/auth.json" "$@"
fi
echo "dtkbot: building $DTKBOT_IMAGE"
buildah bud "$@"

set -- --digestfile /dev/termination-log
if [ -n "${DTKBOT_TLS_VERIFY:-}" ]; then
  set -- "$@" "--tls-verify=$DTKBOT_TLS_VERIFY"
fi
if [ -f "$secrets/push/auth.json" ]; then
  set -- "$@" --authfile "$secrets/push/auth.json"
fi
echo "dtkbot: pushing $DTKBOT_IMAGE"
buildah push "$@" "$DTKBOT_IMAGE"
