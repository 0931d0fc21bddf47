#!/usr/bin/env bash
# Build the RPM and the .deb from a source tarball of this checkout and check
# what a grid site would install: file lists, lintian, the unpacked programs
# running against a test configuration, the systemd unit, the man pages.
# Then the real installs (section at the end): the RPM into an empty root with
# rpm, and, under CI=true as root, the .deb on this machine with README.md's
# own commands, purged again on exit.
#
#   packaging/check.sh            (CI=true: a missing tool fails the check)
#   PANDAD_CHECK_INSTALL=1 packaging/check.sh   (as root: the real install outside CI)
#
# Everything is built under a temporary directory, never in the checkout.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
IN_CI=false
[ "${CI:-}" = "true" ] && IN_CI=true
KEEP="${PANDAD_CHECK_KEEP:-}"   # set to keep the temporary directory for a look

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pandad-packaging.XXXXXX")"
cleanup() { if [ -z "$KEEP" ]; then rm -rf "$tmp"; else echo "kept $tmp"; fi; }
trap cleanup EXIT

fail() { echo "packaging/check.sh: FAIL: $*" >&2; exit 1; }
note() { printf -- '--- %s\n' "$*"; }

# have TOOL...: true if all are installed; otherwise fail under CI, else warn.
have() {
    local t missing=()
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    $IN_CI && fail "missing tool(s) in CI: ${missing[*]}"
    echo "SKIP (not installed: ${missing[*]})"
    return 1
}

# expect_paths LISTING PATH...: each PATH is a line of the file LISTING.
expect_paths() {
    local listing="$1" p; shift
    for p in "$@"; do
        grep -qxF -- "$p" "$listing" || fail "$(basename "$listing"): missing $p"
    done
}

# The interpreter the installed wrappers name in their shebang.
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"

# --- version: one number in three places --------------------------------------
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/pandad/__init__.py")"
[ -n "$version" ] || fail "no __version__ in pandad/__init__.py"
spec_version="$(sed -n 's/^Version:[[:space:]]*//p' "$REPO/packaging/pandad.spec")"
deb_version="$(sed -n '1s/^pandad (\([^-)]*\)-[^)]*).*/\1/p' "$REPO/packaging/debian/changelog")"
[ "$spec_version" = "$version" ] || fail "pandad.spec Version $spec_version != pandad $version"
[ "$deb_version" = "$version" ] || fail "debian/changelog version $deb_version != pandad $version"
note "version $version"

# --- source tarball: what git tracks plus new files it does not ignore ----------
src="$tmp/src/pandad-$version"
mkdir -p "$src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
        | tar --null -T - -cf -) | tar -xf - -C "$src"
else
    tar -C "$REPO" --exclude=.git --exclude=.venv --exclude=__pycache__ \
        --exclude='*.pyc' --exclude=.pytest_cache --exclude=.hypothesis -cf - . \
        | tar -xf - -C "$src"
fi
tarball="$tmp/pandad-$version.tar.gz"
tar -C "$tmp/src" -czf "$tarball" "pandad-$version"
# Every runtime module must end up in both packages.
modules=()
while IFS= read -r m; do modules+=("$m"); done < <(cd "$src" && find pandad schedd_plugin -name '*.py' | sort)
note "source tarball: $(basename "$tarball") (${#modules[@]} modules)"

# A test configuration like a real host's, pointing into an unpacked package.
write_config() {  # write_config ROOT CONFIG_FILE
    local root="$1" config="$2"
    mkdir -p "$tmp/condor/log" "$tmp/condor/spool" "$tmp/condor/config.d"
    cat > "$tmp/condor/config.d/99-test.conf" <<EOF
PANDA_URL = http://127.0.0.1:1/api/jobs/
PANDA_QUEUE_SIZE = 262144
EOF
    cat > "$config" <<EOF
LOG = $tmp/condor/log
SPOOL = $tmp/condor/spool
LIBEXEC = $root/usr/libexec/condor
LOCAL_CONFIG_DIR = $root/etc/condor/config.d, $tmp/condor/config.d
EOF
}

