#!/usr/bin/env bash
# scripts/setup_arm_env.sh [DEST]
#
# Builds an emulated 64-bit ARM (aarch64) Python 3.11 with the aarch64 wheels of onnxruntime and
# numpy, runnable on an x86_64 Debian 12 host through qemu-user, so the test suite can run the
# ubdiff-onnx runtime as it runs on a Raspberry Pi 4 / Pi 5 (Raspberry Pi OS 64-bit = Debian
# bookworm arm64 userland). Used by tests/runtime/test_arm_emulation.py; CI runs it before the tests.
#
# No root, no chroot, no binfmt_misc, no `dpkg --add-architecture`; writes only DEST:
#   * arm64 .debs (python3.11-minimal, libpython3.11-stdlib, libstdc++6 + dependencies) are resolved
#     and downloaded by apt-get with a private state directory (the host's apt/dpkg state is never
#     touched; the host's apt sources and keyrings are used) and unpacked into DEST/sysroot;
#   * qemu-aarch64-static is cut out of Debian's qemu-user-static amd64 .deb into DEST/bin;
#   * the aarch64 wheels of onnxruntime (the host's version) and numpy (the host's version) are
#     installed into DEST/site by the HOST pip with --platform/--target (nothing runs emulated);
#   * the oldest onnxruntime the runtime supports (MIN_ONNXRUNTIME in runtime/manifest.py) goes into
#     DEST/site-floor, without its dependencies (numpy comes from DEST/site; coloredlogs, flatbuffers,
#     protobuf, sympy and packaging are not needed to import it and run a session): ~12 MB, ~5 s;
#   * per-profile prefixes DEST/prefix-{pi4,pi5} (symlinks to the sysroot + a fake ARM /proc/cpuinfo:
#     without it onnxruntime's CPU detection parses the host's x86 /proc/cpuinfo and segfaults);
#   * DEST/overlay/ubdiff_onnx: the installed package layout of THIS checkout, made of symlinks
#     (ubdiff_onnx/* + runtime/, qat/, conversion/ as pyproject's package-dir maps them), so
#     `import ubdiff_onnx.runtime` works in the emulated Python and always sees the current source;
#   * DEST/bin/arm-python, the wrapper: ARM_PROFILE=pi4 (QEMU_CPU cortex-a72: ARMv8.0, no dotprod,
#     like a Pi 4) or pi5 (cortex-a76: dotprod, like a Pi 5). Always a named CPU: QEMU's default
#     "max" CPU has SVE/i8mm, so onnxruntime would pick INT8 kernels no Pi has.
#     ARM_PYTHONPATH=... is put in front of the wrapper's own PYTHONPATH (site + overlay).
#     ARM_ONNXRUNTIME=host (default: DEST/site's version) or floor (DEST/site-floor in front).
#
# DEST: $1, else $UBDIFF_ARM_ENV, else ${UBDIFF_ONNX_CACHE:-${XDG_CACHE_HOME:-~/.cache}/ubdiff-onnx}/arm-env.
# Idempotent (and serialised by a lock in DEST): a rerun reuses what is there (and reinstalls the wheels if the host's onnxruntime or
# numpy version changed); delete DEST to start over. About 40 s and 225 MB from scratch.
# Needs: an x86_64 Debian 12 (bookworm) host with apt-get and dpkg-deb, its Debian mirror, and PyPI (or the pip
# index configured for the host pip). On failure the reason is written to DEST/SETUP_FAILED (the
# test shows it as its skip reason) and the exit status is non-zero; on success DEST/READY is written.
# Env knobs: PY_HOST (python whose pip installs the wheels; default python3), ORT_SPEC / NUMPY_SPEC
# (pip requirement specs; default: the host's versions), ORT_FLOOR_SPEC (default
# onnxruntime==MIN_ONNXRUNTIME of this checkout), UBDIFF_ARM_SELFTEST=0 (skip the final import check
# under both profiles, ~15 s).
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
DEST=${1:-${UBDIFF_ARM_ENV:-${UBDIFF_ONNX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ubdiff-onnx}/arm-env}}
DEST=$(realpath -m "$DEST")
PY_HOST=${PY_HOST:-python3}
PYVER=3.11                       # bookworm's python3, what a Pi running Raspberry Pi OS 64-bit has
PLAT=manylinux_2_28_aarch64      # bookworm's glibc 2.36 >= 2.28
PROFILES="pi4 pi5"
STEP="start"

log() { echo "[setup_arm_env $(date +%T)] $*"; }
fail() { # reason...
  mkdir -p "$DEST"
  printf '%s\n' "$*" > "$DEST/SETUP_FAILED"
  rm -f "$DEST/READY"
  echo "setup_arm_env: FAILED: $*" >&2
  exit 1
}
trap 'fail "unexpected error (exit $?) during: $STEP"' ERR

