"""A strict renderer for the subset of Go templates (text/template + Helm/Sprig functions) that the
neural-fabric chart uses, so the chart can be rendered and checked where `helm` is not installed.

It is not Helm: it implements only what infra/helm/neural-fabric uses and raises `TemplateError`
on anything else (an unknown function, action or syntax), so a template that steps outside the
subset fails the tests instead of rendering wrongly. The semantics follow text/template:
`{{-`/`-}}` trim all adjacent whitespace; `if`/`with` test Go truthiness (false, 0, nil, empty
string/list/map are false); `range` over a map visits keys in sorted order; a missing map key is
nil; a field of nil is an error (as Helm's "nil pointer evaluating" error). Values print as Go's
fmt prints them (Helm parses YAML numbers as float64: 8600 prints as 8600).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml


class TemplateError(Exception):
    """A template that does not parse or render."""


# ---------------------------------------------------------------------------------------------
# Lexing: text and actions.

_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


def _split(src: str, name: str) -> list[tuple[str, str]]:
    """Text and action pieces, with trim markers applied to the neighbouring text."""
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in _ACTION.finditer(src):
        text = src[pos : m.start()]
        if m.group(1):
            text = text.rstrip(" \t\r\n")
        pieces.append(("text", text))
        body = m.group(2).strip()
        pieces.append(("action", body))
        pos = m.end()
        if m.group(3):
            rest = src[pos:]
            pos += len(rest) - len(rest.lstrip(" \t\r\n"))
    pieces.append(("text", src[pos:]))
    if "{{" in "".join(t for k, t in pieces if k == "text"):
        raise TemplateError(f"{name}: unclosed action")
    return pieces


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<num>-?\d+(?:\.\d+)?)
      | (?P<decl>:=)
      | (?P<assign>=)
      | (?P<punct>[|(),])
      | (?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
      | (?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
      | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.X,
)


def _tokens(s: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    s = s.strip()
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            raise TemplateError(f"cannot lex {s[pos:]!r}")
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(kind)))
        pos = m.end()
        # A field chain directly after ')' (e.g. (x).Field) is not used by the chart.
    return out


# ---------------------------------------------------------------------------------------------
# Parsing pipelines.


@dataclass
class Pipeline:
    decl: list[str]
    commands: list[list[Any]]  # each command: list of operands
    assign: bool = False


@dataclass
class Lit:
    value: Any


@dataclass
class Field:
    path: list[str]  # from dot


@dataclass
class Var:
    name: str
    path: list[str]


@dataclass
class Func:
    name: str


def _parse_pipeline(toks: list[tuple[str, str]], pos: int = 0, nested: bool = False):
    decl: list[str] = []
    assign = False
    # Declarations: $a := ... or $a, $b := ...
    look = pos
    names = []
    while look < len(toks) and toks[look][0] == "var":
        names.append(toks[look][1])
        look += 1
        if look < len(toks) and toks[look] == ("punct", ","):
            look += 1
            continue
        break
    if names and look < len(toks) and toks[look][0] in ("decl", "assign"):
        decl = names
        assign = toks[look][0] == "assign"
        pos = look + 1
    commands: list[list[Any]] = []
    cmd: list[Any] = []
    while pos < len(toks):
        kind, val = toks[pos]
        if kind == "punct" and val == ")":
            if not nested:
                raise TemplateError("unexpected )")
            break
        if kind == "punct" and val == "|":
            if not cmd:
                raise TemplateError("empty command before |")
            commands.append(cmd)
            cmd = []
            pos += 1
            continue
        if kind == "punct" and val == "(":
            sub, pos = _parse_pipeline(toks, pos + 1, nested=True)
            if pos >= len(toks) or toks[pos] != ("punct", ")"):
                raise TemplateError("unclosed (")
            cmd.append(sub)
            pos += 1
            continue
        if kind == "str":
            cmd.append(Lit(json.loads(val)))
        elif kind == "raw":
            cmd.append(Lit(val[1:-1]))
        elif kind == "num":
            cmd.append(Lit(float(val) if "." in val else int(val)))
        elif kind == "field":
            cmd.append(Field([] if val == "." else val[1:].split(".")))
        elif kind == "var":
            head, *rest = val.split(".")
            cmd.append(Var(head, rest))
        elif kind == "ident":
            if val in ("true", "false"):
                cmd.append(Lit(val == "true"))
            elif val == "nil":
                cmd.append(Lit(None))
            else:
                cmd.append(Func(val))
        else:
            raise TemplateError(f"unexpected token {val!r}")
        pos += 1
    if cmd:
        commands.append(cmd)
    if not commands:
        raise TemplateError("empty pipeline")
    return Pipeline(decl, commands, assign), pos


def parse_pipeline(s: str) -> Pipeline:
    toks = _tokens(s)
    p, pos = _parse_pipeline(toks)
    if pos != len(toks):
        raise TemplateError(f"trailing tokens in {s!r}")
    return p


# ---------------------------------------------------------------------------------------------
# Parsing the action tree.


@dataclass
class Node:
    kind: str  # text | action | if | range | with | define | template
    text: str = ""
    pipe: Pipeline | None = None
    branches: list[tuple[Pipeline, list["Node"]]] = field(default_factory=list)
    body: list["Node"] = field(default_factory=list)
    orelse: list["Node"] = field(default_factory=list)
    name: str = ""


def parse(src: str, name: str) -> tuple[list[Node], dict[str, list[Node]]]:
    """Parses a template file: its top-level nodes and the templates it `define`s."""
    pieces = _split(src, name)
    defines: dict[str, list[Node]] = {}
    pos = 0

    def block(stop: tuple[str, ...]) -> tuple[list[Node], str]:
        nonlocal pos
        nodes: list[Node] = []
        while pos < len(pieces):
            kind, body = pieces[pos]
            pos += 1
            if kind == "text":
                if body:
                    nodes.append(Node("text", text=body))
                continue
            if body.startswith("/*"):
                if not body.endswith("*/"):
                    raise TemplateError(f"{name}: bad comment {body!r}")
                continue
            word = body.split(None, 1)[0] if body else ""
            rest = body[len(word) :].strip()
            if word in stop:
                return nodes, body
            if word in ("end", "else"):
                raise TemplateError(f"{name}: unexpected {{{{ {body} }}}}")
            if word == "if":
                branches = []
                cond = parse_pipeline(rest)
                while True:
                    inner, ended = block(("end", "else"))
                    branches.append((cond, inner))
                    if ended == "end":
                        nodes.append(Node("if", branches=branches))
                        break
                    tail = ended[len("else") :].strip()
                    if tail.startswith("if "):
                        cond = parse_pipeline(tail[3:])
                        continue
                    if tail:
                        raise TemplateError(f"{name}: bad else {ended!r}")
                    orelse, ended = block(("end",))
                    nodes.append(Node("if", branches=branches, orelse=orelse))
                    break
            elif word in ("range", "with"):
                pipe = parse_pipeline(rest)
                inner, ended = block(("end", "else"))
                orelse: list[Node] = []
                if ended != "end":
                    if ended.strip() != "else":
                        raise TemplateError(f"{name}: bad else {ended!r}")
                    orelse, _ = block(("end",))
                nodes.append(Node(word, pipe=pipe, body=inner, orelse=orelse))
            elif word == "define":
                m = re.fullmatch(r'"([^"]+)"', rest)
                if not m:
                    raise TemplateError(f"{name}: bad define {rest!r}")
                inner, _ = block(("end",))
                defines[m.group(1)] = inner
            elif word in ("template", "block", "break", "continue", "tpl"):
                raise TemplateError(f"{name}: {word!r} is outside the supported subset")
            else:
                nodes.append(Node("action", pipe=parse_pipeline(body)))
        if stop:
            raise TemplateError(f"{name}: missing {{{{ end }}}}")
        return nodes, ""

    top, _ = block(())
    return top, defines


# ---------------------------------------------------------------------------------------------
# Evaluation.


def truthy(v: Any) -> bool:
    if v is None or v is False:
        return False
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v != 0
    if isinstance(v, (str, list, dict, tuple)):
        return len(v) > 0
    return True


def go_str(v: Any) -> str:
    """fmt.Sprint of a value as Helm holds it."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    if isinstance(v, (dict, list)):
        raise TemplateError(f"printing a {type(v).__name__} directly (use toYaml)")
    return str(v)


