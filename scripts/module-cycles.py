#!/usr/bin/env python3
"""Module import circles and the longest functions in the mw workspace.

Usage (from the repository root):

    python3 scripts/module-cycles.py              # circles per crate + ten longest functions
    python3 scripts/module-cycles.py --edges mw-queue   # also print one crate's module edges
    python3 scripts/module-cycles.py --longest 20       # more functions

For every crate root (`src/lib.rs`, `src/main.rs`, `src/bin/*.rs`, `src/bin/*/main.rs`) it follows the
`mod x;` declarations to the module files, reads every `use` tree and every inline
`crate::`/`super::`/`self::` path (code inside `mod tests` blocks included), resolves
each path to the module file that declares the item (following `pub use`
re-exports), and prints the strongly connected components of that graph: the
largest set of module files that import each other in a circle. A module that
merely declares a child (`mod x;`) does not import it.

It reads text, not the compiler's name resolution: macros, glob imports of
items from an enum and `#[path]` attributes are not followed. Good enough to see
circles between files; not a proof.

Function length is counted from the line of `fn name` to the line of the brace
that closes its body (brace matching after comments and strings are blanked).
"""

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CRATES = [
    ("mw-core", "mw-core"),
    ("mw-rpc", "mw-rpc"),
    ("mw-queue", "mw-queue"),
    ("mw-pubsub", "mw-pubsub"),
    ("mw-space", "mw-space"),
    ("mw-macros", "mw-macros"),
    ("mw (src/)", "."),
    ("examples/kv", "examples/kv"),
    ("mw-bench", "mw-bench"),
]


# ---------------------------------------------------------------- lexing


_CHAR = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'")


def blank(text):
    """Comments, strings and char literals replaced by spaces; newlines kept."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 260]) and not (
            i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            m = re.match(r'r(#*)"', text[i:])
            close = '"' + m.group(1)
            j = text.find(close, i + len(m.group(0)))
            j = n if j < 0 else j + len(close)
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and not (
            i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
        )):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j += 1
            out.append('""' + re.sub(r"[^\n]", " ", text[i + 2:j]))
            i = j
        elif c == "'":
            m = _CHAR.match(text, i)
            if m:
                out.append(" " * (m.end() - i))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- modules


def child_file(parent_file, is_dir_owner, name):
    base = os.path.dirname(parent_file)
    if not is_dir_owner:
        base = os.path.join(base, os.path.splitext(os.path.basename(parent_file))[0])
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None


def discover(root_file):
    """{module path tuple: file} for one crate root."""
    mods = {(): root_file}
    todo = [((), root_file, True)]
    while todo:
        path, f, owner = todo.pop()
        text = blank(open(f, encoding="utf-8").read())
        for m in re.finditer(r"\bmod\s+([A-Za-z_]\w*)\s*;", text):
            c = child_file(f, owner, m.group(1))
            if c:
                p = path + (m.group(1),)
                mods[p] = c
                todo.append((p, c, os.path.basename(c) == "mod.rs"))
    return mods


def expand_use(tree):
    """'a::{b, c::d as e}' -> [['a','b'], ['a','c','d']] (aliases dropped)."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def parse(s, prefix):
        # split s at top-level commas
        parts, depth, cur = [], 0, ""
        for ch in s:
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        if cur:
            parts.append(cur)
        for p in parts:
            i = p.find("{")
            if i >= 0:
                head = [x for x in p[:i].split("::") if x]
                parse(p[i + 1:p.rfind("}")], prefix + head)
            else:
                p = re.sub(r"as\w+$", "", p) if "as" in p and re.search(r"\bas\b", p) else p
                segs = [x for x in p.split("::") if x]
                if segs:
                    out.append(prefix + segs)

    # keep "as" visible after whitespace removal
    parse(tree.replace(" as ", " as "), [])
    return out


def scan_module(text):
    """[(inline-mod stack, path segments, is_use, is_pub_use)] found in blanked text."""
    found = []
    stack = []  # (name, depth at which it opened)
    depth = 0
    i, n = 0, len(text)
    use_re = re.compile(r"\b(pub(?:\([^)]*\))?\s+)?use\s+([^;]*);", re.S)
    mod_re = re.compile(r"\bmod\s+([A-Za-z_]\w*)\s*\{")
    path_re = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_]\w*)+)")
    while i < n:
        m_use = use_re.match(text, i) if text[i] in "pu" else None
        if m_use and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            names = [s for s, _ in stack]
            raw = m_use.group(2)
            raw = re.sub(r"\s+as\s+\w+", "", raw)
            for segs in expand_use(raw):
                found.append((names, segs, True, bool(m_use.group(1))))
            i = m_use.end()
            continue
        m_mod = mod_re.match(text, i) if text[i] == "m" else None
        if m_mod and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            depth += 1
            stack.append((m_mod.group(1), depth))
            i = m_mod.end()
            continue
        m_path = path_re.match(text, i) if text[i] in "cs" else None
        if m_path and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "_$")):
            segs = [m_path.group(1)] + [x for x in m_path.group(2).split("::") if x]
            found.append(([s for s, _ in stack], segs, False, False))
            i = m_path.end()
            continue
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            if stack and stack[-1][1] == depth:
                stack.pop()
            depth -= 1
        i += 1
    return found


