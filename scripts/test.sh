#!/usr/bin/env bash
# The test command: installs or starts what the tests need on a fresh machine
# of this project's kind (Debian, root, PostgreSQL packaged), then runs every
# test of the workspace. Extra arguments go to `cargo test`.
#
# What the tests need beyond the Rust toolchain:
# - PostgreSQL answering on $DOMICILE_TEST_POSTGRES (default
#   postgres://postgres@127.0.0.1:5432, trust auth): the catalog's PostgreSQL
#   backend, the shared-catalog tests and `catalog migrate-to`;
# - rclone (Debian), the aws cli, boto3 and moto (PyPI): the S3 API's
#   end-to-end tests and the s3:// region tests;
# - chromium and chromium-driver (Debian) and selenium (PyPI): the web
#   console's browser test (crates/cli/tests/console.rs).
# These tests fail, never skip, when what they need is missing.
#
# `cargo test -p domicile-core` needs none of it: the fast inner loop.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "scripts/test.sh: $*" >&2; }

apt_install() {
  if [ -z "${DOMICILE_APT_UPDATED:-}" ]; then
    apt-get update -qq
    DOMICILE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

start_postgres() {
  if [ -n "${DOMICILE_TEST_POSTGRES:-}" ]; then
    return # the caller names its own server
  fi
  if ! command -v pg_lsclusters >/dev/null 2>&1; then
    log "installing PostgreSQL"
    apt_install postgresql
  fi
  # Start every cluster that is down. Read the list first: a pipe into
  # grep can fail under pipefail.
  local clusters
  clusters="$(pg_lsclusters --no-header 2>/dev/null || true)"
  if [ -z "$clusters" ]; then
    local version
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    log "creating PostgreSQL cluster $version/main"
    pg_createcluster "$version" main -- --auth=trust
    clusters="$(pg_lsclusters --no-header 2>/dev/null || true)"
  fi
  while read -r pg_version pg_cluster _port pg_status _rest; do
    [ -n "${pg_version:-}" ] || continue
    case "$pg_status" in
      online*) ;;
      *) pg_ctlcluster --skip-systemctl-redirect "$pg_version" "$pg_cluster" start \
           || log "could not start PostgreSQL cluster $pg_version/$pg_cluster" ;;
    esac
  done <<< "$clusters"
  for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p 5432 && return
    sleep 1
  done
  log "PostgreSQL does not answer on 127.0.0.1:5432: its tests will fail"
}

install_clients() {
  command -v rclone >/dev/null 2>&1 || { log "installing rclone"; apt_install rclone; }
  # The TLS tests: curl as an HTTPS client, openssl to make RSA and EC keys.
  command -v curl >/dev/null 2>&1 || { log "installing curl"; apt_install curl; }
  command -v openssl >/dev/null 2>&1 || { log "installing openssl"; apt_install openssl; }
  command -v aws >/dev/null 2>&1 || { log "installing the aws cli"; python3 -m pip install -q awscli; }
  python3 -c "import boto3" 2>/dev/null || { log "installing boto3"; python3 -m pip install -q boto3; }
  command -v moto_server >/dev/null 2>&1 || { log "installing moto"; python3 -m pip install -q 'moto[server]'; }
  # The web console's browser test: headless Chromium driven by selenium.
  command -v chromium >/dev/null 2>&1 || { log "installing chromium"; apt_install chromium; }
  command -v chromedriver >/dev/null 2>&1 || { log "installing chromium-driver"; apt_install chromium-driver; }
  python3 -c "import selenium" 2>/dev/null || { log "installing selenium"; python3 -m pip install -q selenium; }
}

start_postgres
install_clients
cargo test --workspace --locked "$@"