# run_installed ROOT SITELIB: the unpacked wrappers, as the shebang would run
# them, must import the unpacked packages and read the packaged 60-panda.conf.
run_installed() {
    local root="$1" sitelib="$2" out where
    local env_=(env -u PYTHONHOME -u PYTHONSTARTUP PYTHONPATH="$sitelib" PYTHONNOUSERSITE=1
                CONDOR_CONFIG="$tmp/condor_config")
    write_config "$root" "$tmp/condor_config"
    where="$(cd "$tmp" && "${env_[@]}" "$PY" -s -c 'import pandad, schedd_plugin; print(pandad.__file__); print(schedd_plugin.__file__)')"
    case "$where" in
        "$sitelib/pandad/__init__.py"$'\n'"$sitelib/schedd_plugin/__init__.py") ;;
        *) fail "the unpacked wrappers would import: $where" ;;
    esac
    out="$(cd "$tmp" && "${env_[@]}" "$PY" -s "$root/usr/libexec/condor/pandad" --version)"
    [ "$out" = "pandad $version" ] || fail "pandad --version printed '$out'"
    if [ ! -f "$src/pandad/config/__init__.py" ]; then
        $IN_CI && fail "pandad/config/ is missing: --config-val cannot be checked"
        echo "SKIP --config-val: pandad/config/ is not in this tree yet"
        return 0
    fi
    out="$(cd "$tmp" && "${env_[@]}" "$PY" -s "$root/usr/libexec/condor/pandad" --config-val PANDA_QUEUE_SIZE)"
    [ "$out" = "262144" ] || fail "pandad --config-val PANDA_QUEUE_SIZE printed '$out'"
    out="$(cd "$tmp" && "${env_[@]}" "$PY" -s "$root/usr/libexec/condor/pandad" --config-val PANDA_STATISTICS_LOG)"
    [ "$out" = "$tmp/condor/log/PandaStatistics" ] \
        || fail "60-panda.conf not read: PANDA_STATISTICS_LOG is '$out'"
    echo "ok: pandad --version, --config-val from the unpacked package"
    # The installed plug-in reads a real schedd's job queue log (dry run: records to stdout).
    local fixture
    fixture="$(ls "$REPO"/../shared/fixtures/job_queue_log/01_*.log 2>/dev/null | head -1)"
    if [ -z "$fixture" ]; then
        $IN_CI && fail "no job_queue.log fixture under ../shared/fixtures"
        echo "SKIP panda_plugin --dry-run: no fixture"
        return 0
    fi
    out="$(cd "$tmp" && "${env_[@]}" "$PY" -s "$root/usr/libexec/condor/panda_plugin" \
        --dry-run --once --log "$fixture" 2>"$tmp/plugin.err")" \
        || { cat "$tmp/plugin.err"; fail "panda_plugin --dry-run --once failed"; }
    [[ "$out" == $'\v'ADD$'\t'* ]] || { cat "$tmp/plugin.err"; fail "panda_plugin printed no ADD record"; }
    echo "ok: panda_plugin --dry-run --once on $(basename "$fixture")"
}

