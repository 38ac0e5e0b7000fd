#!/bin/sh
# install-test-deps.sh: installs the real software that the end-to-end tests
# run (see internal/realpeer): Postfix, swaks, mailfromd (with mtasim and
# calloutd), pymilter for Debian's /usr/bin/python3, OpenDKIM and Redis,
# and a C compiler for the benchmark's floor (bench/floor/mfloor.c).
#
# It also prepares a private Sendmail 8.17 and a private Exim 4
# (exim4-daemon-light; the last sections below).
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
need_cmd cc gcc
if command -v cc >/dev/null 2>&1 && ! [ -e /usr/include/stdio.h ]; then
	missing="$missing libc6-dev(/usr/include/stdio.h)"
fi
if ! [ -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import Milter' >/dev/null 2>&1; then
	missing="$missing python3-milter(/usr/bin/python3:import Milter)"
fi

apt_updated=""
if [ -z "$missing" ]; then
	echo "install-test-deps: all test packages present"
else
	echo "install-test-deps: missing:$missing"
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-test-deps: must run as root to install packages" >&2
		exit 1
	fi

	export DEBIAN_FRONTEND=noninteractive
	# Keep Postfix from writing a system configuration.
	echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
	apt-get update
	apt_updated=1
	apt-get install -y --no-install-recommends \
		postfix swaks mailfromd python3-milter opendkim opendkim-tools redis-server \
		gcc libc6-dev
	echo "install-test-deps: packages installed"
fi

# ---------------------------------------------------------------------------
# Private Sendmail 8.17 (internal/realpeer/sendmail.go).
#
# Sendmail cannot be installed beside Postfix (both are the system MTA), so
# its Debian packages are only downloaded and unpacked (dpkg -x, nothing
# enters the dpkg database) into $SENDMAIL_CACHE/<version>/, which is usable
# once it holds a READY file. The tests fetch it themselves when it is
# missing; this prepares it ahead. Layout and steps must match
# internal/realpeer/sendmail.go (prepareSendmail).
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# Private Exim 4 (internal/realpeer/exim.go): Debian's exim4-daemon-light
# conflicts with Postfix (both are mail-transport-agent), so, as for
# Sendmail, it is only downloaded and unpacked into
# $EXIM_CACHE/<version>/, usable once it holds a READY file. Layout and
# steps must match internal/realpeer/exim.go (prepareExim).
# ---------------------------------------------------------------------------
EXIM_CACHE=/var/tmp/mailmux-exim
exim_ready() {
	for f in "$EXIM_CACHE"/*/READY; do
		[ -f "$f" ] && return 0
	done
	return 1
}
if exim_ready; then
	echo "install-test-deps: private Exim present"
elif [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: must run as root to prepare the private Exim" >&2
	exit 1
else
	mkdir -p "$EXIM_CACHE"
	(
		flock 9 # the same lock the Go side takes
		exim_ready && exit 0
		tmp=$(mktemp -d "$EXIM_CACHE/.fetch-XXXXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		cd "$tmp"
		if ! apt-get download -q -o APT::Sandbox::User=root exim4-daemon-light; then
			[ -n "$apt_updated" ] || { apt-get update; apt_updated=1; }
			apt-get download -q -o APT::Sandbox::User=root exim4-daemon-light
		fi
		dpkg -x ./exim4-daemon-light_*.deb root
		ls ./*.deb | sed 's|^\./||' >root/READY
		version=$(ls exim4-daemon-light_*.deb | cut -d_ -f2 | sed 's/%3a/:/g')
		rm -rf "${EXIM_CACHE:?}/$version"
		mv root "$EXIM_CACHE/$version"
		echo "install-test-deps: private Exim unpacked in $EXIM_CACHE/$version"
	) 9>"$EXIM_CACHE/.lock"
fi

SENDMAIL_CACHE=/var/tmp/mailmux-sendmail
sendmail_ready() {
	for f in "$SENDMAIL_CACHE"/*/READY; do
		[ -f "$f" ] && return 0
	done
	return 1
}
if sendmail_ready && command -v m4 >/dev/null 2>&1; then
	echo "install-test-deps: private Sendmail present ($(dirname "$(ls -d "$SENDMAIL_CACHE"/*/READY | tail -n 1)"))"
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: must run as root to prepare the private Sendmail" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v m4 >/dev/null 2>&1; then # builds sendmail.cf
	[ -n "$apt_updated" ] || { apt-get update; apt_updated=1; }
	apt-get install -y --no-install-recommends m4
fi
if ! sendmail_ready; then
	mkdir -p "$SENDMAIL_CACHE"
	(
		flock 9 # the same lock the Go side takes
		sendmail_ready && exit 0
		tmp=$(mktemp -d "$SENDMAIL_CACHE/.fetch-XXXXXXXX")
		trap 'rm -rf "$tmp"' EXIT
		cd "$tmp"
		if ! apt-get download -q -o APT::Sandbox::User=root sendmail-bin sendmail-cf sendmail-base libwrap0; then
			[ -n "$apt_updated" ] || apt-get update
			apt-get download -q -o APT::Sandbox::User=root sendmail-bin sendmail-cf sendmail-base libwrap0
		fi
		for deb in ./*.deb; do
			dpkg -x "$deb" root
		done
		# setgid mail: glibc would ignore LD_LIBRARY_PATH (for libwrap.so.0).
		chmod g-s root/usr/libexec/sendmail/sendmail
		ls ./*.deb | sed 's|^\./||' >root/READY
		version=$(ls sendmail-bin_*.deb | cut -d_ -f2 | sed 's/%3a/:/g')
		rm -rf "${SENDMAIL_CACHE:?}/$version"
		mv root "$SENDMAIL_CACHE/$version"
		echo "install-test-deps: private Sendmail unpacked in $SENDMAIL_CACHE/$version"
	) 9>"$SENDMAIL_CACHE/.lock"
fi
echo "install-test-deps: done"