# -- 0. preflight -----------------------------------------------------------------------------
[ "$(uname -m)" = x86_64 ] || fail "host is $(uname -m), not x86_64 (this recipe fetches the amd64 qemu-user-static)"
for tool in apt-get dpkg-deb tar realpath getconf; do
  command -v "$tool" >/dev/null || fail "$tool not found (needs a Debian/Ubuntu host)"
done
"$PY_HOST" -m pip --version >/dev/null 2>&1 || fail "$PY_HOST has no pip (set PY_HOST)"
host_version() { "$PY_HOST" -c "import $1; print($1.__version__)" 2>/dev/null || true; }
if [ -z "${ORT_SPEC:-}" ]; then v=$(host_version onnxruntime); ORT_SPEC=onnxruntime${v:+==$v}; fi
if [ -z "${NUMPY_SPEC:-}" ]; then v=$(host_version numpy); NUMPY_SPEC=numpy${v:+==$v}; fi
if [ -z "${ORT_FLOOR_SPEC:-}" ]; then
  v=$(sed -n 's/^MIN_ONNXRUNTIME = "\([0-9.]*\)".*/\1/p' "$REPO/runtime/manifest.py")
  [ -n "$v" ] || fail "no MIN_ONNXRUNTIME = \"X.Y.Z\" line in $REPO/runtime/manifest.py (set ORT_FLOOR_SPEC)"
  ORT_FLOOR_SPEC=onnxruntime==$v
fi
mkdir -p "$DEST/bin"
# One setup at a time per DEST (two test sessions may both bring the environment up to date).
if command -v flock >/dev/null; then
  exec 9>"$DEST/.lock"
  flock -w 1800 9 || fail "another setup_arm_env.sh has held $DEST/.lock for 30 minutes"
fi
rm -f "$DEST/READY"

S=$DEST/sysroot QEMU=$DEST/bin/qemu-aarch64-static