# --- RPM ------------------------------------------------------------------------
note "RPM (rpmbuild)"
if have rpmbuild rpm rpm2archive; then
    top="$tmp/rpm"
    mkdir -p "$top/SOURCES" "$top/tmp"
    cp "$tarball" "$top/SOURCES/"
    # --nodeps: BuildRequires name Fedora packages this Debian host has not got.
    rpmbuild --nodeps --define "_topdir $top" --define "_tmppath $top/tmp" \
        -bb "$REPO/packaging/pandad.spec" > "$tmp/rpmbuild.log" 2>&1 \
        || { tail -40 "$tmp/rpmbuild.log"; fail "rpmbuild"; }
    rpmfile="$(find "$top/RPMS" -name "pandad-$version-*.noarch.rpm" | head -1)"
    [ -n "$rpmfile" ] || fail "no noarch RPM built"
    rpm -qlp "$rpmfile" > "$tmp/rpm.files"
    sitelib="$(grep -m1 '/site-packages/pandad$' "$tmp/rpm.files" | sed 's,/pandad$,,')"
    [ -n "$sitelib" ] || fail "RPM: no pandad package under a site-packages directory"
    rpm_modules=()
    for m in "${modules[@]}"; do rpm_modules+=("$sitelib/$m"); done
    expect_paths "$tmp/rpm.files" \
        /usr/libexec/condor/pandad /usr/libexec/condor/panda_plugin \
        /etc/condor/config.d/60-panda.conf /usr/lib/systemd/system/condor-panda.service \
        "${rpm_modules[@]}"
    grep -qE '^/usr/share/man/man8/pandad\.8(\.gz)?$' "$tmp/rpm.files" || fail "RPM: no pandad.8"
    grep -qE '^/usr/share/man/man8/panda_plugin\.8(\.gz)?$' "$tmp/rpm.files" || fail "RPM: no panda_plugin.8"
    rpm -qpc "$rpmfile" | grep -qxF /etc/condor/config.d/60-panda.conf \
        || fail "RPM: 60-panda.conf is not %config"
    [ "$(rpm -qp --qf '%{ARCH}' "$rpmfile")" = noarch ] || fail "RPM is not noarch"
    rpm -qpR "$rpmfile" > "$tmp/rpm.requires"
    grep -qx 'python3 >= 3.9' "$tmp/rpm.requires" || fail "RPM does not require python3 >= 3.9"
    grep -qx 'condor' "$tmp/rpm.requires" || fail "RPM does not require condor"
    # The config file must be noreplace: flag bit 16 (RPMFILE_NOREPLACE).
    flags="$(rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS}\n]' "$rpmfile" \
        | sed -n 's,^/etc/condor/config.d/60-panda.conf ,,p')"
    (( ${flags:-0} & 16 )) || fail "RPM: 60-panda.conf is not %config(noreplace)"
    echo "ok: $(basename "$rpmfile"): $(wc -l < "$tmp/rpm.files") paths"
    sed 's/^/    /' "$tmp/rpm.files" | grep -v '\.py$' || true
    rroot="$tmp/rpmroot"
    mkdir -p "$rroot"
    (cd "$tmp" && rpm2archive "$rpmfile" >/dev/null && tar -xzf "$rpmfile.tgz" -C "$rroot")
    run_installed "$rroot" "$rroot$sitelib"
fi

# --- Debian package -----------------------------------------------------------
note "Debian package (dpkg-buildpackage)"
debroot=""
if have dpkg-buildpackage dh fakeroot dpkg-deb lintian; then
    build="$tmp/deb"
    mkdir -p "$build"
    tar -xzf "$tarball" -C "$build"
    cp -r "$REPO/packaging/debian" "$build/pandad-$version/debian"
    (cd "$build/pandad-$version" && dpkg-buildpackage -us -uc -b) > "$tmp/deb-build.log" 2>&1 \
        || { tail -40 "$tmp/deb-build.log"; fail "dpkg-buildpackage"; }
    deb="$build/pandad_${version}-1_all.deb"
    [ -f "$deb" ] || fail "no .deb built"
    note "lintian"
    # Errors fail; warnings are shown (and listed in docs/admin-guide.md).
    rc=0
    lintian --fail-on error "$deb" > "$tmp/lintian.out" 2>&1 || rc=$?
    grep -v 'running with root privileges is not recommended' "$tmp/lintian.out" || true
    [ "$rc" -eq 0 ] || fail "lintian reports errors (exit $rc)"
    dpkg-deb --fsys-tarfile "$deb" | tar -tf - | sed -e 's,^\./,/,' -e 's,/$,,' > "$tmp/deb.files"
    deb_modules=()
    for m in "${modules[@]}"; do deb_modules+=("/usr/lib/python3/dist-packages/$m"); done
    expect_paths "$tmp/deb.files" \
        /usr/libexec/condor/pandad /usr/libexec/condor/panda_plugin \
        /etc/condor/config.d/60-panda.conf \
        /usr/share/man/man8/pandad.8.gz /usr/share/man/man8/panda_plugin.8.gz \
        "${deb_modules[@]}"
    grep -qE '^(/usr)?/lib/systemd/system/condor-panda\.service$' "$tmp/deb.files" \
        || fail ".deb: no condor-panda.service"
    ! grep -q '__pycache__' "$tmp/deb.files" || fail ".deb ships __pycache__"
    dpkg-deb -f "$deb" Depends > "$tmp/deb.depends"
    grep -q 'python3 (>= 3.9)' "$tmp/deb.depends" || fail ".deb does not depend on python3"
    grep -q 'condor | htcondor' "$tmp/deb.depends" || fail ".deb does not depend on condor | htcondor"
    dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles | grep -qxF /etc/condor/config.d/60-panda.conf \
        || fail ".deb: 60-panda.conf is not a conffile"
    echo "ok: $(basename "$deb"): $(wc -l < "$tmp/deb.files") paths; Depends: $(cat "$tmp/deb.depends")"
    debroot="$tmp/debroot"
    mkdir -p "$debroot"
    dpkg-deb -x "$deb" "$debroot"
    run_installed "$debroot" "$debroot/usr/lib/python3/dist-packages"
