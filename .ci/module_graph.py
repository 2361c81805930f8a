#!/usr/bin/env python3
"""Checks the crate's module graph: top-level modules of src/ may depend on each other only one way
(the tape <-> grads pair excepted), and no source file is over 400 lines. Prints the edges with -v."""
import itertools
import os
import re
import sys

edges, long_files = {}, []
for root, _, files in os.walk('src'):
    for f in files:
        if not f.endswith('.rs'):
            continue
        path = os.path.join(root, f)
        text = open(path, errors='replace').read()
        if text.count('\n') > 400:
            long_files.append(f'{path} ({text.count(chr(10))} lines)')
        if root.startswith('src/bin'):
            continue
        top = os.path.relpath(path, 'src').split(os.sep)[0].removesuffix('.rs')
        text = re.sub(r'#\[cfg\(test\)\][\s\S]*', '', text)
        text = '\n'.join(l for l in text.splitlines() if not l.lstrip().startswith('//'))
        for m in re.finditer(r'crate::(\w+)', text):
            if m.group(1) != top:
                edges.setdefault(top, set()).add(m.group(1))


def reaches(a, b, seen=()):
    return b in edges.get(a, ()) or any(
        reaches(c, b, seen + (a,)) for c in edges.get(a, ()) if c not in seen)


tops = sorted(set(edges) | {t for v in edges.values() for t in v})
cycles = [f'{a} <-> {b}' for a, b in itertools.combinations(tops, 2)
          if {a, b} != {'tape', 'grads'} and reaches(a, b) and reaches(b, a)]
if '-v' in sys.argv:
    for k in sorted(edges):
        print(f'{k} -> {", ".join(sorted(edges[k]))}')
for c in cycles:
    print(f'module cycle: {c}')
for f in long_files:
    print(f'file over 400 lines: {f}')
sys.exit(1 if cycles or long_files else 0)
