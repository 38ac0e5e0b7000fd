#!/bin/sh
# systemd-smoke.sh: boot a throwaway systemd (systemd-nspawn) on a
# copy-on-write overlay of this machine's root, install the Debian package
# built from the tree (make deb) in it, start pmult.service and
# calloutd.service, reload both (ExecReload: SIGHUP), and check that they
# are active and that the reloads were applied. Nothing is written to the
# host: the overlay's upper layer is a tmpfs, the container has its own
# network (--private-network) and is powered off at the end.
#
# Opt-in (make systemd-smoke), not part of make test: it needs root and
# systemd-nspawn (Debian: apt-get install systemd-container); the host's
# PID 1 need not be systemd (--register=no --keep-unit). Exit 0 when the
# units ran; the container's log is printed.
set -eu
cd "$(dirname "$0")/.."
command -v systemd-nspawn >/dev/null || { echo "systemd-smoke: systemd-nspawn missing (apt-get install systemd-container)" >&2; exit 69; }
[ "$(id -u)" = 0 ] || { echo "systemd-smoke: must run as root" >&2; exit 77; }
work=$(mktemp -d /tmp/systemd-smoke.XXXXXX)
mounted=
cleanup() {
	for m in $mounted; do umount "$m" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work/smoke/out" "$work/ns"
deb=$(./scripts/build-deb.sh "$work/smoke")
mv "$deb" "$work/smoke/mailmux.deb"
cat > "$work/smoke/smoke.sh" <<'INNER'
#!/bin/sh
# Inside the container: install the package, start, reload, report.
exec >/smoke/out/log 2>&1
set -x
cat /proc/1/comm
systemctl --version | head -1
dpkg -i /smoke/mailmux.deb
systemctl daemon-reload
systemctl enable --now pmult.service calloutd.service
for i in 1 2 3 4 5 6 7 8 9 10; do
	systemctl is-active pmult.service calloutd.service && break
	sleep 1
done
systemctl reload calloutd.service
systemctl reload pmult.service
sleep 1
systemctl is-active pmult.service calloutd.service > /smoke/out/active
systemctl --no-pager status pmult.service calloutd.service
journalctl --no-pager -o short-iso -u pmult.service -u calloutd.service > /smoke/out/journal
cat /smoke/out/journal
ls -l /run/pmult /run/calloutd
echo SMOKE-DONE
systemctl poweroff
INNER
cat > "$work/smoke/mailmux-smoke.service" <<'UNIT'
[Unit]
Description=mailmux smoke test (install the .deb, start and reload pmult and calloutd)
After=basic.target
Wants=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh /smoke/smoke.sh
UNIT
# The container's root: the host's root file system, copy-on-write onto a
# tmpfs (nspawn refuses / itself with --volatile=overlay).
mount -t tmpfs -o size=2g tmpfs "$work/ns"
mounted="$work/ns"
mkdir -p "$work/ns/upper" "$work/ns/work" "$work/ns/root"
mount -t overlay overlay -o "lowerdir=/,upperdir=$work/ns/upper,workdir=$work/ns/work" "$work/ns/root"
mounted="$work/ns/root $mounted"
timeout 300 systemd-nspawn --quiet --directory="$work/ns/root" --private-network --register=no --keep-unit \
	--link-journal=no --console=pipe --bind="$work/smoke:/smoke" \
	--bind-ro="$work/smoke/mailmux-smoke.service:/etc/systemd/system/mailmux-smoke.service" \
	--boot -- systemd.unit=mailmux-smoke.service > "$work/console" 2>&1 || {
	echo "systemd-smoke: systemd-nspawn failed:" >&2
	cat "$work/console" >&2
	exit 1
}
cat "$work/smoke/out/log"
status=0
if [ "$(cat "$work/smoke/out/active" 2>/dev/null)" != "$(printf 'active\nactive')" ]; then
	echo "systemd-smoke: FAIL: pmult.service and calloutd.service are not both active" >&2
	status=1
fi
for unit in pmult calloutd; do
	grep -q "prog=$unit.*configuration reloaded\|$unit.*msg=\"configuration reloaded\"" "$work/smoke/out/journal" || {
		echo "systemd-smoke: FAIL: $unit did not log its reload" >&2
		status=1
	}
done
[ $status = 0 ] && echo "systemd-smoke: OK: the package installed, pmult.service and calloutd.service started and reloaded under systemd $(systemd --version | sed -n '1s/systemd \([0-9]*\).*/\1/p')"
exit $status