def _to_yaml(v: Any) -> str:
    if v is None:
        return "null"
    out = yaml.safe_dump(v, default_flow_style=False, sort_keys=True, width=1 << 20)
    if out.endswith("\n...\n"):
        out = out[: -len("\n...\n")] + "\n"
    return out.rstrip("\n")


def _indent(n: int, s: str) -> str:
    pad = " " * int(n)
    return pad + s.replace("\n", "\n" + pad)


def _printf(fmt: str, *args: Any) -> str:
    parts = re.split(r"(%[sdvq%])", fmt)
    out, i = [], 0
    for p in parts:
        if p in ("%s", "%v", "%d", "%q"):
            if i >= len(args):
                raise TemplateError(f"printf {fmt!r}: missing argument")
            a = args[i]
            i += 1
            out.append(json.dumps(go_str(a)) if p == "%q" else go_str(a))
        elif p == "%%":
            out.append("%")
        else:
            out.append(p)
    if i != len(args):
        raise TemplateError(f"printf {fmt!r}: {len(args) - i} extra arguments")
    return "".join(out)


def _eq(a: Any, *bs: Any) -> bool:
    return any(a == b for b in bs)


def _required(msg: str, v: Any) -> Any:
    if v is None or v == "":
        raise TemplateError(f"required: {msg}")
    return v


