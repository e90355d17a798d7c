#!/usr/bin/env bash
# The format check of the test suite (ctest format_check): every C++ file is
# formatted as .clang-format says (Google style, 120 columns), except those
# listed in .ci/format-pending.txt — files written before the check existed,
# left alone so that open branches still merge; a one-shot
# `clang-format -i $(cat .ci/format-pending.txt)` after merging them empties
# the list. New files are never added to it.
#
#   .ci/check_format.sh [--fix]   (--fix formats the files that fail instead)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
command -v clang-format >/dev/null || { echo "check_format.sh: clang-format is missing (./dpfleet setup)" >&2; exit 1; }
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h')
else
  mapfile -t files < <(find . -path ./build -prune -o -path './build-*' -prune -o \( -name '*.cc' -o -name '*.h' \) -print |
                       sed 's|^\./||' | sort)
fi
declare -A pending=()
while read -r f; do [[ -n "$f" && "$f" != \#* ]] && pending["$f"]=1; done < .ci/format-pending.txt
bad=()
for f in "${files[@]}"; do
  [[ -n "${pending[$f]:-}" ]] && continue
  clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if ((${#bad[@]})); then
  if [[ "${1:-}" == "--fix" ]]; then
    clang-format -i "${bad[@]}"
    echo "formatted: ${bad[*]}"
    exit 0
  fi
  echo "not clang-formatted (run .ci/check_format.sh --fix, or clang-format -i FILE):" >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "${#files[@]} C++ files, $(( ${#files[@]} - ${#pending[@]} )) checked, all formatted"
