"""The novelty gate (SPEC section 1, gate 6): a proposal must differ from every library environment.

Two views of an environment are compared:
  * code: the source is parsed and normalised (identifiers defined in the file
    become positional placeholders, docstrings are dropped, string and number
    constants become placeholders, annotations are dropped) and printed back in
    canonical form, so renaming, reformatting, re-commenting or changing
    constants does not make a copy look new. Similarity is the Jaccard index of
    the k-token shingles of that canonical text.
  * prompt: the instance prompts the environment shows the solver, as
    lowercase word shingles with every number collapsed to one token, so a
    proposal that rewrites the code but asks the same question is caught.

A proposal is refused when either score reaches its threshold against any
library environment. Within one batch of proposals, duplicates are collapsed
to the first of each group (``collapse_duplicates``).
"""
from __future__ import annotations

import ast
import builtins
import functools
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Protocol, Sequence

from envs.gates import GateResult

GATE = "novelty"
STRING = "'S'"
NUMBER = "0"
BUILTIN_NAMES = frozenset(dir(builtins))
# Protocol attribute and method names are shared by every environment by definition; they stay as they are.
PROTOCOL_NAMES = frozenset({"name", "description", "answer_format", "sample", "prompt", "reference", "score"})


@dataclass
class NoveltyConfig:
    """Thresholds of the novelty gate.

    A proposal is refused when its code similarity to a library environment is
    at least ``code_threshold`` or its prompt similarity is at least
    ``prompt_threshold``. Measured on the ten seed environments (k = 5 code
    tokens, 3 prompt words, three prompts per environment):
      * distinct seeds: code at most 0.47 (edit_distance vs
        longest_increasing_subsequence: shared answer-parsing helpers), prompt
        at most 0.20 (graph_coloring vs n_queens: the shared answer trailer);
      * disguised copies: renamed identifiers, reformatting, new comments and
        docstring, changed constants give code >= 0.99; top-level definitions
        in reverse order >= 0.95; an unused helper appended >= 0.88; the same
        question with other instances gives prompt >= 0.96, and rewording the
        edit_distance task sentence and trailer still gives 0.47;
      * partial copies (one helper deleted, or ``sample`` rewritten): code
        0.57 to 0.87, mostly above the threshold.
    """

    code_threshold: float = 0.6
    prompt_threshold: float = 0.4
    code_k: int = 5  # tokens per code shingle
    prompt_k: int = 3  # words per prompt shingle


class LibraryEntryLike(Protocol):
    name: str
    source: str
    prompts: list[str]