def _default(d: Any, *rest: Any) -> Any:
    if not rest:
        return d
    v = rest[0]
    return v if truthy(v) else d


def _print(*args: Any) -> str:
    out = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(go_str(a))
    return "".join(out)


FUNCS: dict[str, Callable[..., Any]] = {
    "default": _default,
    "trunc": lambda n, s: s[: int(n)] if int(n) >= 0 else s[int(n) :],
    "trimSuffix": lambda suf, s: s[: -len(suf)] if suf and s.endswith(suf) else s,
    "contains": lambda sub, s: sub in s,
    "printf": _printf,
    "print": _print,
    "replace": lambda old, new, s: s.replace(old, new),
    "quote": lambda *a: " ".join(json.dumps(go_str(x)) for x in a if x is not None),
    "toYaml": _to_yaml,
    "nindent": lambda n, s: "\n" + _indent(n, s),
    "indent": _indent,
    "lower": lambda s: s.lower(),
    "toString": go_str,
    "list": lambda *a: list(a),
    "not": lambda v: not truthy(v),
    "and": lambda *a: next((x for x in a if not truthy(x)), a[-1]),
    "or": lambda *a: next((x for x in a if truthy(x)), a[-1]),
    "eq": _eq,
    "ne": lambda a, b: a != b,
    "required": _required,
    "sha256sum": lambda s: hashlib.sha256(s.encode()).hexdigest(),
}