fi

# --- systemd unit --------------------------------------------------------------
note "systemd-analyze verify condor-panda.service"
if have systemd-analyze man; then
    # verify checks that ExecStart= and ExecReload= exist and that the
    # Documentation= man pages resolve, so it runs against a root holding the
    # unpacked package (or the bare files), with stubs for what the host's
    # systemd would provide. condor.service need not exist for it.
    vroot="$tmp/verifyroot"
    if [ -n "$debroot" ]; then
        cp -a "$debroot" "$vroot"
    else
        install -D -m 755 "$REPO/packaging/libexec/panda_plugin" "$vroot/usr/libexec/condor/panda_plugin"
        install -D -m 644 "$REPO/packaging/condor-panda.service" "$vroot/lib/systemd/system/condor-panda.service"
        install -D -m 644 "$REPO/docs/man/pandad.8" "$vroot/usr/share/man/man8/pandad.8"
        install -D -m 644 "$REPO/docs/man/panda_plugin.8" "$vroot/usr/share/man/man8/panda_plugin.8"
    fi
    unit="$(cd "$vroot" && find lib usr/lib -path '*/systemd/system/condor-panda.service' 2>/dev/null | head -1)"
    [ -n "$unit" ] || fail "no unit in the verify root"
    mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/bin"
    for stub in sysinit.target basic.target shutdown.target network-online.target; do
        [ -e "$vroot/usr/lib/systemd/system/$stub" ] \
            || printf '[Unit]\nDescription=stub for systemd-analyze verify\n' > "$vroot/usr/lib/systemd/system/$stub"
    done
    printf '#!/bin/sh\n# stub: systemd-analyze verify only checks that ExecReload exists\n' > "$vroot/bin/kill"
    chmod 755 "$vroot/bin/kill"
    # Any output (an unknown key is only a warning) is a failure.
    out="$(MANPATH="$vroot/usr/share/man" systemd-analyze verify --root="$vroot" "/$unit" 2>&1)" \
        || { echo "$out"; fail "systemd-analyze verify"; }
    [ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify printed warnings"; }
    echo "ok: /$unit"
fi

# --- man pages -----------------------------------------------------------------
note "man pages"
if have groff man; then
    for page in "$REPO/docs/man/pandad.8" "$REPO/docs/man/panda_plugin.8"; do
        out="$(groff -man -ww -z "$page" 2>&1)" || fail "groff $page"
        [ -z "$out" ] || { echo "$out"; fail "groff warnings in $page"; }
        out="$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)" \
            || fail "man -l $page"
        [ -z "$out" ] || { echo "$out"; fail "man warnings in $page"; }
        echo "ok: $(basename "$page")"
    done
fi

# =============================================================================
# Real installs: the README's install and post-install commands, run for real.
#
# The .deb is installed on THIS machine with the README's own command (apt
# install ./pandad_<version>_all.deb), configured as the README says, used,
# enabled under systemd (offline: enabling needs no running systemd), and
# purged again on exit, success or not, so a CI machine is left as it was.
# HTCondor is not in Debian's archive, so a stub package named condor (built
# here, "Version: 0-stub") stands in for it to satisfy Depends: condor | htcondor.
# It runs as root under CI=true (or PANDAD_CHECK_INSTALL=1); elsewhere it is
# skipped, so that a developer's machine is never changed by accident.
#
# The RPM cannot be installed for real here (no dnf, no EL system): it is
# installed with rpm into an empty root (rpm -i --nodeps --noscripts --root;
# its scriptlets would need that root's /bin/sh and systemctl) and its wrappers
# run from there with that root's site-packages, as for the unpacked packages.
# tests/test_readme.py checks that every command in README.md is run here or
# in .ci/run, or is listed there with what verifies it instead.
# =============================================================================
note "real install: the RPM into an empty root with rpm"
if [ -n "${rpmfile:-}" ] && have rpm; then
    pkgver="$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpmfile")"
    rpmroot="$tmp/rpminstall"
    mkdir -p "$rpmroot"
    rpm --root "$rpmroot" --initdb
    # The file name README.md's dnf install line names.
    [ "$(basename "$rpmfile")" = "pandad-${pkgver}.noarch.rpm" ] \
        || fail "the RPM is $(basename "$rpmfile"), README.md says pandad-<version>.noarch.rpm"
    (cd "$(dirname "$rpmfile")" && rpm -i --nodeps --noscripts --root "$rpmroot" "./pandad-${pkgver}.noarch.rpm") \
        > "$tmp/rpm-install.log" 2>&1 || { cat "$tmp/rpm-install.log"; fail "rpm -i --root"; }
    [ "$(rpm --root "$rpmroot" -q pandad)" = "pandad-${pkgver}.noarch" ] || fail "rpm -q pandad in the root"
    run_installed "$rpmroot" "$rpmroot$sitelib"
    rpm -e --nodeps --noscripts --root "$rpmroot" pandad > "$tmp/rpm-erase.log" 2>&1 \
        || { cat "$tmp/rpm-erase.log"; fail "rpm -e --root"; }
    left="$(cd "$rpmroot" && find usr etc -type f 2>/dev/null | grep -E 'panda|schedd_plugin' || true)"
    [ -z "$left" ] || fail "rpm -e left: $left"
    echo "ok: pandad-${pkgver}.noarch.rpm installed into a root with rpm, run, erased"
