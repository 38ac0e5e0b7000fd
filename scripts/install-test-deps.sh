#!/bin/sh
# install-test-deps.sh: installs the real software that the end-to-end tests
# run (see internal/realpeer): Postfix, swaks, mailfromd (with mtasim and
# calloutd), pymilter for Debian's /usr/bin/python3, OpenDKIM and Redis.
#
# Idempotent: when everything is already present it exits at once without
# touching apt. Must be run as root on Debian 12 (bookworm) or similar.
# Daemons are not started or configured: Postfix is preseeded to
# "No configuration", and the tests start private instances themselves.
set -eu

missing=""
need_cmd() {
	# $1: command name, $2: Debian package that provides it
	if ! command -v "$1" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$1" ] && ! [ -x "/usr/bin/$1" ]; then
		missing="$missing $2($1)"
	fi
}

need_cmd postfix postfix
need_cmd postqueue postfix
need_cmd swaks swaks
need_cmd mailfromd mailfromd
need_cmd mtasim mailfromd
need_cmd calloutd mailfromd
need_cmd opendkim opendkim
need_cmd opendkim-genkey opendkim-tools
need_cmd redis-server redis-server
if ! [ -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import Milter' >/dev/null 2>&1; then
	missing="$missing python3-milter(/usr/bin/python3:import Milter)"
fi

if [ -z "$missing" ]; then
	echo "install-test-deps: all test dependencies present"
	exit 0
fi

echo "install-test-deps: missing:$missing"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: must run as root to install packages" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Keep Postfix from writing a system configuration.
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
apt-get update
apt-get install -y --no-install-recommends \
	postfix swaks mailfromd python3-milter opendkim opendkim-tools redis-server
echo "install-test-deps: done"
