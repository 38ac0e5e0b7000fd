// Package dist holds what installs mailmux as a system service: the
// systemd units (systemd/), the man pages (man/), the Debian packaging
// (debian/, built by scripts/build-deb.sh, make deb) and the example
// configuration installed as /etc/pmult/pmult.toml and calloutd.toml
// (make install). Its tests install into a temporary root and install
// the .deb on the (disposable, root) test machine, removing it after.
package dist
