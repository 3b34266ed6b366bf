#!/usr/bin/env bash
# Installs what sluice's quickstart and tests need on a fresh Debian machine:
# the Postgres server binaries and the local Kinesis-API servers (npm).
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$PATH:/usr/local/go/bin"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
	echo "setup: installing the Postgres server (Debian package postgresql)"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi
if ! ls /usr/lib/postgresql/*/bin/pg_recvlogical >/dev/null 2>&1; then
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql-client >/dev/null || true
fi

if ! command -v go >/dev/null; then
	echo "setup: Go is missing: install Go 1.26 (https://go.dev/doc/install)" >&2
	exit 1
fi

if [ -f tools/kinesis/package.json ]; then
	if ! command -v npm >/dev/null; then
		echo "setup: installing Node.js and npm (Debian packages nodejs npm)"
		$SUDO apt-get update -qq
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
	fi
	if [ ! -f tools/kinesis/node_modules/.package-lock.json ] || [ tools/kinesis/package-lock.json -nt tools/kinesis/node_modules/.package-lock.json ]; then
		echo "setup: installing the local Kinesis-API servers (npm ci in tools/kinesis)"
		(cd tools/kinesis && npm ci --no-audit --no-fund --loglevel=error)
	fi
fi

go mod download
