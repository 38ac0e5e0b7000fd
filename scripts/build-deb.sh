#!/bin/sh
# build-deb.sh OUTDIR: build the mailmux Debian package from this tree
# without network: static binaries from the module cache (GOPROXY=off),
# make install into a staging root, DEBIAN/ from dist/debian, dpkg-deb.
# Prints the path of the .deb.
set -eu
out=${1:-bin}
GO=${GO:-go}
cd "$(dirname "$0")/.."
version=$(sed -n 's/^const Version = "\(.*\)"$/\1/p' cmd/pmult/main.go)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p "$out"
export GOPROXY=off GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath" CGO_ENABLED=0
make -s install GO="$GO" BIN="$stage/bin" PREFIX=/usr UNITDIR=/lib/systemd/system DESTDIR="$stage/root" >&2
root=$stage/root
mkdir -p "$root/DEBIAN"
for f in postinst prerm postrm conffiles; do
	cp dist/debian/$f "$root/DEBIAN/$f"
done
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/conffiles"
gzip -9n "$root"/usr/share/man/man*/*
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" dist/debian/control > "$root/DEBIAN/control"
deb=$out/mailmux_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
