#!/bin/sh
# Independent check of the harness's per-function counts (docs/accounting.md):
# the reference purgatory's C run natively under valgrind's callgrind over regions of
# the same lengths as the harness's default run, then the harness's counts for that run.
#
#   Purgatories/reference/callgrind/run.sh [HARNESS]     (default .build/release/purgatory-harness)
#
# Builds into Purgatories/build/callgrind/ with the reference Makefile's C flags (make -p
# prints them), so the host objects are the same code as the purgatory's.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../../.." && pwd)
harness=${1:-$top/.build/release/purgatory-harness}
out=$top/Purgatories/build/callgrind
mkdir -p "$out"
cflags=$(make -s -C "$top/Purgatories" -p -n all 2>/dev/null | sed -n 's/^PURGATORY_CFLAGS := //p')
[ -n "$cflags" ] || { echo "run.sh: could not read PURGATORY_CFLAGS from Purgatories/Makefile" >&2; exit 2; }
CC=${CC:-gcc}
for f in purgatory sha256 string; do
	$CC $cflags -c -o "$out/$f.o" "$top/Purgatories/reference/$f.c"
done
$CC -O2 -c -o "$out/driver.o" "$here/driver.c"
$CC -o "$out/driver" "$out/driver.o" "$out/purgatory.o" "$out/sha256.o" "$out/string.o"
$CC -O2 -o "$out/rep" "$here/rep.c"

# The harness's default run: boot params 0x2000, kernel 0x6000, initrd 0x2000 bytes hashed.
lengths="8192 24576 8192"
echo "== callgrind: purgatory() natively over regions of $lengths bytes"
valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" --toggle-collect=purgatory \
	"$out/driver" $lengths 2>"$out/valgrind.log"
callgrind_annotate --threshold=100 "$out/callgrind.out" | sed -n '/Ir/,$p' | grep -v '^$'
echo "== harness: run --seed 1 (same lengths), instructions per function"
"$harness" run --seed 1 --json | python3 -c '
import json, sys
r = json.load(sys.stdin)
print("segments:", [s["length"] for s in r["segments"]], "total", r["instructions"])
for f in r["accounting"]["functions"]:
    print("%12d  %s" % (f["instructions"], f["name"]))'
echo "== rep stosb over 100 and over 0 bytes: callgrind's Ir for rep_stosb (4 other instructions, disassembled below)"
valgrind --tool=callgrind --callgrind-out-file="$out/rep.out" --toggle-collect=rep_stosb "$out/rep" 100 2>/dev/null
callgrind_annotate "$out/rep.out" | grep -E 'rep_stosb|PROGRAM TOTALS'
valgrind --tool=callgrind --callgrind-out-file="$out/rep0.out" --toggle-collect=rep_stosb "$out/rep" 0 2>/dev/null
callgrind_annotate "$out/rep0.out" | grep -E 'rep_stosb|PROGRAM TOTALS'
objdump -d --no-show-raw-insn "$out/rep" | sed -n '/<rep_stosb>:/,/ret/p'
