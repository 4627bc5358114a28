#!/usr/bin/env bash
# Installs bubblewrap (bwrap), which the trial sandbox of the code-editing agent needs to make the
# file system read-only, hide the study storage and cut the network (centaur_hpo.sandbox), and
# git, which keeps the agent's edit history. Idempotent: does nothing when both exist. Afterwards
# `python -m centaur_hpo.sandbox` reports what this machine can enforce.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v git >/dev/null 2>&1 || missing+=(git)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-sandbox: run as root, or install ${missing[*]} with your package manager" >&2
    exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