fi

note "real install: apt install ./pandad_<version>_all.deb on this machine"
installed_pkgs=()       # what this section installed, and so purges
purge_installed() {
    [ ${#installed_pkgs[@]} -gt 0 ] || return 0
    DEBIAN_FRONTEND=noninteractive apt-get purge -y "${installed_pkgs[@]}" > "$tmp/purge.log" 2>&1 \
        || { cat "$tmp/purge.log" >&2; echo "packaging/check.sh: apt-get purge ${installed_pkgs[*]} failed" >&2; }
    installed_pkgs=()
}
is_installed() { [ "$(dpkg-query -W -f '${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
if ! $IN_CI && [ -z "${PANDAD_CHECK_INSTALL:-}" ]; then
    echo "SKIP (it installs on this machine: only with CI=true or PANDAD_CHECK_INSTALL=1)"
elif [ "$(id -u)" != 0 ]; then
    $IN_CI && fail "the real install needs root"
    echo "SKIP (not root)"
elif [ -z "$debroot" ]; then
    fail "no .deb was built to install"
elif is_installed pandad; then
    fail "pandad is already installed on this machine: not touching it (apt-get purge pandad first)"
elif have apt apt-get dpkg dpkg-query systemctl man; then
    trap 'purge_installed; cleanup' EXIT
    pkgver="$(dpkg-deb -f "$deb" Version)"
    existed_before=" "
    for d in /etc/condor /usr/libexec/condor /etc/systemd/system/condor.service.wants; do
        [ -e "$d" ] && existed_before+="$d "
    done
    if ! is_installed condor && ! is_installed htcondor; then
        stub="$tmp/condor-stub"
        mkdir -p "$stub/DEBIAN"
        cat > "$stub/DEBIAN/control" <<'CONTROL'
Package: condor
Version: 0-stub
Architecture: all
Maintainer: pandad developers <pandad-dev@lists.example.org>
Description: CI stand-in for HTCondor (pandad packaging/check.sh)
 An empty package, installed only while packaging/check.sh installs the pandad
 .deb for real on a machine without HTCondor, to satisfy its
 Depends: condor | htcondor. It is purged again when the check ends.
CONTROL
        dpkg-deb --root-owner-group --build "$stub" "$tmp/condor_0-stub_all.deb" >/dev/null
        installed_pkgs+=(condor)
        dpkg -i "$tmp/condor_0-stub_all.deb" > "$tmp/stub-install.log" 2>&1 \
            || { cat "$tmp/stub-install.log"; fail "dpkg -i the condor stub"; }
    fi
    # README.md's command, as written: apt's "Do you want to continue?" is
    # answered by configuration, not by an extra option.
    printf 'APT::Get::Assume-Yes "true";\n' > "$tmp/apt.conf"
    installed_pkgs=(pandad "${installed_pkgs[@]}")
    (
        export APT_CONFIG="$tmp/apt.conf" DEBIAN_FRONTEND=noninteractive
        cd "$build" && apt install ./pandad_${pkgver}_all.deb
    ) > "$tmp/apt-install.log" 2>&1 || { tail -30 "$tmp/apt-install.log"; fail "apt install ./pandad_${pkgver}_all.deb"; }
    is_installed pandad || fail "pandad is not installed after apt install"
    echo "ok: apt install ./pandad_${pkgver}_all.deb (with the condor stub)"

    # A test host: LOG and SPOOL under $tmp, the packaged 60-panda.conf edited as
    # README.md says (PANDA_URL set, the feed turned on), and a fixture as the
    # schedd's job queue log. The URL is refused, so what pandad reads is lost,
    # counted and logged: what README.md's loss commands look for.
    ihost="$tmp/installed-host"
    mkdir -p "$ihost/log" "$ihost/spool" "$ihost/config.d"
    cp "$REPO/../shared/fixtures/job_queue_log/03_synth_multiproc_submit.log" "$ihost/spool/job_queue.log" \
        || fail "no fixture 03_synth_multiproc_submit.log under ../shared/fixtures"
    cat > "$ihost/condor_config" <<CONFIG
LOG = $ihost/log
SPOOL = $ihost/spool
LIBEXEC = /usr/libexec/condor
LOCAL_CONFIG_DIR = /etc/condor/config.d, $ihost/config.d
CONFIG
    printf 'PANDA_UPDATE_TIMEOUT = 2\nPANDA_SHUTDOWN_GRACE = 2\n' > "$ihost/config.d/99-test.conf"
    url="http://127.0.0.1:1/api/jobs/"
    conf=/etc/condor/config.d/60-panda.conf
    grep -q '^#PANDA_URL = ' "$conf" || fail "$conf: no #PANDA_URL line to set"
    grep -qxF '#SCHEDD.PLUGINS = $(SCHEDD.PLUGINS) $(LIBEXEC)/panda_plugin' "$conf" \
        || fail "$conf: no #SCHEDD.PLUGINS line to uncomment"
    sed -i -e "s,^#PANDA_URL = .*,PANDA_URL = $url," -e 's,^#\(SCHEDD\.PLUGINS = .*\)$,\1,' "$conf"
    (
        export CONDOR_CONFIG="$ihost/condor_config"
        cd "$ihost"
        out="$(/usr/libexec/condor/pandad --version)"
        [ "$out" = "pandad $version" ] || fail "installed pandad --version printed '$out'"
        out="$(/usr/libexec/condor/pandad --config-val PANDA_URL PANDA_STATISTICS_LOG PANDAD_LOG)"
        [ "$out" = "$url"$'\n'"$ihost/log/PandaStatistics"$'\n'"$ihost/log/PandadLog" ] \
            || fail "installed pandad --config-val printed: $out"
        out="$(/usr/libexec/condor/panda_plugin --dry-run --once | head -n 3)"
        [[ "$out" == $'\v'ADD$'\t'* ]] || fail "installed panda_plugin --dry-run printed: $out"
        [ "$(printf '%s\n' "$out" | wc -l)" -eq 3 ] || fail "panda_plugin --dry-run --once | head -n 3: $out"
        echo "ok: installed pandad --version, --config-val; panda_plugin --dry-run --once | head -n 3"
        # The installed pandad reads the plug-in's records, loses them all to the
        # refused URL, and writes its statistics block and log lines at exit.
        /usr/libexec/condor/panda_plugin --dry-run --once | /usr/libexec/condor/pandad \
            || fail "the installed pandad, fed by panda_plugin --dry-run, exited non-zero"
        out="$(tail -n 40 "$(/usr/libexec/condor/pandad --config-val PANDA_STATISTICS_LOG)")"
        grep -qE '\] records_read: [1-9]' <<< "$out" || fail "statistics: no records_read: $out"
        grep -qE '\] records_lost_transport: [1-9]' <<< "$out" || fail "statistics: no loss counted: $out"
        out="$(grep -E 'records_(dropped_queue_full|bad|rejected|lost_transport|lost_endpoint|discarded_shutdown):' "$(/usr/libexec/condor/pandad --config-val PANDA_STATISTICS_LOG)" | tail -n 6)"
        [ "$(wc -l <<< "$out")" -eq 6 ] || fail "the six loss counters: $out"
        out="$(grep -E 'lost|rejected|dropping|skipped|discarded|no answer yet' "$(/usr/libexec/condor/pandad --config-val PANDAD_LOG)")"
        [[ "$out" == *"lost "*" record(s) in "*"connection refused"* ]] || fail "PandadLog: no loss line: $out"
        echo "ok: the statistics log and PandadLog name the loss (records_lost_transport, connection refused)"
        man 8 pandad | grep -q PANDA_URL || fail "man 8 pandad"
        man 8 panda_plugin | grep -q 'dry-run' || fail "man 8 panda_plugin"
        echo "ok: man 8 pandad, man 8 panda_plugin"
    )
    # Enabling under systemd works offline: it only makes the WantedBy= link.
    systemctl enable condor-panda.service > "$tmp/systemctl.log" 2>&1 \
        || { cat "$tmp/systemctl.log"; fail "systemctl enable condor-panda.service"; }
    out="$(systemctl is-enabled condor-panda.service)" || fail "systemctl is-enabled: $out"
    [ "$out" = enabled ] || fail "systemctl is-enabled condor-panda.service printed '$out'"
    [ -L /etc/systemd/system/condor.service.wants/condor-panda.service ] \
        || fail "systemctl enable made no condor.service.wants link"
    systemctl disable condor-panda.service > "$tmp/systemctl.log" 2>&1 \
        || { cat "$tmp/systemctl.log"; fail "systemctl disable condor-panda.service"; }
    ! out="$(systemctl is-enabled condor-panda.service 2>&1)" || fail "still enabled after disable: $out"
    echo "ok: systemctl enable, is-enabled, disable condor-panda.service"

    # Purge both: nothing of pandad may be left (purge removes the edited conffile too).
    pkgs="${installed_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get purge -y "${installed_pkgs[@]}" > "$tmp/purge.log" 2>&1 \
        || { tail -20 "$tmp/purge.log"; fail "apt-get purge -y $pkgs"; }
    installed_pkgs=()
    for p in $pkgs; do
        status="$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null || true)"
        [ -z "$status" ] || [ "$status" = not-installed ] || fail "$p is '$status' after purge"
    done
    left=()
    for p in /usr/lib/python3/dist-packages/pandad /usr/lib/python3/dist-packages/schedd_plugin \
             /usr/libexec/condor/pandad /usr/libexec/condor/panda_plugin \
             /etc/condor/config.d/60-panda.conf /lib/systemd/system/condor-panda.service \
             /usr/lib/systemd/system/condor-panda.service \
             /etc/systemd/system/condor.service.wants/condor-panda.service \
             /usr/share/man/man8/pandad.8.gz /usr/share/man/man8/panda_plugin.8.gz /usr/share/doc/pandad; do
        if [ -e "$p" ] || [ -L "$p" ]; then left+=("$p"); fi
    done
    for d in /etc/condor /usr/libexec/condor /etc/systemd/system/condor.service.wants; do
        if [ -e "$d" ] && [[ "$existed_before" != *" $d "* ]]; then left+=("$d"); fi
    done
    [ ${#left[@]} -eq 0 ] || fail "left after apt-get purge -y $pkgs: ${left[*]}"
    echo "ok: apt-get purge -y $pkgs: nothing of pandad left"
fi

echo "packaging checks passed"
