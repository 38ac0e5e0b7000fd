#!/bin/sh
# build-deb.sh OUTDIR: build the mailmux Debian package from this tree
# without network: binaries from the module cache (GOPROXY=off; the same
# build flags as go test, so a tested tree builds from the build cache),
# make install into a staging root, DEBIAN/ from dist/debian, dpkg-deb.
# The binaries use the C library's account lookups (NSS) for user, group
# and socket_group: Depends names the libc6 their symbols need.
# Prints the path of the .deb.
#
# Debian's mailfromd package ships /usr/sbin/calloutd and /usr/bin/mtasim
# (and their man pages): to install beside it, the package names mailmux's
# mailmux-calloutd and mailmux-mtasim (make install keeps the plain names).
set -eu
out=${1:-bin}
GO=${GO:-go}
cd "$(dirname "$0")/.."
version=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' cmd/pmult/main.go)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$out"
export GOPROXY=off GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false"
make -s install GO="$GO" BIN="$stage/bin" PREFIX=/usr UNITDIR=/lib/systemd/system DESTDIR="$stage/root" >&2
root=$stage/root
mv "$root/usr/sbin/calloutd" "$root/usr/sbin/mailmux-calloutd"
mv "$root/usr/bin/mtasim" "$root/usr/bin/mailmux-mtasim"
mv "$root/usr/share/man/man8/calloutd.8" "$root/usr/share/man/man8/mailmux-calloutd.8"
mv "$root/usr/share/man/man1/mtasim.1" "$root/usr/share/man/man1/mailmux-mtasim.1"
for f in "$root"/lib/systemd/system/*.service "$root"/usr/share/man/man*/*; do
	sed -i -e 's|/usr/sbin/calloutd|/usr/sbin/mailmux-calloutd|g' -e 's|man:calloutd(8)|man:mailmux-calloutd(8)|' \
		-e 's|^\.BR calloutd (8)|.BR mailmux-calloutd (8)|' -e 's|^\.BR mtasim (1)|.BR mailmux-mtasim (1)|' "$f"
done
sed -i -e 's|^\.B calloutd$|.B mailmux-calloutd|' -e 's|^calloutd \\- |mailmux-calloutd \\- |' "$root/usr/share/man/man8/mailmux-calloutd.8"
sed -i -e 's|^\.B mtasim$|.B mailmux-mtasim|' -e 's|^mtasim \\- |mailmux-mtasim \\- |' "$root/usr/share/man/man1/mailmux-mtasim.1"
mkdir -p "$root/DEBIAN"
for f in postinst prerm postrm conffiles; do
	cp dist/debian/$f "$root/DEBIAN/$f"
done
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/conffiles"
gzip -9n "$root"/usr/share/man/man*/*
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
# The newest GLIBC_ symbol version any binary needs (none: static).
glibc=
if command -v objdump >/dev/null; then
	glibc=$(for b in "$root"/usr/sbin/* "$root"/usr/bin/*; do objdump -T "$b" 2>/dev/null; done |
		grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
elif ldd "$root/usr/sbin/pmult" >/dev/null 2>&1; then
	glibc=$(dpkg-query -W -f='${Version}' libc6 | sed 's/-.*//')
fi
depends=adduser
if [ -n "$glibc" ]; then
	depends="adduser, libc6 (>= $glibc)"
fi
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
	dist/debian/control > "$root/DEBIAN/control"
deb=$out/mailmux_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
