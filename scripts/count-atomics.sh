#!/usr/bin/env bash
# Atomic read-modify-writes per request of one in-process bench row: callgrind's
# per-instruction profile of the measured loop, matched against objdump's lock-prefixed
# (and xchg) instructions of the binary; prints the total and the functions they are in.
#
#   bash scripts/count-atomics.sh [row] [requests]     (needs valgrind, objdump, python3)
set -euo pipefail
cd "$(dirname "$0")/.."
row="${1:-13}"
n="${2:-4000}"
cargo build --release -p switchboard --example profile_stack
bin=target/release/examples/profile_stack
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
objdump -d --no-show-raw-insn "$bin" | grep -E '^\s+[0-9a-f]+:\s+(lock |xchg)' \
  | awk '{print $1}' | tr -d ':' > "$work/locks.txt"
valgrind --tool=callgrind --dump-instr=yes --collect-atstart=no \
  --toggle-collect='*profile_stack::measured*' --callgrind-out-file="$work/cg.out" \
  "$bin" "$n" "$row" > /dev/null 2>&1
python3 - "$work/locks.txt" "$work/cg.out" "$n" <<'PY'
import collections, re, sys
locks = {int(a, 16) for a in open(sys.argv[1])}
n = float(sys.argv[3])
names, fn, ob, objects = {}, None, None, {}
addr, skip, total = 0, False, 0
by_fn = collections.Counter()

def name(ref, table):
    m = re.match(r'\((\d+)\)(?: (.*))?', ref)
    if m.group(2):
        table[m.group(1)] = m.group(2)
    return table[m.group(1)]

for line in open(sys.argv[2]):
    line = line.rstrip('\n')
    if not line or line[0] == '#':
        continue
    key = line.split('=', 1)[0]
    if key == 'fn':
        fn = name(line[3:], names)
    elif key == 'ob':
        ob = name(line[3:], objects)
    elif key == 'cfn':
        name(line[4:], names)
    elif key == 'cob':
        name(line[4:], objects)
    elif key == 'calls':
        skip = True  # the next line is the call's inclusive cost
    elif line[0] in '0123456789+-*':
        parts = line.split()
        a = parts[0]
        if a.startswith('0x'):
            addr = int(a, 16)
        elif a[0] == '+':
            addr += int(a[1:])
        elif a[0] == '-':
            addr -= int(a[1:])
        if skip:
            skip = False
            continue
        if len(parts) >= 3 and 'profile_stack' in (ob or '') and addr in locks:
            by_fn[fn] += int(parts[2])
            total += int(parts[2])
print(f"atomic read-modify-writes per request: {total / n:.1f}")
for f, c in by_fn.most_common(25):
    print(f"{c / n:6.2f}  {f[:150]}")
PY
