#!/usr/bin/env bash
# Proves every runtime dependency of edged, transitive ones included, installs from binary wheels
# on Raspberry Pi OS 64-bit (Debian 12 bookworm: glibc 2.36, CPython 3.11, aarch64). It only
# downloads into a temporary directory; nothing is installed and nothing is built.
#
# The dependency list comes from [project].dependencies in pyproject.toml. PYTHON picks the
# interpreter that runs pip (default: .venv/bin/python if present, else python3).
#
# pip download --platform evaluates environment markers (platform_machine, ...) against this
# machine rather than the Pi, so afterwards the dependency closure is re-checked from the wheels'
# own metadata with aarch64 markers, and every wheel tag is checked against cp311 / glibc 2.36.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -x .venv/bin/python ]; then
    PYTHON=${PYTHON:-.venv/bin/python}
else
    PYTHON=${PYTHON:-python3}
fi

deps_txt=$(python3 -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["dependencies"]))
')
mapfile -t deps <<<"$deps_txt"
if [ -z "$deps_txt" ] || [ ${#deps[@]} -eq 0 ]; then
    echo "check-aarch64-wheels: no [project].dependencies in pyproject.toml" >&2
    exit 1
fi

# manylinux2014 is manylinux_2_17; aarch64 wheels start there. Bookworm's glibc is 2.36.
# linux_aarch64 (unportable local builds) and musllinux are deliberately not accepted.
platforms=(--platform manylinux2014_aarch64)
for minor in $(seq 17 36); do
    platforms+=(--platform "manylinux_2_${minor}_aarch64")
done

tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
mkdir "$tmpdir/wheels"

echo "check-aarch64-wheels: resolving ${#deps[@]} runtime dependencies for cp311 / aarch64 / glibc 2.36"
if ! "$PYTHON" -m pip download --quiet --progress-bar off --disable-pip-version-check \
    --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311 "${platforms[@]}" \
    --dest "$tmpdir/wheels" "${deps[@]}" >"$tmpdir/pip.log" 2>&1; then
    echo "check-aarch64-wheels: FAILED, pip could not get a binary wheel for everything:" >&2
    # pip's own words, without this machine's paths or the registries' addresses
    sed -E -e "s#${tmpdir}#<tmp>#g" -e "s#${PWD}#.#g" -e "s#(https?|file)://[^ )\"']*#<index>#g" \
        -e 's#(/[^ /:"]+)+/#<path>/#g' "$tmpdir/pip.log" >&2
    exit 1
fi

deps_txt="$deps_txt" "$PYTHON" - "$tmpdir/wheels" <<'EOF'
import os
import re
import sys
import zipfile
from email.parser import Parser

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always carries a copy
    from pip._vendor.packaging.requirements import Requirement
    from pip._vendor.packaging.utils import canonicalize_name

GLIBC_MAX = (2, 36)
PI_ENV = {  # Raspberry Pi OS 64-bit, CPython 3.11
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "python_version": "3.11",
    "python_full_version": "3.11.2",
    "implementation_version": "3.11.2",
}

wheel_dir = sys.argv[1]
files = sorted(os.listdir(wheel_dir))
problems = []
not_wheels = [f for f in files if not f.endswith(".whl")]
for f in not_wheels:
    problems.append(f"{f}: not a wheel (an sdist would need building on the Pi)")


def glibc_needed(plat):
    """Minimum glibc for one platform tag, None if the tag is not usable on the Pi."""
    if plat == "any":
        return (0, 0)
    if plat == "manylinux2014_aarch64":
        return (2, 17)
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_aarch64", plat)
    return (int(m[1]), int(m[2])) if m else None


def abi_ok(py, abi):
    pys, abis = py.split("."), abi.split(".")
    if "cp311" in abis:
        return "cp311" in pys
    if "abi3" in abis:
        return any(re.fullmatch(r"cp3(\d+)", p) and int(p[3:]) <= 11 for p in pys)
    if "none" in abis:
        return any(p in ("py3", "cp311") for p in pys)
    return False


wheels = {}  # canonical name -> (name, version, tag, glibc, metadata)
for f in files:
    if not f.endswith(".whl"):
        continue
    parts = f[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        problems.append(f"{f}: not a valid wheel file name")
        continue
    py, abi, plat = parts[-3:]
    usable = [g for g in map(glibc_needed, plat.split(".")) if g is not None and g <= GLIBC_MAX]
    if not usable:
        problems.append(f"{f}: platform {plat} is not manylinux aarch64 with glibc <= 2.36")
    if not abi_ok(py, abi):
        problems.append(f"{f}: {py}-{abi} does not run on CPython 3.11")
    with zipfile.ZipFile(os.path.join(wheel_dir, f)) as z:
        meta_name = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
        meta = Parser().parsestr(z.read(meta_name).decode("utf-8"))
    wheels[canonicalize_name(meta["Name"])] = (
        meta["Name"], meta["Version"], f"{py}-{abi}-{plat}", min(usable, default=None), meta
    )

# Walk the dependency closure with the Pi's markers: every requirement must be among the wheels.
todo = [(Requirement(d), "pyproject.toml") for d in os.environ["deps_txt"].splitlines()]
seen = set()
while todo:
    req, by = todo.pop()
    key = canonicalize_name(req.name)
    if (key, frozenset(req.extras)) in seen:
        continue
    seen.add((key, frozenset(req.extras)))
    if key not in wheels:
        problems.append(f"{req} (needed by {by}): no wheel downloaded for it")
        continue
    name, version, _, _, meta = wheels[key]
    if not req.specifier.contains(version, prereleases=True):
        problems.append(f"{req} (needed by {by}): got {version}")
    for line in meta.get_all("Requires-Dist") or []:
        sub = Requirement(line)
        for extra in ["", *req.extras]:
            if sub.marker is None or sub.marker.evaluate({**PI_ENV, "extra": extra}):
                todo.append((sub, name))
                break

rows = [("package", "version", "wheel tag")] + [w[:3] for _, w in sorted(wheels.items())]
widths = [max(len(r[i]) for r in rows) for i in range(3)]
for i, row in enumerate(rows):
    print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    if i == 0:
        print("  ".join("-" * w for w in widths))

if problems:
    print("\ncheck-aarch64-wheels: FAILED", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    sys.exit(1)

top = max(wheels.values(), key=lambda w: w[3])
print(f"\nhighest glibc needed: {top[3][0]}.{top[3][1]} ({top[0]})")
print(f"aarch64: {len(wheels)} wheels, all binary (cp311, glibc <= 2.36)")
EOF
