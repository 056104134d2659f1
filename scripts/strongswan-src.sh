#!/usr/bin/env bash
# Fetches Debian's strongSwan source package for the installed charon and configures it with Debian's own
# configure flags, so that ike/kernel-meshgate compiles against exactly the struct layouts of the charon it is
# loaded into (--enable-mediation, for one, changes them). Only config.h and the headers are used: nothing is built.
# Prints the source directory. Idempotent: quick when the directory is already configured.
#
#   MESHGATE_STRONGSWAN_SRC   where to put it (default /var/cache/meshgate/strongswan-<installed version>)
#   MESHGATE_STRONGSWAN_EXACT=1  refuse another Debian revision of the same upstream version (see below)
set -euo pipefail

die() { echo "strongswan-src: $*" >&2; exit 1; }

INSTALLED=$(dpkg-query -W -f='${Version}' strongswan-charon 2>/dev/null || true)
[ -n "$INSTALLED" ] || die "strongswan-charon is not installed (scripts/setup.sh installs it)"
DEST=${MESHGATE_STRONGSWAN_SRC:-/var/cache/meshgate/strongswan-$INSTALLED}
STAMP="$DEST/.meshgate-configured"

if [ -f "$STAMP" ] && [ -f "$DEST/config.h" ]; then
  echo "$DEST"
  exit 0
fi

command -v dpkg-source >/dev/null || die "dpkg-source missing (Debian package dpkg-dev)"
command -v make >/dev/null && command -v cc >/dev/null || die "make and a C compiler are needed (build-essential)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/strongswan-src.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/dl"

# A deb-src list made from the machine's own Debian entries (its mirrors, its suites): binary lists and this
# machine's apt state stay untouched because everything below uses a private lists directory.
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
[ -n "$CODENAME" ] || die "no VERSION_CODENAME in /etc/os-release"
SRCLIST="$WORK/src.list"
{
  shopt -s nullglob
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # one-line style: deb [options] URI suite components...
    awk -v c="$CODENAME" '$1 == "deb" {
        i = 2; opts = "";
        if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
        if ($(i+1) ~ "^" c "(-|$)") { $1 = "deb-src"; print }
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    # deb822 style: keep stanzas whose Types has "deb" and whose Suites name this release
    awk -v c="$CODENAME" 'function flush() {
          if (st != "" && types ~ /(^| )deb( |$)/ && suites ~ "(^| )" c "(-| |$)") print st "\n";
          st = ""; types = ""; suites = "" }
        /^[ \t]*$/ { flush(); next }
        /^#/ { next }
        /^Types:/ { types = $0; sub(/^Types:[ \t]*/, "", types); st = st "Types: deb-src\n"; next }
        /^Suites:/ { suites = $0; sub(/^Suites:[ \t]*/, "", suites) }
        /^Enabled:[ \t]*no/ { types = "" }
        { st = st $0 "\n" }
        END { flush() }' "$f"
  done
} > "$SRCLIST.tmp"
# a one-line list and a deb822 list cannot share a file
grep -q '^deb-src ' "$SRCLIST.tmp" && grep '^deb-src ' "$SRCLIST.tmp" > "$WORK/src-oneline.list" || true
grep -v '^deb-src ' "$SRCLIST.tmp" > "$WORK/src.sources" || true
APT=(-o Dir::Etc::sourcelist=/dev/null -o Dir::Etc::sourceparts="$WORK/parts" -o Dir::State::Lists="$WORK/lists"
     -o Debug::NoLocking=1)
mkdir -p "$WORK/parts"
[ -s "$WORK/src-oneline.list" ] && cp "$WORK/src-oneline.list" "$WORK/parts/src.list"
grep -q . "$WORK/src.sources" && cp "$WORK/src.sources" "$WORK/parts/src.sources"
ls "$WORK/parts" | grep -q . || die "no Debian $CODENAME entry in /etc/apt/sources.list{,.d} to derive a deb-src list from"

apt-get "${APT[@]}" -qq update >"$WORK/update.log" 2>&1 || { cat "$WORK/update.log" >&2; die "apt-get update of the deb-src lists failed"; }