class _Normaliser(ast.NodeTransformer):
    """Rewrites a module so that only its structure and library calls remain."""

    def __init__(self, tree: ast.Module):
        self.imported: set[str] = set()
        self.globals: dict[str, str] = {}
        self.members: dict[str, str] = {}
        self.arg_names: set[str] = set()
        self.scopes: list[dict[str, str]] = []
        self.class_scope: list[bool] = []
        self._collect(tree)

    def _collect(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                self.imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        for node in tree.body:  # module-level definitions: one placeholder, so reordering them changes nothing
            for name in _defined_names(node):
                if name not in self.imported:
                    self.globals[name] = "g"
        for node in ast.walk(tree):  # class members: methods, class attributes, attributes set on self
            if isinstance(node, ast.arg):
                self.arg_names.add(node.arg)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    for name in _defined_names(item):
                        self._member(name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                self._member(node.attr)

    def _member(self, name: str) -> None:
        if name not in PROTOCOL_NAMES and not name.startswith("__"):
            self.members.setdefault(name, f"m{len(self.members)}")

    def _lookup(self, name: str, create: bool) -> str:
        for i in range(len(self.scopes) - 1, -1, -1):
            if self.class_scope[i] and i != len(self.scopes) - 1:
                continue  # as in Python, a class body's names are not visible inside its methods
            if name in self.scopes[i]:
                return self.scopes[i][name]
        if name in self.globals:
            return self.globals[name]
        if name in self.imported or name in BUILTIN_NAMES or name in ("self", "cls"):
            return name
        if create and self.scopes and not self.class_scope[-1]:
            self.scopes[-1][name] = f"v{self._used()}"
            return self.scopes[-1][name]
        return name

    def _used(self) -> int:
        """Placeholders taken in the enclosing functions, so a nested function never reuses one."""
        return sum(len(s) for s, is_class in zip(self.scopes, self.class_scope) if not is_class)

    def _push(self, scope: dict[str, str], is_class: bool = False) -> None:
        self.scopes.append(scope)
        self.class_scope.append(is_class)

    def _pop(self) -> None:
        self.scopes.pop()
        self.class_scope.pop()

    def _function(self, node):
        if not self.scopes:
            node.name = self.globals.get(node.name, node.name)
        elif self.class_scope[-1]:
            node.name = self.members.get(node.name, node.name)
        else:
            node.name = self._lookup(node.name, create=True)
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        node.returns = None
        self._push({})
        self._arguments(node.args)
        node.body = [self.visit(s) for s in _without_docstring(node.body)] or [ast.Pass()]
        self._pop()
        return node

    def _arguments(self, args: ast.arguments) -> None:
        args.defaults = [self.visit(d) for d in args.defaults]
        args.kw_defaults = [self.visit(d) if d is not None else None for d in args.kw_defaults]
        scope = self.scopes[-1]
        for a in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if a is None:
                continue
            a.annotation = None
            if a.arg not in ("self", "cls"):
                scope[a.arg] = f"a{self._used()}"
                a.arg = scope[a.arg]

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function

    def visit_Lambda(self, node: ast.Lambda):
        self._push({})
        self._arguments(node.args)
        node.body = self.visit(node.body)
        self._pop()
        return node

    def visit_ClassDef(self, node: ast.ClassDef):
        node.name = self.globals.get(node.name, node.name)
        node.bases = [self.visit(b) for b in node.bases]
        node.keywords = [self.visit(k) for k in node.keywords]
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        self._push({**{n: n for n in PROTOCOL_NAMES}, **self.members}, is_class=True)
        node.body = [self.visit(s) for s in _without_docstring(node.body)] or [ast.Pass()]
        self._pop()
        return node

    def visit_Name(self, node: ast.Name):
        node.id = self._lookup(node.id, create=True)
        return node

    def visit_arg(self, node: ast.arg):
        node.annotation = None
        return node

    def visit_Attribute(self, node: ast.Attribute):
        node.value = self.visit(node.value)
        if node.attr in self.members:
            node.attr = self.members[node.attr]
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign):
        target = self.visit(node.target)
        if node.value is None:
            return ast.Expr(value=target)
        return ast.Assign(targets=[target], value=self.visit(node.value))

    def visit_Global(self, node: ast.Global):
        node.names = [self._lookup(n, create=False) for n in node.names]
        return node

    visit_Nonlocal = visit_Global

    def visit_MatchAs(self, node: ast.MatchAs):
        if node.pattern is not None:
            node.pattern = self.visit(node.pattern)
        if node.name is not None:
            node.name = self._lookup(node.name, create=True)
        return node

    def visit_MatchStar(self, node: ast.MatchStar):
        if node.name is not None:
            node.name = self._lookup(node.name, create=True)
        return node

    def visit_MatchMapping(self, node: ast.MatchMapping):
        node.keys = [self.visit(k) for k in node.keys]
        node.patterns = [self.visit(p) for p in node.patterns]
        if node.rest is not None:
            node.rest = self._lookup(node.rest, create=True)
        return node

    def visit_keyword(self, node: ast.keyword):
        node.value = self.visit(node.value)
        if node.arg is not None and node.arg in self.arg_names:  # most likely a call of a function of this file
            node.arg = "k"
        return node

    def visit_Constant(self, node: ast.Constant):
        if isinstance(node.value, (str, bytes)):
            return ast.Constant(value="S")
        if isinstance(node.value, (int, float, complex)) and not isinstance(node.value, bool):
            return ast.Constant(value=0)
        return node

    def visit_JoinedStr(self, node: ast.JoinedStr):
        values = [self.visit(v) for v in node.values if isinstance(v, ast.FormattedValue)]
        return ast.JoinedStr(values=values or [ast.Constant(value="S")])

    def visit_FormattedValue(self, node: ast.FormattedValue):
        node.value = self.visit(node.value)
        node.format_spec = None
        return node


def _defined_names(node: ast.AST) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    names = []
    for t in targets:
        names += [n.id for n in ast.walk(t) if isinstance(n, ast.Name)]
    return names


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def normalized_ast(source: str) -> str:
    """The canonical text of ``source`` with names, docstrings and constants abstracted away.

    Module-level functions, classes and variables all become ``g`` (so
    reordering them changes nothing), class members ``m0, m1, ...`` (protocol
    names such as ``sample`` and ``score`` are kept), arguments and locals of
    each function ``a0, ...``/``v1, ...`` numbered per scope in order of first
    use; imported modules, builtins and attribute names of library objects are
    kept. Strings become ``'S'``, numbers ``0``; docstrings, comments and type
    annotations are dropped. Raises SyntaxError when the source does not parse.
    """
    tree = ast.parse(source)
    tree.body = _without_docstring(tree.body)
    tree = _Normaliser(tree).visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def code_tokens(source: str) -> list[str]:
    """Python tokens of the normalised source (of the raw text when it does not parse)."""
    try:
        text = normalized_ast(source)
    except (SyntaxError, ValueError, RecursionError):
        text = source
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
                continue
            if tok.type == tokenize.NEWLINE:
                out.append("\\n")
            elif tok.type == tokenize.INDENT:
                out.append("<indent>")
            elif tok.type == tokenize.DEDENT:
                out.append("<dedent>")
            elif tok.type == tokenize.STRING:
                out.append(STRING)
            elif tok.type == tokenize.NUMBER:
                out.append(NUMBER)
            else:
                out.append(tok.string)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        out = re.findall(r"\w+|[^\w\s]", text)
    return out


def prompt_words(text: str) -> list[str]:
    """Lowercase words and punctuation marks of a prompt, every run of digits collapsed to ``0``."""
    return re.findall(r"[a-z_]+|0|[^\sa-z_0]", re.sub(r"[0-9]+", "0", text.lower()))


def shingles(tokens: Sequence[str] | str, k: int) -> set[tuple[str, ...]]:
    """The set of contiguous k-token windows of ``tokens`` (a text is split into its prompt words).

    A sequence shorter than ``k`` gives one shingle holding all of it (none if empty).
    """
    if isinstance(tokens, str):
        tokens = prompt_words(tokens)
    tokens = list(tokens)
    if not tokens:
        return set()
    if len(tokens) <= k:
        return {tuple(tokens)}
    return {tuple(tokens[i:i + k]) for i in range(len(tokens) - k + 1)}


def jaccard(a: set, b: set) -> float:
    """|a & b| / |a | b|; 0.0 when both are empty."""
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


@functools.lru_cache(maxsize=512)
def _code_shingles(source: str, k: int) -> frozenset:
    return frozenset(shingles(code_tokens(source), k))


@functools.lru_cache(maxsize=512)
def _prompt_shingles(prompts: tuple[str, ...], k: int) -> frozenset:
    """The template of an environment's prompts: shingles shared by at least two of them.

    Instance content (random strings, grids) differs between instances and
    drops out; one prompt, or prompts sharing nothing, give all their shingles.
    """
    per_prompt = [shingles(prompt_words(p), k) for p in prompts]
    counts: dict = {}
    for s in per_prompt:
        for sh in s:
            counts[sh] = counts.get(sh, 0) + 1
    shared = frozenset(sh for sh, c in counts.items() if c >= 2)
    return shared or frozenset(counts)


def code_similarity(src_a: str, src_b: str, k: int = NoveltyConfig.code_k) -> float:
    """Jaccard similarity in [0, 1] of the k-token shingles of the two normalised sources."""
    return jaccard(_code_shingles(src_a, k), _code_shingles(src_b, k))


def prompt_similarity(prompt_a: str | Sequence[str], prompt_b: str | Sequence[str],
                      k: int = NoveltyConfig.prompt_k) -> float:
    """Jaccard similarity in [0, 1] of word shingles of two prompts (or of two lists of prompts, pooled).

    0.0 when either side has no prompt text.
    """
    a = (prompt_a,) if isinstance(prompt_a, str) else tuple(prompt_a)
    b = (prompt_b,) if isinstance(prompt_b, str) else tuple(prompt_b)
    sa, sb = _prompt_shingles(a, k), _prompt_shingles(b, k)
    return jaccard(sa, sb) if sa and sb else 0.0


def _closeness(code: float, prompt: float, cfg: NoveltyConfig) -> float:
    return max(code / cfg.code_threshold, prompt / cfg.prompt_threshold)


def check_novelty(candidate_source: str, candidate_prompts: Sequence[str], library: Sequence[LibraryEntryLike],
                  cfg: NoveltyConfig | None = None) -> GateResult:
    """The novelty gate: refused when code or prompt similarity to any library entry reaches its threshold.

    The reason names the library environment closest to a threshold with both
    scores; ``details["scores"]`` maps every library name to its code and
    prompt similarity.
    """
    cfg = cfg or NoveltyConfig()
    thresholds = {"code": cfg.code_threshold, "prompt": cfg.prompt_threshold}
    if not library:
        return GateResult(GATE, True, "the library is empty", {"scores": {}, "thresholds": thresholds})
    scores = {e.name: {"code": round(code_similarity(candidate_source, e.source, cfg.code_k), 4),
                       "prompt": round(prompt_similarity(candidate_prompts, e.prompts or (), cfg.prompt_k), 4)}
              for e in library}
    closest = max(scores, key=lambda n: _closeness(scores[n]["code"], scores[n]["prompt"], cfg))
    code, prompt = scores[closest]["code"], scores[closest]["prompt"]
    details = {"scores": scores, "most_similar": closest, "thresholds": thresholds}
    too_close = [what for what, value in (("code", code), ("prompt", prompt)) if value >= thresholds[what]]
    if too_close:
        return GateResult(GATE, False, f"too similar to library environment {closest!r} ({' and '.join(too_close)}): "
                                       f"code similarity {code:.2f} (threshold {cfg.code_threshold}), "
                                       f"prompt similarity {prompt:.2f} (threshold {cfg.prompt_threshold})", details)
    return GateResult(GATE, True, f"novel: closest library environment is {closest!r} with code similarity "
                                  f"{code:.2f} (threshold {cfg.code_threshold}) and prompt similarity {prompt:.2f} "
                                  f"(threshold {cfg.prompt_threshold})", details)


def _as_candidate(c) -> tuple[str, tuple[str, ...]]:
    if isinstance(c, str):
        return c, ()
    if isinstance(c, tuple):
        source, prompts = c
        return source, tuple(prompts or ())
    return c.source, tuple(getattr(c, "prompts", None) or ())


def collapse_duplicates(candidates: Sequence, cfg: NoveltyConfig | None = None) -> tuple[list[int], dict[int, int]]:
    """Collapse duplicate proposals within one batch, keeping the first of each group.

    ``candidates`` are sources, ``(source, prompts)`` pairs or objects with
    ``.source`` (and optionally ``.prompts``). Two proposals are duplicates when
    their normalised code is identical or either similarity reaches its
    threshold. Returns ``(kept_indices, duplicate_of)`` where ``duplicate_of``
    maps each dropped index to the kept index it duplicates.
    """
    cfg = cfg or NoveltyConfig()
    items = [_as_candidate(c) for c in candidates]
    kept: list[int] = []
    duplicate_of: dict[int, int] = {}
    canon: dict[str, int] = {}
    for i, (source, prompts) in enumerate(items):
        key = " ".join(code_tokens(source))
        match = canon.get(key)
        if match is None:
            match = next((j for j in kept
                          if code_similarity(source, items[j][0], cfg.code_k) >= cfg.code_threshold
                          or prompt_similarity(prompts, items[j][1], cfg.prompt_k) >= cfg.prompt_threshold), None)
        if match is None:
            kept.append(i)
            canon.setdefault(key, i)
        else:
            duplicate_of[i] = match
    return kept, duplicate_of


__all__ = ["GATE", "LibraryEntryLike", "NoveltyConfig", "check_novelty", "code_similarity", "code_tokens",
           "collapse_duplicates", "jaccard", "normalized_ast", "prompt_similarity", "prompt_words", "shingles"]
