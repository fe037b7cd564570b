#!/usr/bin/env bash
# Install Autobahn|Testsuite (wstest 25.10.1) so that run.sh works. Idempotent and cached:
# the first run takes 1-2 minutes, later runs only check the cached install (README.md).
# Installs into $AUTOBAHN_HOME (default ~/.cache/autobahn-testsuite).
#
# wstest is Python 2.7-only code (implicit relative imports, print statements):
# on Python 3.11 `pip install autobahntestsuite` succeeds but `wstest` dies with
# "ModuleNotFoundError: No module named '_version'". Debian bookworm has no
# Python 2, so this script takes CPython 2.7.18 from Debian *bullseye*
# (the machine's own Debian mirror, older suite) with a private apt config,
# unpacks the .debs under $AUTOBAHN_HOME/py27root (nothing is installed system-wide),
# bootstraps pip 20.3.4 from PyPI wheels and installs the exact dependency pins
# that autobahntestsuite 25.10.1 declares (autobahn 0.10.9, Twisted 19.10.0, ...).
# Needs: apt-get, dpkg, gcc (for wsaccel), python3 with pip. ~1-2 minutes.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# where the private Python 2.7 + wstest go (not in the repo, not system-wide)
V="${AUTOBAHN_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/autobahn-testsuite}"
B="$V/apt-bullseye"
R="$V/py27root"
# The cache: an install that completed for these exact pins is reused as it is.
STAMP="$V/installed-$(sha256sum "$HERE/requirements-py27.txt" "$0" | sha256sum | cut -c1-16)"
if [ -f "$STAMP" ] && "$V/py27" "$R/usr/local/bin/wstest" --autobahnversion 2>/dev/null; then
  exit 0
fi
mkdir -p "$B/etc/apt/sources.list.d" "$B/etc/apt/preferences.d" "$B/etc/apt/apt.conf.d" \
         "$B/state/lists/partial" "$B/cache/archives/partial" "$B/debs" "$R" "$V/downloads/py27-bootstrap"

if [ ! -x "$R/usr/bin/python2.7" ]; then
  # take the mirror this machine already uses (deb822 .sources or one-line sources.list)
  MIRROR=$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources; { grep -hs '^deb ' /etc/apt/sources.list || true; } | sed 's/^deb \(\[[^]]*\] \)\?/URIs: /') \
            | awk '{print $2}' | grep -v -- '-security' | head -1 || true)
  [ -n "$MIRROR" ] || { echo "no Debian mirror found in /etc/apt" >&2; exit 2; }
  cat > "$B/etc/apt/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR bullseye main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MIRROR}-security bullseye-security main
EOF
  cat > "$B/apt.conf" <<EOF
Dir::Etc "$B/etc/apt";
Dir::Etc::SourceList "$B/etc/apt/sources.list";
Dir::Etc::SourceParts "$B/etc/apt/sources.list.d";
Dir::Etc::Preferences "$B/etc/apt/preferences";
Dir::Etc::PreferencesParts "$B/etc/apt/preferences.d";
Dir::Etc::Parts "$B/etc/apt/apt.conf.d";
Dir::State "$B/state";
Dir::State::status "$B/state/status";
Dir::Cache "$B/cache";
APT::Architecture "amd64";
APT::Sandbox::User "root";
EOF
  touch "$B/state/status"
  export APT_CONFIG="$B/apt.conf"
  apt-get -q update
  # python2.7 + stdlib + headers; libssl1.1/libffi7 are not in bookworm (others are)
  (cd "$B/debs" && apt-get -q download python2.7-minimal libpython2.7-minimal libpython2.7-stdlib \
      python2.7 libpython2.7 libpython2.7-dev python2.7-dev libssl1.1 libffi7)
  unset APT_CONFIG
  for d in "$B"/debs/*.deb; do dpkg -x "$d" "$R"; done
fi

cat > "$V/py27" <<'EOF'
#!/bin/sh
# wrapper: Debian bullseye CPython 2.7 extracted under $AUTOBAHN_HOME/py27root (not installed system-wide)
R=$(dirname "$(readlink -f "$0")")/py27root
export LD_LIBRARY_PATH="$R/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONNOUSERSITE=1
exec "$R/usr/bin/python2.7" "$@"
EOF
chmod +x "$V/py27"
"$V/py27" -c 'import ssl, sys; assert sys.version_info[:2] == (2, 7)'

if ! "$V/py27" -m pip --version >/dev/null 2>&1; then
  (cd "$V/downloads/py27-bootstrap" &&
   python3 -m pip download -q --only-binary=:all: --python-version 2.7 --implementation cp \
       --abi cp27mu --platform manylinux1_x86_64 --no-deps \
       pip==20.3.4 setuptools==44.1.1 wheel==0.37.1 -d . &&
   "$V/py27" pip-20.3.4-py2.py3-none-any.whl/pip install -q --no-index --find-links . pip setuptools wheel)
fi

# wsaccel (autobahn[accelerate]) compiles C: point gcc at the unpacked headers
export CFLAGS="-I$R/usr/include/python2.7 -I$R/usr/include" LDFLAGS="-L$R/usr/lib/x86_64-linux-gnu"
"$V/py27" -m pip install -q --disable-pip-version-check \
  -r "$HERE/requirements-py27.txt" autobahntestsuite==25.10.1
"$V/py27" "$R/usr/local/bin/wstest" --autobahnversion
touch "$STAMP"