def crate_graph(root_file):
    mods = discover(root_file)
    uses = {}  # file module -> list of (absolute-ish path resolution inputs)
    reexports = {}  # module -> {name: segs (absolute)}
    raw = {}
    for mpath, f in mods.items():
        raw[mpath] = scan_module(blank(open(f, encoding="utf-8").read()))

    def absolute(mpath, inline, segs):
        here = mpath + tuple(inline)
        if segs[0] == "crate":
            return list(segs[1:])
        if segs[0] in ("super", "self"):
            base = list(here)
            k = 0
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super" and base:
                    base.pop()
                k += 1
            return base + list(segs[k:])
        if tuple(here) + (segs[0],) in mods:
            return list(here) + list(segs)
        if tuple(mpath) + (segs[0],) in mods:
            return list(mpath) + list(segs)
        return None

    for mpath, items in raw.items():
        reexports[mpath] = {}
        for inline, segs, is_use, is_pub in items:
            if is_use and not inline:
                a = absolute(mpath, inline, segs)
                if a and a[-1] not in ("*", "self"):
                    reexports[mpath][a[-1]] = a

    def resolve(a, seen=0):
        """Module file path tuple that declares the item a names."""
        k = len(a)
        while k > 0 and tuple(a[:k]) not in mods:
            k -= 1
        target = tuple(a[:k])
        if k < len(a) and seen < 8:
            item = a[k]
            r = reexports.get(target, {}).get(item)
            if r and r != a:
                return resolve(r + list(a[k + 1:]), seen + 1)
        return target

    edges = {m: set() for m in mods}
    for mpath, items in raw.items():
        for inline, segs, is_use, is_pub in items:
            a = absolute(mpath, inline, segs)
            if a is None:
                continue
            t = resolve(a)
            if t != mpath and t in mods:
                edges[mpath].add(t)
    return mods, edges


def sccs(edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    return out


def name(m):
    return "::".join(m) if m else "(root)"


# ---------------------------------------------------------------- functions


def rust_files():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in ("target", ".git", "node_modules")]
        for f in filenames:
            if f.endswith(".rs"):
                yield os.path.join(dirpath, f)


def functions(path):
    text = blank(open(path, encoding="utf-8", errors="replace").read())
    line_of = []
    line = 1
    for ch in text:
        line_of.append(line)
        if ch == "\n":
            line += 1
    for m in re.finditer(r"\bfn\s+([A-Za-z_]\w*)", text):
        j, paren, angle = m.end(), 0, 0
        while j < len(text):
            c = text[j]
            if c == "(":
                paren += 1
            elif c == ")":
                paren -= 1
            elif c == ";" and paren == 0:
                j = -1
                break
            elif c == "{" and paren == 0:
                break
            j += 1
        if j < 0 or j >= len(text):
            continue
        depth, k = 0, j
        while k < len(text):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    break
            k += 1
        if k >= len(text):
            continue
        start, end = line_of[m.start()], line_of[k]
        yield end - start + 1, os.path.relpath(path, ROOT), start, m.group(1)


# ---------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--edges", metavar="CRATE", help="print the module edges of this crate")
    ap.add_argument("--longest", type=int, default=10, help="how many functions to list")
    args = ap.parse_args()

    print("# largest module import circle per crate root")
    for label, d in CRATES:
        src = os.path.join(ROOT, d, "src")
        roots = [os.path.join(src, r) for r in ("lib.rs", "main.rs") if os.path.exists(os.path.join(src, r))]
        bindir = os.path.join(src, "bin")
        if os.path.isdir(bindir):
            for f in sorted(os.listdir(bindir)):
                path = os.path.join(bindir, f)
                if f.endswith(".rs"):
                    roots.append(path)
                elif os.path.isfile(os.path.join(path, "main.rs")):
                    roots.append(os.path.join(path, "main.rs"))
        for r in roots:
            mods, edges = crate_graph(r)
            comps = sorted((c for c in sccs(edges) if len(c) > 1), key=len, reverse=True)
            where = f"{label} {os.path.relpath(r, os.path.join(ROOT, d))}"
            if not comps:
                print(f"{where}: no circle ({len(mods)} modules)")
            else:
                big = comps[0]
                print(f"{where}: largest circle {len(big)} of {len(mods)} modules: "
                      + ", ".join(sorted(name(m) for m in big)))
                for c in comps[1:]:
                    print(f"    also: " + ", ".join(sorted(name(m) for m in c)))
            if args.edges and args.edges in (label, d):
                for m in sorted(edges):
                    print(f"    {name(m)} -> " + ", ".join(sorted(name(t) for t in edges[m])))

    print()
    print(f"# {args.longest} longest functions (lines from `fn` to its closing brace)")
    allf = []
    for f in rust_files():
        allf.extend(functions(f))
    allf.sort(key=lambda x: (-x[0], x[1], x[2]))
    for n, f, line, fn in allf[:args.longest]:
        print(f"{n:5}  {f}:{line}  {fn}")


if __name__ == "__main__":
    main()
