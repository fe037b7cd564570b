#!/bin/sh
# Host tuning for a ringcast node, run by the DaemonSet's privileged init container:
# writes every `key = value` of 99-ringcast.conf (sysctl.d format; a leading "-" marks
# a key that may be missing on this kernel) under /proc/sys, and installs the io_uring
# seccomp profile where the kubelet looks for Localhost profiles.
# SYSCTL_ROOT and SECCOMP_DIR are overridable so the test suite can run it for real
# against a scratch directory.
set -eu
here=$(dirname "$0")
sysctl_root=${SYSCTL_ROOT:-/proc/sys}
seccomp_dir=${SECCOMP_DIR:-/host/var/lib/kubelet/seccomp/ringcast}

while IFS= read -r line || [ -n "$line" ]; do
  case $line in '' | '#'* | ';'*) continue ;; esac
  optional=no
  case $line in -*) optional=yes; line=${line#-} ;; esac
  key=${line%%=*}
  value=${line#*=}
  key=$(printf '%s' "$key" | tr -d ' \t')
  value=$(printf '%s' "$value" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//')
  path=$sysctl_root/$(printf '%s' "$key" | tr . /)
  if [ -e "$path" ]; then
    printf '%s\n' "$value" >"$path"
    echo "set $key = $value"
  elif [ "$optional" = yes ]; then
    echo "skip $key (not on this kernel)"
  else
    echo "missing sysctl $key" >&2
    exit 1
  fi
done <"$here/99-ringcast.conf"

mkdir -p "$seccomp_dir"
cp "$here/ringcast-io-uring.json" "$seccomp_dir/io-uring.json"
echo "installed seccomp profile $seccomp_dir/io-uring.json"
