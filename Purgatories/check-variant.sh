#!/bin/sh
# Check one purgatory variant against its expected profile, using readelf.
#
#   check-variant.sh FILE TYPE ALLOWED REQUIRED SYMBOLS [EXEC] [BYTES]
#
#   TYPE      REL or DYN (e_type)
#   ALLOWED   relocation types that may appear (anything else fails)
#   REQUIRED  words that must each be satisfied; a word is
#             [section:]type, several joined by "|" meaning any of them
#             (section = the section the relocations apply to, e.g. .text)
#   SYMBOLS   name:size[:section[:value]] ("-" = any): GLOBAL and defined
#   EXEC      how many executable sections must contain e_entry (default 1)
#   BYTES     name:hex: the symbol's initial bytes in the file
#
# Also: e_entry equals purgatory_start's value; DYN has no PT_INTERP;
# no xmm/ymm/zmm register use.  Prints a profile; exits 1 on a mismatch.

set -eu
READELF=${READELF:-readelf}
OBJDUMP=${OBJDUMP:-objdump}

f=$1 want_type=$2 allowed=$3 required=$4 symbols=$5
want_exec=${6:-1} bytes=${7:-}
name=$(basename "$f" .ro)

fail() {
	echo "check-variants: $name: FAIL: $*" >&2
	exit 1
}
say() { echo "check-variants: $name: $*"; }

[ -f "$f" ] || fail "$f does not exist"

# e_type
type=$($READELF -hW "$f" | awk '$1 == "Type:" { print $2 }')
[ "$type" = "$want_type" ] || fail "e_type $type, want $want_type"

# Sections: "idx name addr off size flags" (flags "-" if none).
sections=$($READELF -SW "$f" | sed -n 's/^ *\[ *\([0-9][0-9]*\)\] /\1 /p' |
	awk 'NF >= 10 { fl = (NF == 11) ? $8 : "-"; print $1, $2, $4, $5, $6, fl }')
sec_name() { echo "$sections" | awk -v i="$1" '$1 == i { print $2 }'; }

# Relocations as "section type", section = the one they apply to.
relocs=$($READELF -rW "$f" | awk '
	/^Relocation section/ { s = $3; gsub(/\047/, "", s); if (s != ".rela.dyn") sub(/^\.rela?/, "", s) }
	$3 ~ /^R_X86_64_/ { print s, $3 }')
[ -n "$relocs" ] || fail "no relocations at all"
say "relocations:"
echo "$relocs" | sort | uniq -c | sed 's/^/    /'

bad=$(echo "$relocs" | awk -v ok=" $allowed " 'index(ok, " " $2 " ") == 0')
[ -z "$bad" ] || fail "relocation types outside the profile ($allowed):
$(echo "$bad" | sort | uniq -c)"

for req in $required; do
	found=
	for alt in $(echo "$req" | tr '|' ' '); do
		case $alt in
		*:*) hit=$(echo "$relocs" | awk -v s="${alt%%:*}" -v t="${alt#*:}" '$1 == s && $2 == t') ;;
		*) hit=$(echo "$relocs" | awk -v t="$alt" '$2 == t') ;;
		esac
		[ -z "$hit" ] || found="$found $alt"
	done
	[ -n "$found" ] || fail "required relocation $req not present"
	say "has$found"
done

# Symbols, from .symtab only (a DYN also has .dynsym).
syms=$($READELF -sW "$f" | awk '
	/^Symbol table/ { t = ($3 == "\047.symtab\047") }
	t && $1 ~ /^[0-9]+:$/ && NF == 8')
sym_field() { echo "$syms" | awk -v n="$1" -v c="$2" '$8 == n { print $c }'; }

for spec in $symbols; do
	IFS=: read -r s size sec value <<EOF
$spec
EOF
	line=$(echo "$syms" | awk -v n="$s" '$8 == n && $5 == "GLOBAL" && $7 ~ /^[0-9]+$/')
	[ "$(echo "$line" | grep -c .)" -eq 1 ] ||
		fail "$s is not a single defined GLOBAL symbol"
	got_size=$(echo "$line" | awk '{ print $3 }')
	got_val=$(echo "$line" | awk '{ print $2 }')
	got_sec=$(sec_name "$(echo "$line" | awk '{ print $7 }')")
	[ "${size:--}" = - ] || [ "$got_size" = "$size" ] ||
		fail "$s has size $got_size, want $size"
	[ "${sec:--}" = - ] || [ "$got_sec" = "$sec" ] ||
		fail "$s is in $got_sec, want $sec"
	[ "${value:--}" = - ] || [ $((0x$got_val)) -eq $((value)) ] ||
		fail "$s has value 0x$got_val, want $value"
	say "symbol $s value 0x$got_val size $got_size in $got_sec"
done

# Initial contents of symbols: file offset = sh_offset + value - sh_addr.
for spec in $bytes; do
	s=${spec%%:*} want=${spec#*:}
	ndx=$(sym_field "$s" 7)
	[ -n "$ndx" ] || fail "$s not found for the bytes check"
	set -- $(echo "$sections" | awk -v i="$ndx" '$1 == i { print $3, $4 }')
	off=$((0x$2 + 0x$(sym_field "$s" 2) - 0x$1))
	got=$(od -An -v -tx1 -j "$off" -N $((${#want} / 2)) "$f" | tr -d ' \n')
	[ "$got" = "$want" ] || fail "$s starts with bytes $got, want $want"
	say "symbol $s initial bytes $got"
done

# Entry point.
entry=$($READELF -hW "$f" | awk '/Entry point address:/ { print $4 }')
start=$(sym_field purgatory_start 2)
[ -n "$start" ] && [ $((entry)) -eq $((0x$start)) ] ||
	fail "e_entry $entry is not purgatory_start (0x$start)"
nexec=0 execs=
while read -r idx sname addr off size flags; do
	case $flags in *X*) ;; *) continue ;; esac
	if [ $((entry)) -ge $((0x$addr)) ] && [ $((entry)) -lt $((0x$addr + 0x$size)) ]; then
		nexec=$((nexec + 1)) execs="$execs $sname"
	fi
done <<EOF
$sections
EOF
[ "$nexec" -eq "$want_exec" ] ||
	fail "e_entry $entry lies in $nexec executable section(s) ($execs), want $want_exec"
say "e_entry $entry = purgatory_start, inside executable section(s):$execs"

if [ "$type" = DYN ]; then
	! $READELF -lW "$f" | grep -q INTERP || fail "has a PT_INTERP"
	say "no PT_INTERP"
fi

! $OBJDUMP -d "$f" | grep -qE '%[xyz]mm[0-9]' || fail "SIMD register use found"
say "OK"