class Engine:
    """Holds every template of a chart (by file path and by `define` name) and renders them."""

    def __init__(self) -> None:
        self.templates: dict[str, list[Node]] = {}

    def add(self, name: str, src: str) -> None:
        top, defines = parse(src, name)
        for k, v in defines.items():
            if k in self.templates:
                raise TemplateError(f"template {k!r} defined twice")
            self.templates[k] = v
        self.templates[name] = top

    def render(self, name: str, dot: Any) -> str:
        if name not in self.templates:
            raise TemplateError(f"no template {name!r}")
        out: list[str] = []
        self._exec(self.templates[name], dot, {"$": dot}, out, depth=0)
        return "".join(out)

    # -- internals --

    def _exec(self, nodes: list[Node], dot: Any, vars_: dict[str, Any], out: list[str], depth: int) -> None:
        if depth > 100:
            raise TemplateError("template recursion too deep")
        for n in nodes:
            if n.kind == "text":
                out.append(n.text)
            elif n.kind == "action":
                assert n.pipe is not None
                v = self._pipe(n.pipe, dot, vars_, depth)
                if not n.pipe.decl:
                    out.append(go_str(v))
            elif n.kind == "if":
                for cond, body in n.branches:
                    if truthy(self._pipe(cond, dot, vars_, depth)):
                        self._exec(body, dot, dict(vars_), out, depth)
                        break
                else:
                    self._exec(n.orelse, dot, dict(vars_), out, depth)
            elif n.kind == "with":
                assert n.pipe is not None
                v = self._pipe(n.pipe, dot, vars_, depth)
                if truthy(v):
                    self._exec(n.body, v, dict(vars_), out, depth)
                else:
                    self._exec(n.orelse, dot, dict(vars_), out, depth)
            elif n.kind == "range":
                assert n.pipe is not None
                decl = n.pipe.decl
                p = Pipeline([], n.pipe.commands)
                v = self._pipe(p, dot, vars_, depth)
                if isinstance(v, dict):
                    items = [(k, v[k]) for k in sorted(v)]
                elif isinstance(v, list):
                    items = list(enumerate(v))
                elif v is None:
                    items = []
                else:
                    raise TemplateError(f"range over {type(v).__name__}")
                if not items:
                    self._exec(n.orelse, dot, dict(vars_), out, depth)
                for k, item in items:
                    scope = dict(vars_)
                    if len(decl) == 1:
                        scope[decl[0]] = item
                    elif len(decl) == 2:
                        scope[decl[0]], scope[decl[1]] = k, item
                    elif decl:
                        raise TemplateError("range declares at most two variables")
                    self._exec(n.body, item, scope, out, depth)
            else:
                raise TemplateError(f"unknown node {n.kind}")

    def _pipe(self, p: Pipeline, dot: Any, vars_: dict[str, Any], depth: int) -> Any:
        val: Any = _NOTHING
        for cmd in p.commands:
            val = self._command(cmd, dot, vars_, depth, val)
        if p.decl:
            if len(p.decl) != 1:
                raise TemplateError("only range declares two variables")
            if p.assign and p.decl[0] not in vars_:
                raise TemplateError(f"assignment to undeclared {p.decl[0]}")
            vars_[p.decl[0]] = val
        return val

    def _command(self, cmd: list[Any], dot: Any, vars_: dict[str, Any], depth: int, piped: Any) -> Any:
        head = cmd[0]
        if isinstance(head, Func):
            args = [self._operand(a, dot, vars_, depth) for a in cmd[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            if head.name == "include":
                if len(args) != 2 or not isinstance(args[0], str):
                    raise TemplateError("include takes a name and a context")
                out: list[str] = []
                if args[0] not in self.templates:
                    raise TemplateError(f"include: no template {args[0]!r}")
                self._exec(self.templates[args[0]], args[1], {"$": args[1]}, out, depth + 1)
                return "".join(out)
            f = FUNCS.get(head.name)
            if f is None:
                raise TemplateError(f"function {head.name!r} is outside the supported subset")
            try:
                return f(*args)
            except TemplateError:
                raise
            except Exception as e:  # wrong arity or types: a template error, as in Go
                raise TemplateError(f"{head.name}: {e}") from e
        if len(cmd) != 1:
            raise TemplateError(f"can't give arguments to a non-function {head}")
        if piped is not _NOTHING:
            raise TemplateError("can't pipe into a non-function")
        return self._operand(head, dot, vars_, depth)

    def _operand(self, a: Any, dot: Any, vars_: dict[str, Any], depth: int) -> Any:
        if isinstance(a, Lit):
            return a.value
        if isinstance(a, Field):
            return _walk(dot, a.path)
        if isinstance(a, Var):
            if a.name not in vars_:
                raise TemplateError(f"undefined variable {a.name}")
            return _walk(vars_[a.name], a.path)
        if isinstance(a, Pipeline):
            return self._pipe(a, dot, dict(vars_), depth)
        if isinstance(a, Func):
            return self._command([a], dot, vars_, depth, _NOTHING)
        raise TemplateError(f"bad operand {a!r}")


_NOTHING = object()


def _walk(v: Any, path: list[str]) -> Any:
    for i, k in enumerate(path):
        if v is None:
            raise TemplateError(f"nil pointer evaluating .{'.'.join(path[: i + 1])}")
        if not isinstance(v, dict):
            raise TemplateError(f"can't evaluate field {k} in {type(v).__name__}")
        v = v.get(k)
    return v


# ---------------------------------------------------------------------------------------------
# A chart.


def deep_merge(base: dict, over: dict) -> dict:
    """Helm's values coalescing: maps merge recursively, anything else replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def render_chart(chart_dir, overrides: dict | None = None, release: str = "rel", namespace: str = "ns") -> dict[str, str]:
    """Renders every template of the chart like `helm template`: file name → text.

    Files whose names start with `_` only define templates; NOTES.txt is rendered too.
    """
    from pathlib import Path

    chart_dir = Path(chart_dir)
    chart = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    values = deep_merge(values, overrides or {})
    name = chart["name"]
    engine = Engine()
    files = sorted((chart_dir / "templates").iterdir())
    for f in files:
        engine.add(f"{name}/templates/{f.name}", f.read_text())
    root = {
        "Values": values,
        "Chart": {
            "Name": chart["name"],
            "Version": chart["version"],
            "AppVersion": chart.get("appVersion"),
        },
        "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
        "Template": {"BasePath": f"{name}/templates"},
    }
    out = {}
    for f in files:
        if f.name.startswith("_"):
            continue
        key = f"{name}/templates/{f.name}"
        root_for_file = dict(root, Template={"BasePath": f"{name}/templates", "Name": key})
        # Helm replaces "<no value>" in output with "".
        out[f.name] = engine.render(key, root_for_file).replace("<no value>", "")
    return out
