"""Record the Python API of one TensorRT release from NVIDIA's own binding sources.

TensorRT's Python module is a pybind11 extension whose every class, method, property and enum
value is declared in python/src/**/*.cpp of https://github.com/NVIDIA/TensorRT (tag per release),
plus a few helpers in python/packaging/bindings_wheel/tensorrt/__init__.py. This script reads those
files from a git checkout at a tag and writes one name per line ("Builder.create_network",
"BuilderFlag.FP16", "float16", ...), inherited members included, with a header naming the tag and
commit. tests/test_tensorrt_api.py checks every TensorRT attribute edge_fas touches against these
lists, so a call that a release removed fails here and not on a customer's board.

    python tests/trt_api/extract_api.py /path/to/TensorRT v10.3.0 > tests/trt_api/tensorrt-10.3.txt
"""

from __future__ import annotations

import re
import subprocess
import sys

START = re.compile(r"py::(class_|enum_)\s*<")
MEMBER = re.compile(r"\.(def|def_static|def_property|def_property_readonly|def_readwrite|def_readonly|value)\s*\(\s*\"(\w+)\"")
MODULE_FN = re.compile(r"\bm\.def\s*\(\s*\"(\w+)\"")
MODULE_ATTR = re.compile(r"\bm\.attr\s*\(\s*\"(\w+)\"\s*\)\s*=")
PY_DEF = re.compile(r"^(?:def|class) (\w+)|^(\w+) = ", re.M)


def git_show(repo: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def sources(repo: str, tag: str) -> list[str]:
    out = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", tag, "python/src"], check=True,
                         capture_output=True, text=True).stdout.split()
    return sorted(p for p in out if p.endswith(".cpp"))


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def _scan(text: str, i: int):
    """(index, char) from text[i] on, string literals skipped."""
    j = i
    while j < len(text):
        c = text[j]
        if c == '"':
            j += 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
        else:
            yield j, c
        j += 1


def _matching(text: str, i: int, open_c: str, close_c: str) -> int:
    """Index just past the bracket that closes the one at text[i]."""
    depth = 0
    for j, c in _scan(text, i):
        depth += (c == open_c) - (c == close_c)
        if depth == 0:
            return j + 1
    raise ValueError("unbalanced")


def _statement_end(text: str, i: int) -> int:
    """Index of the ';' that ends the statement starting at i, at bracket depth 0."""
    return next((j for j, c, d in _paren_scan(text, i) if c == ";" and d == 0), len(text))


def _paren_scan(text: str, i: int):
    """Like _scan, but depth counts only (), [] and {} (C++ '<' is also less-than)."""
    depth = 0
    for j, c in _scan(text, i):
        yield j, c, depth
        depth += (c in "([{") - (c in ")]}")


def _depth0_members(chain: str) -> list[str]:
    """Member names declared directly on this chain (not inside lambdas or nested calls)."""
    out = []
    for j, c, d in _paren_scan(chain, 0):
        m = MEMBER.match(chain, j) if c == "." and d == 0 else None
        if m:
            out.append(m.group(2))
    return out


def parse(texts: list[str]) -> tuple[dict, dict, set]:
    """(members per Python class, parents per Python class, module-level names)."""
    members: dict[str, set] = {}
    parents: dict[str, list] = {}
    cpp_to_py: dict[str, str] = {}
    pending_parents: dict[str, list] = {}
    variables: dict[str, str] = {}
    module: set = set()
    for text in texts:
        text = _strip_comments(text)
        module |= set(MODULE_FN.findall(text)) | set(MODULE_ATTR.findall(text))
        for m in START.finditer(text):
            targs_end = _matching(text, m.end() - 1, "<", ">")
            targs = [a.strip() for a in re.split(r",(?![^<]*>)", text[m.end():targs_end - 1])]
            rest = text[targs_end:]
            h = re.match(r"\s*(\w+)?\s*([({])\s*(\w+)\s*,\s*\"(\w+)\"", rest)
            if not h:
                continue
            var, scope, pyname = h.group(1), h.group(3), h.group(4)
            scope_py = variables.get(scope) or (None if scope == "m" else cpp_to_py.get(scope))
            full = f"{scope_py}.{pyname}" if scope_py else pyname
            if scope_py:
                members.setdefault(scope_py, set()).add(pyname)
            else:
                module.add(pyname)
            cpp_to_py[targs[0]] = full
            cpp_to_py[targs[0].split("::")[-1]] = full
            if var:
                variables[var] = full
            pending_parents[full] = targs[1:]
            end = _statement_end(text, targs_end)
            declared = _depth0_members(text[targs_end:end])
            members.setdefault(full, set()).update(declared)
            if m.group(1) == "enum_" and ".export_values()" in text[targs_end:end]:
                # export_values() also puts the enum's values in the enclosing scope (trt.Logger.WARNING)
                (members.setdefault(scope_py, set()) if scope_py else module).update(declared)
        for var, full in variables.items():
            for s in re.finditer(rf"\b{var}\s*\.", text):
                if text[s.start() - 1] in "{(":
                    continue
                end = _statement_end(text, s.start())
                members.setdefault(full, set()).update(_depth0_members(text[s.start() + len(var):end]))
    for full, targs in pending_parents.items():
        parents[full] = [cpp_to_py[t] for t in targs if t in cpp_to_py]
    return members, parents, module


def api_names(repo: str, tag: str) -> list[str]:
    members, parents, module = parse([git_show(repo, tag, p) for p in sources(repo, tag)])

    def all_members(cls, seen=()):
        out = set(members.get(cls, ()))
        for p in parents.get(cls, ()):
            if p not in seen:
                out |= all_members(p, seen + (cls,))
        return out

    names = set(module)
    for cls in members:
        names.add(cls)
        names |= {f"{cls}.{n}" for n in all_members(cls)}
    init = git_show(repo, tag, "python/packaging/bindings_wheel/tensorrt/__init__.py")
    names |= {a or b for a, b in PY_DEF.findall(init) if not (a or b).startswith("_")} | {"__version__"}
    return sorted(names)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    repo, tag = argv[1], argv[2]
    commit = subprocess.run(["git", "-C", repo, "rev-parse", f"{tag}^{{commit}}"], check=True, capture_output=True,
                            text=True).stdout.strip()
    names = api_names(repo, tag)
    print(f"# TensorRT Python API at tag {tag} of https://github.com/NVIDIA/TensorRT (commit {commit})")
    print("# read from python/src/**/*.cpp (pybind11 declarations, inherited members included) and")
    print("# python/packaging/bindings_wheel/tensorrt/__init__.py by tests/trt_api/extract_api.py")
    print("\n".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