# -- 1. sysroot + qemu (skipped when a previous run completed it) ------------------------------
if [ ! -f "$DEST/.sysroot-ok" ] || [ ! -x "$QEMU" ] || [ ! -x "$S/usr/bin/python$PYVER" ]; then
  STEP="apt (private state in $DEST/apt)"
  A=$DEST/apt
  rm -rf "$A" "$S" "$DEST/.sysroot-ok"
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial" "$S"
  touch "$A/status"
  # Native architecture arm64 for the Python debs; amd64 as well, only to fetch qemu-user-static.
  APT=(apt-get -q -o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o APT::Architectures::=amd64
       -o Dir::State="$A" -o Dir::State::status="$A/status" -o Dir::Cache="$A/cache"
       -o Debug::NoLocking=1 -o Acquire::Retries=2 -o Acquire::http::Timeout=30 -o Acquire::https::Timeout=30)
  [ "$(id -u)" = 0 ] && APT+=(-o APT::Sandbox::User=root)   # private dirs: the _apt sandbox can't write them
  log "private apt-get update (arm64 + amd64 package lists)"
  if ! out=$("${APT[@]}" update 2>&1) || grep -q '^\(E:\|W: Failed to fetch\)' <<<"$out"; then
    fail "apt-get update failed (Debian mirror unreachable?): $(grep -m1 '^\(E\|W\):' <<<"$out" || tail -n1 <<<"$out")"
  fi
  log "downloading arm64 python$PYVER debs + qemu-user-static:amd64"
  out=$("${APT[@]}" install -y --download-only --no-install-recommends \
          "python$PYVER-minimal" "libpython$PYVER-stdlib" libstdc++6 2>&1) \
    || fail "apt-get could not download the arm64 python$PYVER debs: $(grep -m1 '^E:' <<<"$out" || tail -n1 <<<"$out")"
  out=$(cd "$A" && "${APT[@]}" download qemu-user-static:amd64 2>&1) \
    || fail "apt-get could not download qemu-user-static:amd64: $(grep -m1 '^E:' <<<"$out" || tail -n1 <<<"$out")"
  STEP="unpacking the debs"
  dpkg-deb --fsys-tarfile "$A"/qemu-user-static_*.deb | tar -xO ./usr/bin/qemu-aarch64-static > "$QEMU.tmp"
  chmod +x "$QEMU.tmp"
  mv "$QEMU.tmp" "$QEMU"
  log "unpacking $(ls "$A"/cache/archives/*.deb | wc -l) arm64 debs into $S"
  for d in "$A"/cache/archives/*.deb; do dpkg-deb -x "$d" "$S"; done
  rm -rf "$A"                    # ~80 MB of .debs and lists, no longer needed
  touch "$DEST/.sysroot-ok"
fi

# -- 2. aarch64 wheels, installed by the host pip (reinstalled when the wanted versions change) --
STEP="pip install of the aarch64 wheels"
want="$ORT_SPEC $NUMPY_SPEC"
if [ ! -d "$DEST/site/onnxruntime" ] || [ "$(cat "$DEST/site/.specs" 2>/dev/null)" != "$want" ]; then
  log "pip install --target site --platform $PLAT: $want"
  rm -rf "$DEST/site.tmp"
  if ! out=$("$PY_HOST" -m pip install -q --no-cache-dir --disable-pip-version-check --timeout 30 --retries 2 \
        --target "$DEST/site.tmp" --platform "$PLAT" --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --abi "cp${PYVER/./}" "$ORT_SPEC" "$NUMPY_SPEC" 2>&1); then
    rm -rf "$DEST/site.tmp"
    fail "pip could not install the aarch64 wheels ($want): $(grep -m1 'ERROR' <<<"$out" || tail -n1 <<<"$out")"
  fi
  [ -d "$DEST/site.tmp/onnxruntime" ] || fail "pip install left no onnxruntime in site"
  echo "$want" > "$DEST/site.tmp/.specs"
  rm -rf "$DEST/site"
  mv "$DEST/site.tmp" "$DEST/site"
fi
STEP="pip install of the floor onnxruntime"
if [ ! -d "$DEST/site-floor/onnxruntime" ] || [ "$(cat "$DEST/site-floor/.specs" 2>/dev/null)" != "$ORT_FLOOR_SPEC" ]; then
  log "pip install --target site-floor --no-deps --platform $PLAT: $ORT_FLOOR_SPEC"
  rm -rf "$DEST/site-floor.tmp"
  if ! out=$("$PY_HOST" -m pip install -q --no-cache-dir --disable-pip-version-check --timeout 30 --retries 2 --no-deps \
        --target "$DEST/site-floor.tmp" --platform "$PLAT" --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --abi "cp${PYVER/./}" "$ORT_FLOOR_SPEC" 2>&1); then
    rm -rf "$DEST/site-floor.tmp"
    fail "pip could not install the floor onnxruntime ($ORT_FLOOR_SPEC): $(grep -m1 'ERROR' <<<"$out" || tail -n1 <<<"$out")"
  fi
  [ -d "$DEST/site-floor.tmp/onnxruntime" ] || fail "pip install left no onnxruntime in site-floor"
  rm -rf "$DEST/site-floor.tmp/bin"   # console scripts of the host pip's making, unused
  echo "$ORT_FLOOR_SPEC" > "$DEST/site-floor.tmp/.specs"
  rm -rf "$DEST/site-floor"
  mv "$DEST/site-floor.tmp" "$DEST/site-floor"
fi

# -- 3. per-profile QEMU_LD_PREFIX dirs: symlinks to the sysroot + a fake ARM /proc/cpuinfo -----
STEP="profiles"
N=$(getconf _NPROCESSORS_CONF)
mkcpuinfo() { # features variant part revision (implementer 0x41 = Arm)
  for i in $(seq 0 $((N - 1))); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
      "$i" "$1" "$2" "$3" "$4"
  done
}
for p in $PROFILES; do
  P=$DEST/prefix-$p
  mkdir -p "$P/proc"
  for d in "$S"/*; do ln -sfn "../sysroot/$(basename "$d")" "$P/$(basename "$d")"; done
done
# Pi 4: Cortex-A72 (part 0xd08), ARMv8.0-A: no dotprod.  Pi 5: Cortex-A76 (part 0xd0b), with asimddp.
mkcpuinfo "fp asimd evtstrm crc32 cpuid" 0x0 0xd08 3 > "$DEST/prefix-pi4/proc/cpuinfo"
mkcpuinfo "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
          0x4 0xd0b 1 > "$DEST/prefix-pi5/proc/cpuinfo"

# -- 4. overlay: this checkout's package, laid out as pip installs it (symlinks, so never stale) --
STEP="overlay"
O=$DEST/overlay
rm -rf "$O.tmp"
"$PY_HOST" - "$REPO" "$O.tmp" <<'PY'
import os, re, sys
repo, out = sys.argv[1:]
text = open(os.path.join(repo, "pyproject.toml"), encoding="utf-8").read()
try:
    import tomllib
    pkg_dirs = tomllib.loads(text)["tool"]["setuptools"]["package-dir"]
except ImportError:  # Python < 3.11: the one-line inline table of [tool.setuptools]
    pkg_dirs = dict(re.findall(r'"([\w.]+)"\s*=\s*"([^"]+)"', re.search(r"^package-dir\s*=\s*\{.*\}", text, re.M).group(0)))
top = os.path.join(out, "ubdiff_onnx")
os.makedirs(top)
src = os.path.join(repo, pkg_dirs.get("ubdiff_onnx", "ubdiff_onnx"))
for name in os.listdir(src):
    if name != "__pycache__":
        os.symlink(os.path.join(src, name), os.path.join(top, name))
for pkg, d in pkg_dirs.items():   # ubdiff_onnx.runtime = runtime, ...: one level below the top package
    parts = pkg.split(".")
    if len(parts) == 2 and parts[0] == "ubdiff_onnx" and not os.path.lexists(os.path.join(top, parts[1])):
        os.symlink(os.path.join(repo, d), os.path.join(top, parts[1]))
PY
rm -rf "$O"
mv "$O.tmp" "$O"

# -- 5. the wrapper ----------------------------------------------------------------------------
STEP="wrapper"
cat > "$DEST/bin/arm-python.tmp" <<EOF
#!/usr/bin/env bash
# Emulated aarch64 python$PYVER with onnxruntime + numpy + this checkout's ubdiff_onnx (overlay).
# ARM_PROFILE=pi4 (Cortex-A72, default) | pi5 (Cortex-A76).  ARM_PYTHONPATH: prepended to PYTHONPATH.
# ARM_ONNXRUNTIME=host (default: the host's onnxruntime version) | floor (the oldest supported one).
# -P: neither the current directory nor a script's directory goes on sys.path, so a checkout's
# ubdiff_onnx/ (which lacks runtime/, qat/, conversion/) cannot shadow the overlay.
# Written by scripts/setup_arm_env.sh; timings under emulation say nothing about a real Pi.
p=\${ARM_PROFILE:-pi4}
case \$p in pi4) cpu=cortex-a72;; pi5) cpu=cortex-a76;; *) echo "arm-python: ARM_PROFILE must be pi4 or pi5, got '\$p'" >&2; exit 2;; esac
case \${ARM_ONNXRUNTIME:-host} in host) floor=;; floor) floor="$DEST/site-floor:";; *) echo "arm-python: ARM_ONNXRUNTIME must be host or floor, got '\${ARM_ONNXRUNTIME}'" >&2; exit 2;; esac
export QEMU_LD_PREFIX="$DEST/prefix-\$p" QEMU_CPU=\$cpu PYTHONNOUSERSITE=1 PYTHONPYCACHEPREFIX="$DEST/pycache"
export PYTHONPATH="\${ARM_PYTHONPATH:+\$ARM_PYTHONPATH:}\$floor$DEST/site:$DEST/overlay"
unset PYTHONHOME PYTHONSTARTUP PYTHONEXECUTABLE
exec "$QEMU" "$S/usr/bin/python$PYVER" -s -P "\$@"
EOF
chmod +x "$DEST/bin/arm-python.tmp"
mv "$DEST/bin/arm-python.tmp" "$DEST/bin/arm-python"

# -- 6. self-test ------------------------------------------------------------------------------
if [ "${UBDIFF_ARM_SELFTEST:-1}" != 0 ]; then
  STEP="self-test"
  for run in $PROFILES pi4:floor; do
    p=${run%%:*}; o=host; [ "$run" = "$p" ] || o=${run#*:}
    out=$(ARM_PROFILE=$p ARM_ONNXRUNTIME=$o "$DEST/bin/arm-python" -c '
import ctypes, platform, sys, numpy, onnxruntime as o, ubdiff_onnx.runtime.sampler
g = ctypes.CDLL(None).getauxval; g.restype = ctypes.c_ulong
assert platform.machine() == "aarch64", platform.machine()
assert "torch" not in sys.modules
print("machine=%s python=%s onnxruntime=%s numpy=%s dotprod=%d" % (platform.machine(),
      platform.python_version(), o.__version__, numpy.__version__, g(16) >> 20 & 1))' 2>&1) \
      || fail "self-test under ARM_PROFILE=$p ARM_ONNXRUNTIME=$o failed: $(tail -n1 <<<"$out")"
    log "arm-python[$p, $o onnxruntime]: $out"
  done
fi

rm -f "$DEST/SETUP_FAILED"
trap - ERR
printf 'onnxruntime_spec=%s\nonnxruntime_floor_spec=%s\nnumpy_spec=%s\nrepo=%s\n' "$ORT_SPEC" "$ORT_FLOOR_SPEC" "$NUMPY_SPEC" "$REPO" > "$DEST/READY"
log "ready: $DEST/bin/arm-python ($(du -sh "$DEST" | cut -f1))"