# The installed version first. Debian's security archive sometimes keeps only the binaries of its newest upload
# reachable; a stable update never changes a library's ABI, so another Debian revision of the same upstream
# version is the next best source (the plugin's load test then proves the layouts on the real charon).
UPSTREAM=${INSTALLED#*:}; UPSTREAM=${UPSTREAM%-*}
mapfile -t CANDIDATES < <(apt-cache "${APT[@]}" showsrc strongswan 2>/dev/null | awk '/^Version:/ {print $2}' |
  sort -u | sort -r -V)
TRY=("$INSTALLED")
if [ "${MESHGATE_STRONGSWAN_EXACT:-0}" != 1 ]; then
  for v in "${CANDIDATES[@]}"; do
    u=${v#*:}; u=${u%-*}
    [ "$v" != "$INSTALLED" ] && [ "$u" = "$UPSTREAM" ] && TRY+=("$v")
  done
fi
GOT=""
for v in "${TRY[@]}"; do
  if (cd "$WORK/dl" && apt-get "${APT[@]}" -qq source --download-only "strongswan=$v" >"$WORK/source.log" 2>&1); then
    GOT=$v
    break
  fi
  echo "strongswan-src: the source of strongswan $v cannot be downloaded" >&2
done
[ -n "$GOT" ] || die "no source package of strongswan $INSTALLED (nor, unless MESHGATE_STRONGSWAN_EXACT=1, of another \
Debian revision of $UPSTREAM) can be downloaded; versions listed: ${CANDIDATES[*]:-none}"
[ "$GOT" = "$INSTALLED" ] || echo "strongswan-src: using the source of $GOT for the installed $INSTALLED (same upstream version)" >&2

DSC=$(ls "$WORK"/dl/*.dsc)
# apt checked the files against the signed Sources index; dpkg-source cannot verify the .dsc signature here.
dpkg-source -x "$DSC" "$WORK/src" >"$WORK/dpkg-source.log" 2>&1 || { cat "$WORK/dpkg-source.log" >&2; die "dpkg-source -x failed"; }

# Debian's flags, read from its debian/rules (CONFIGUREARGS) rather than copied here, plus what dh_auto_configure adds.
FLAGS=$(cd "$WORK/src" && make -s -f - print-args <<'EOF'
include debian/rules
print-args:
	@echo $(CONFIGUREARGS)
EOF
)
[ -n "$FLAGS" ] || die "could not read CONFIGUREARGS from debian/rules"
# The plugins that link external libraries (curl, ldap, PAM, TSS2, NetworkManager, systemd, iptables) are not
# built here: tell configure those libraries exist instead of installing their -dev packages. Their configure
# results only decide which of those plugins to build, not the layouts of libstrongswan/libcharon.
PRESEED=(
  ac_cv_lib_ldap_ldap_init=yes ac_cv_lib_lber_ber_free=yes ac_cv_header_ldap_h=yes
  ac_cv_lib_curl_curl_global_init=yes ac_cv_header_curl_curl_h=yes
  ac_cv_lib_pam_pam_start=yes ac_cv_header_security_pam_appl_h=yes
  systemd_CFLAGS=" " systemd_LIBS=" " ac_cv_func_sd_listen_fds_with_names=yes
  tss2_sys_CFLAGS=" " tss2_sys_LIBS=" " tss2_esys_CFLAGS=" " tss2_esys_LIBS=" "
  nm_CFLAGS=" " nm_LIBS=" " libiptc_CFLAGS=" " libiptc_LIBS=" "
)
# shellcheck disable=SC2086
(cd "$WORK/src" && env "${PRESEED[@]}" ./configure --build="$(dpkg-architecture -qDEB_BUILD_GNU_TYPE)" \
  --prefix=/usr --sysconfdir=/etc --localstatedir=/var --runstatedir=/run --disable-silent-rules \
  --disable-maintainer-mode --disable-dependency-tracking --with-systemdsystemunitdir=/lib/systemd/system \
  $FLAGS >"$WORK/configure.log" 2>&1) || { tail -20 "$WORK/configure.log" >&2; die "configure failed (log above)"; }

{
  echo "source-version=$GOT"
  echo "installed-version=$INSTALLED"
  echo "configure-flags=$FLAGS"
} > "$WORK/src/.meshgate-configured"
mkdir -p "$(dirname "$DEST")"
rm -rf "$DEST"
mv "$WORK/src" "$DEST"
echo "$DEST"
